"""Issue 15, finding 17: identifiers follow a safe grammar, and verification goes on past a bad account.

Before: `account_id` took a newline, a tab, NUL, an RTL override, zero-width characters, Cyrillic
look-alikes, ANSI escapes, trailing spaces and NFC versus NFD forms, each as a separate account;
a newline in a stored account id made `verify-chain` stop at that account and left 12 of 17
accounts undigested. Now every identifier has a printable-ASCII grammar (`pipeline.identifiers`),
anything else is refused with `bad_value` (in the validator and in the JSON Schema alike), and
`verify-chain`, `digest create` and `digest verify` report each failing account and go on.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import unicodedata
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import REPO_ROOT, Settings
from pipeline.event import Rejected, normalize, parse_action
from pipeline.ledger import ChainHead, append
from sinks.audit_store import store_events
from sinks.clickhouse import EmbeddedWarehouse, migrate
from tests.unit.test_event import SCHEMA, minimal

#: (path, grammar kind, action whose minimal event carries the path)
FIELDS: list[tuple[str, str, str]] = [
    ("account_id", "account", "listing.update"),
    ("event_id", "event", "listing.update"),
    ("actor.provider_id", "name", "listing.update"),
    ("actor.principal_id", "name", "listing.update"),
    ("source.session_id", "session", "listing.update"),
    ("source.user_agent", "user_agent", "listing.update"),
    ("operation", "label", "listing.update"),
    ("approval_id", "name", "listing.update"),
    ("resource.id", "label", "listing.update"),
    ("resource.type", "label", "listing.update"),
    ("changes.0.field", "label", "listing.update"),
    ("grant.grant_id", "name", "permission.grant"),
    ("grant.provider_id", "name", "permission.grant"),
    ("grant.principals.0", "name", "permission.grant"),
    ("grant.skus.0", "label", "permission.grant"),
    ("grant.scopes.0", "action_pattern", "permission.grant"),
    ("grant.require_approval.0", "action_pattern", "permission.grant"),
    ("approval.approval_id", "name", "approval.grant"),
    ("approval.approved_by", "name", "approval.grant"),
    ("approval.resource_id", "label", "approval.grant"),
    ("approval.action", "action_pattern", "approval.grant"),
]
FIELD_IDS = [f[0] for f in FIELDS]


def place(action: str, path: str, value: Any) -> dict[str, Any]:
    """The minimal event of `action` with `value` at `path` (containers made as needed)."""
    doc = copy.deepcopy(minimal(action))
    keys = path.split(".")
    if keys[0] == "changes":
        doc["changes"] = [{"field": "title", "old": None, "new": "Espresso cup"}]
    target: Any = doc
    for key, following in pairwise(keys):
        if isinstance(target, list):
            target = target[int(key)]
            continue
        if key not in target:
            target[key] = [] if following.isdigit() else {}
        target = target[key]
    last = keys[-1]
    if isinstance(target, list):
        target[int(last) : int(last) + 1] = [value]
    else:
        target[last] = value
    return doc


#: A valid value of each kind, to build hostile variants from.
BASE = {
    "account": "A0001SELLER",
    "event": "gw-7f3a-000123",
    "name": "prov-003-user-1",
    "session": "s-1",
    "user_agent": "python-sp-api/1.8.0",
    "label": "SKU-01-0042",
    "action_pattern": "listing.update",
}


def hostile(base: str) -> list[tuple[str, str]]:
    middle = len(base) // 2
    nfc = unicodedata.normalize("NFC", base[:middle] + "\u00e9" + base[middle:])
    return [
        ("newline", base[:middle] + "\n" + base[middle:]),
        ("trailing_newline", base + "\n"),
        ("tab", base[:middle] + "\t" + base[middle:]),
        ("nul", base[:middle] + "\x00" + base[middle:]),
        ("carriage_return", base + "\r"),
        ("rtl_override", base[:middle] + "\u202e" + base[middle:]),
        ("zero_width_space", base[:middle] + "\u200b" + base[middle:]),
        ("zero_width_joiner", base + "\u200d"),
        ("byte_order_mark", "\ufeff" + base),
        (
            "cyrillic_lookalike",
            base.replace("e", "\u0435")
            .replace("E", "\u0415")
            .replace("a", "\u0430")
            .replace("A", "\u0410")
            .replace("o", "\u043e")
            .replace("p", "\u0440")
            .replace("s", "\u0455")
            .replace("S", "\u0405"),
        ),
        ("ansi_escape", "\x1b[31m" + base + "\x1b[0m"),
        ("trailing_space", base + " "),
        ("leading_space", " " + base),
        ("no_break_space", base + "\u00a0"),
        ("line_separator", base[:middle] + "\u2028" + base[middle:]),
        ("nfc_accent", nfc),
        ("nfd_accent", unicodedata.normalize("NFD", nfc)),
        (
            "fullwidth",
            base.translate(
                str.maketrans("0123456789", "".join(chr(0xFF10 + i) for i in range(10)))
            ),
        ),
    ]


#: Spellings a kind takes on purpose: a User-Agent is text (blanks anywhere), not an id.
ALLOWED = {"user_agent": {"trailing_space", "leading_space"}}


def _reason(doc: dict[str, Any]) -> str | None:
    try:
        normalize(doc)
    except Rejected as exc:
        return exc.reason
    return None


@pytest.mark.parametrize(("path", "kind", "action"), FIELDS, ids=FIELD_IDS)
def test_every_hostile_spelling_of_an_identifier_is_refused(
    path: str, kind: str, action: str
) -> None:
    base = BASE.get(kind, "x")
    assert _reason(place(action, path, base)) is None, "the base value must be accepted"
    accepted = []
    for name, value in hostile(base):
        if value == base or name in ALLOWED.get(kind, ()):
            continue  # e.g. no digit to widen
        doc = place(action, path, value)
        if _reason(doc) != "bad_value":
            accepted.append(name)
        else:
            with pytest.raises(Rejected) as wire:
                parse_action(json.dumps(doc).encode())
            assert wire.value.reason == "bad_value"
    assert accepted == [], f"{path} accepted hostile forms: {accepted}"


def test_nfc_and_nfd_spellings_are_not_two_accounts() -> None:
    nfc = "Am\u00e9lie-SELLER"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    for value in (nfc, nfd):
        assert _reason(place("listing.update", "account_id", value)) == "bad_value"


#: Real-world values each kind must keep accepting.
REAL = {
    "account": [
        "A1B2C3D4E5F6G7",
        "A2EUQ1WTGCTBG2",
        "A0001SELLER",
        "A0001SELLER-tag",
        "seller_42.eu:de",
    ],
    "event": [
        "gw-7f3a-000123",
        "550e8400-e29b-41d4-a716-446655440000",
        "01HF8Z3K9Q0V6N7YB2X4C5D6E7",
        "1762063509120123",
    ],
    "name": [
        "prov-003-user-1",
        "alice.ops+de@agency.example",
        "arn:aws:iam::123456789012:role/partner-ops",
        "amzn1.application-oa2-client.0123456789abcdef",
        "_svc-reporting",
        "CORP/alice",
        "user=ops,team=de",
    ],
    "session": [
        "s-1",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_-",
        "+/abc==",
        "sess:2026-11-02:0042",
    ],
    "user_agent": [
        "python-sp-api/1.8.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)",
    ],
    "label": [
        "SKU-01-0042",
        "Espresso Cup 12oz (Red) #4",
        "B07XJ8C8F5",
        "GET_MERCHANT_LISTINGS_ALL_DATA",
        "patchListingsItem",
        "a/b\\c 'q' \"d\"",
    ],
    "action_pattern": ["*", "listing.*", "funds.bank_account_change", "auth.mfa_change"],
}


@pytest.mark.parametrize(("path", "kind", "action"), FIELDS, ids=FIELD_IDS)
def test_real_world_values_are_accepted(path: str, kind: str, action: str) -> None:
    for value in REAL[kind]:
        assert _reason(place(action, path, value)) is None, (path, value)


def test_an_account_id_holding_bank_or_contact_data_is_refused() -> None:
    for value in (
        "4111111111111111",
        "4111-1111-1111-1111",
        "DE89370400440532013000",
        "555-234-5678",
        "0170-1234567",
    ):
        assert _reason(place("listing.update", "account_id", value)) == "bad_value", value


def test_schema_states_the_same_grammar() -> None:
    from pipeline.identifiers import GRAMMARS

    for path, kind, _ in FIELDS:
        node: Any = SCHEMA
        for key in path.split("."):
            node = node["items"] if key.isdigit() else node["properties"][key]
        assert node.get("pattern") == GRAMMARS[kind].schema_pattern, path


@pytest.fixture(scope="module")
def schema_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


def test_every_grammar_is_anchored_whole_in_the_schema(schema_validator: Any) -> None:
    """A pattern with a top-level `|` anchored as `^a|b$` means `(^a)|(b$)`: the schema took
    `*0` as a grant scope while the validator refused it (hypothesis found it in a full run)."""
    for path, kind, action in FIELDS:
        if kind != "action_pattern":
            continue
        for value in ("*0", "x*", "listing.update ", "0listing.*", "*.*"):
            assert _reason(place(action, path, value)) == "bad_value", (path, value)
            assert list(schema_validator.iter_errors(place(action, path, value))), (path, value)
        for value in ("*", "listing.*", "listing.update"):
            assert _reason(place(action, path, value)) is None, (path, value)
            assert not list(schema_validator.iter_errors(place(action, path, value))), (path, value)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(field=st.sampled_from(FIELDS), value=st.text(min_size=1, max_size=24))
def test_verdict_follows_the_grammar_in_validator_and_schema(
    field: tuple[str, str, str], value: str, schema_validator: Any
) -> None:
    """Any string: accepted exactly when it fits the field's grammar; the schema agrees."""
    from pipeline.identifiers import GRAMMARS
    from pipeline.sensitive import find_sensitive

    path, kind, action = field
    doc = place(action, path, value)
    fits = GRAMMARS[kind].matches(value) and not (kind == "account" and find_sensitive(value))
    reason = _reason(doc)
    assert (reason is None) is fits, (path, value, reason)
    if reason is not None:
        assert reason == "bad_value"
    # python-jsonschema runs `pattern` with Python `re`, whose `$` also matches before a final
    # newline (ECMA-262's does not); the account's card/IBAN/phone rule is the validator's alone.
    if not value.endswith("\n") and not (kind == "account" and find_sensitive(value)):
        assert (not list(schema_validator.iter_errors(doc))) is fits, (path, value)


