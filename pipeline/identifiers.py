"""The grammar of identifiers: which characters each kind of id may hold.

An id names an account, a provider, a person or a listing in the ledger, the warehouse, alerts,
chat cards, terminals and SQL. Free Unicode there lets one account look like another (a Cyrillic
A, an NFD accent, a zero-width space, a trailing blank), and control characters end lines in
logs and CLI output (`verify-chain` once stopped at an account id holding a newline). So each
kind is a printable-ASCII subset that covers what Amazon and gateways actually send, and anything
else is refused with `bad_value`:

| kind | characters | max | for |
|---|---|---|---|
| `account` | letters, digits, `. _ : -`; starts with a letter or digit | 64 | `account_id` (seller ids such as `A1B2C3D4E5F6G7`) |
| `event` | letters, digits, `. _ : -` | 128 | `event_id` |
| `name` | letters, digits, `_ . : @ + / = , ~ -`; starts with a letter, digit, `_` or `+` | 128 | `actor.provider_id`, `actor.principal_id`, `grant.grant_id`, `grant.provider_id`, `grant.principals[]` (256), `approval_id`, `approval.approval_id`, `approval.approved_by` (e-mail-like and phone-number logins, IAM ARNs and OAuth client ids fit) |
| `session` | letters, digits, `_ . : @ + / = , ~ -` | 1024 | `source.session_id` (opaque tokens, base64, JWT) |
| `label` | printable ASCII (`!`-`~`) and spaces inside, not at either end | 128 or 1024 | `resource.id` (a SKU may hold spaces and punctuation), `resource.type`, `operation`, `changes[].field`, `approval.resource_id` |
| `user_agent` | printable ASCII and spaces | 1024 | `source.user_agent` |
| `action_pattern` | an action (`listing.update`), `prefix.*` or `*` | 128 or 256 | `grant.scopes[]`, `grant.require_approval[]`, `approval.action` |
| `time_zone` | letters, digits, `_ + / -`; starts with a letter | 64 | `grant.active_hours.tz` (then looked up as an IANA zone) |

Being ASCII, no id has two Unicode spellings (NFC and NFD are the same bytes). A masked value
(`sha256:<64 hex>:<last 4>`, `pipeline.masking`) fits every kind it can replace. The JSON Schema
states the same patterns; `tests/security/test_identifiers.py` keeps the two in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.rejection import Rejected, string

_NAME_CHARS = r"A-Za-z0-9_.:@+/=,~-"


@dataclass(frozen=True)
class Grammar:
    """One kind of identifier: a full-match pattern (also the JSON Schema's) and what it says."""

    pattern: str
    says: str
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))

    def matches(self, value: str) -> bool:
        return self.regex.fullmatch(value) is not None

    @property
    def schema_pattern(self) -> str:
        """The same grammar as an anchored JSON Schema (ECMA-262) pattern."""
        return f"^{self.pattern}$"


GRAMMARS: dict[str, Grammar] = {
    "account": Grammar(
        r"[A-Za-z0-9][A-Za-z0-9._:-]*",
        "letters, digits and . _ : -, starting with a letter or digit",
    ),
    "event": Grammar(r"[A-Za-z0-9._:-]{1,128}", "1-128 letters, digits and . _ : -"),
    "name": Grammar(
        f"[A-Za-z0-9_+][{_NAME_CHARS}]*",
        "letters, digits and _ . : @ + / = , ~ -, starting with a letter, digit, _ or +",
    ),
    "session": Grammar(f"[{_NAME_CHARS}]+", "letters, digits and _ . : @ + / = , ~ -"),
    "label": Grammar(r"[!-~]([ !-~]*[!-~])?", "printable ASCII, with spaces only inside"),
    "user_agent": Grammar(r"[ -~]+", "printable ASCII and spaces"),
    "action_pattern": Grammar(
        # grouped: an anchored `^a|b$` would be `(^a)|(b$)` in the schema (and pass "*0")
        r"(\*|[a-z]+(_[a-z]+)*\.(\*|[a-z]+(_[a-z]+)*))",
        "an action, prefix.* or *",
    ),
    "time_zone": Grammar(r"[A-Za-z][A-Za-z0-9_+/-]*", "an IANA time zone name"),
}


def check(value: str, kind: str, label: str) -> str:
    """`value` if it fits the grammar of `kind`, else `Rejected("bad_value")`."""
    grammar = GRAMMARS[kind]
    if not grammar.matches(value):
        raise Rejected("bad_value", f"{label} must be {grammar.says}")
    return value


def identifier(
    doc: dict[str, Any],
    name: str,
    kind: str,
    *,
    required: bool = False,
    max_len: int = 128,
    where: str = "",
) -> Any:
    """A string field that must fit the grammar of `kind`; None when absent or null."""
    value = string(doc, name, required=required, max_len=max_len, where=where)
    if value is not None:
        check(value, kind, f"{where}{name}")
    return value