# -- verification goes on past one account ------------------------------------------------------

#: Account ids stored before the grammar existed (legacy rows), and ordinary ones.
LEGACY_ACCOUNTS = [
    "A0001\nSELLER",
    "A0002\tSELLER",
    "A0003\\nSELLER",
    "A0004\u202eSELLER",
    "\x1b[31mA0005",
    "A0006 ",
    "[/red]A0007",
    "A0008\x00",
    "A0009\\",
]
ACCOUNTS = LEGACY_ACCOUNTS + [f"A{i:04d}SELLER" for i in range(10, 18)]
T0 = 1_793_599_200_000  # 2026-11-02 06:00 UTC
HOUR = 3_600_000


def legacy_entries() -> list[dict[str, Any]]:
    """Six chained entries per account, an hour apart (built like the ledger, bypassing the validator)."""
    from pipeline.event import format_ms

    entries = []
    for n, account in enumerate(ACCOUNTS):
        head = ChainHead()
        for i in range(6):
            event = {
                "event_id": f"e-{n}-{i}",
                "occurred_at": format_ms(T0 + i * HOUR),
                "account_id": account,
                "action": "auth.login",
                "actor": {"type": "seller", "principal_id": "owner"},
                "outcome": "success",
            }
            entry, head = append(head, event, format_ms(T0 + i * HOUR + 2000))
            entries.append(entry)
    return entries


@pytest.fixture()
def legacy(tmp_path: Path) -> EmbeddedWarehouse:
    wh = EmbeddedWarehouse(tmp_path / "warehouse")
    migrate(wh, Settings.from_env({}))
    store_events(wh, legacy_entries())
    return wh


def test_every_stored_account_is_verified_and_digested(legacy: EmbeddedWarehouse) -> None:
    from pipeline.forensics.chain_check import accounts, verify_range
    from pipeline.forensics.digest_verification import verify_digests
    from pipeline.forensics.digests import create_digests
    from pipeline.forensics.signing import hmac_signer

    wh = legacy
    try:
        assert sorted(accounts(wh)) == sorted(ACCOUNTS)
        for account in ACCOUNTS:
            report = verify_range(wh, account)
            assert (report.broken, report.events) == (None, 6), repr(account)
        signer = hmac_signer("k" * 32)
        made, problems = create_digests(wh, signer, "hour", T0 + 10 * HOUR, 0)
        assert problems == []
        assert sorted({d.account_id for d in made}) == sorted(ACCOUNTS)  # all 17, not 5
        digests = verify_digests(wh, signer.verifier())
        assert (digests.accounts, digests.problems) == (len(ACCOUNTS), [])
    finally:
        wh.close()


class FailingFor:
    """The real warehouse, except that every query naming one account fails (a fault injected)."""

    def __init__(self, wh: EmbeddedWarehouse, account: str) -> None:
        self.wh, self.account = wh, account

    def query(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        if params and params.get("account") == self.account:
            raise RuntimeError("Code: 457. BAD_QUERY_PARAMETER (injected)")
        return self.wh.query(sql, params)

    def insert(self, table: str, rows: Any) -> None:
        self.wh.insert(table, rows)


def test_one_failing_account_is_reported_and_the_rest_go_on(legacy: EmbeddedWarehouse) -> None:
    from pipeline.forensics.chain_check import verify_accounts
    from pipeline.forensics.digest_verification import verify_digests
    from pipeline.forensics.digests import create_digests
    from pipeline.forensics.signing import hmac_signer

    bad = ACCOUNTS[3]
    db = FailingFor(legacy, bad)
    try:
        reports = verify_accounts(db, ACCOUNTS)
        assert [r.account for r in reports if not r.ok] == [bad]
        assert all(r.events == 6 for r in reports if r.ok)
        failed = next(r for r in reports if not r.ok)
        assert failed.error and "BAD_QUERY_PARAMETER" in failed.error

        signer = hmac_signer("k" * 32)
        made, problems = create_digests(db, signer, "hour", T0 + 10 * HOUR, 0)
        assert [p.account for p in problems] == [bad]
        assert {d.account_id for d in made} == set(ACCOUNTS) - {bad}
        create_digests(legacy, signer, "hour", T0 + 10 * HOUR, 0)  # now the last one too
        other = ACCOUNTS[12]
        report = verify_digests(FailingFor(legacy, other), signer.verifier())
        assert [p.account for p in report.problems] == [other]
        assert report.accounts == len(ACCOUNTS) and report.events == 6 * (len(ACCOUNTS) - 1)
    finally:
        legacy.close()


def _cli(data_dir: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
    env.update({"PW_DATA_DIR": str(data_dir), "PW_WEB_PORT": "9", **env_extra})
    return subprocess.run(
        [sys.executable, "-m", "partnerwatch", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_cli_verifies_and_digests_every_account_and_reports_each_break(
    legacy: EmbeddedWarehouse,
) -> None:
    data_dir = legacy.path.parent
    victims = [ACCOUNTS[0], ACCOUNTS[12]]
    for account in victims:
        legacy.execute(
            "ALTER TABLE audit.events UPDATE payload = replace(payload, 'owner', 'ownr')"
            " WHERE account_id = {a:String} AND seq = 3 SETTINGS mutations_sync = 1",
            {"a": account},
        )
    legacy.close()
    run = _cli(data_dir, "verify-chain")
    assert run.returncode == 1
    for account in victims:
        shown = account.replace("\n", "\\n")
        assert f"account {shown}: chain breaks at seq 3" in run.stderr
    assert f"2 of {len(ACCOUNTS)} account chains do not verify" in " ".join(run.stderr.split())
    for output in (run.stdout, run.stderr):  # stored text never reaches the terminal raw
        assert "\x1b" not in output and "\u202e" not in output and "\x00" not in output

    digest = _cli(data_dir, "digest", "create", "--period", "hour", PW_DIGEST_HMAC_KEY="k" * 32)
    assert digest.returncode == 1, digest.stderr  # the two broken chains are reported ...
    assert sum("chain" in line or "hash" in line for line in digest.stderr.splitlines()) >= 2
    reopened = EmbeddedWarehouse(legacy.path)
    try:  # ... and every account has digests (the broken ones up to the break)
        digested = {
            r[0] for r in reopened.query("SELECT DISTINCT account_id FROM audit.chain_digests").rows
        }
    finally:
        reopened.close()
    assert digested == set(ACCOUNTS)
