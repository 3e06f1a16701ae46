"""Rules as data: Sigma rules over PartnerWatch events, live and over history.

A security team writes a rule in Sigma (parsed by pySigma), with the PartnerWatch log source

    logsource:
      product: partnerwatch
      service: ledger

and the contract's field names (`FIELDS`: `action`, `actor.principal_id`, `source.ip`, ...).
The same parsed rule runs two ways that must agree:
- live: `detectors.sigma.evaluate.SigmaRules` folds events (state as plain JSON) and returns
  `Finding`s, run by the provider-wide stage next to the built-in provider-wide rules;
- over history: `detectors.sigma.sql` compiles it to ClickHouse SQL over `audit.events` for
  `partnerwatch rules hunt`.

Supported: detection rules (selections, lists, `|contains` `|startswith` `|endswith` `|all`
`|re` `|cidr` `|exists` `|gt` `|gte` `|lt` `|lte` `|cased`, null, numbers, and conditions with
`and`, `or`, `not`, `1 of`, `all of`), and correlation rules of type `event_count`,
`value_count`, `temporal` and `temporal_ordered` with `group-by` and `timespan`. A correlation
counts within windows of `timespan` aligned to the epoch (the way `toStartOfInterval` and a
Splunk `bin` do), per group; its condition must be `gt` or `gte` (a live stream can only decide
"at least"). Keyword searches, field aliases and the other correlation types are refused by
`load`, with the reason. A rule referenced by a correlation raises no alert of its own unless
the correlation says `generate: true`.

A rule's tests sit beside it: `<rule file stem>.test.yml` with cases of events and the number
of matches expected (`partnerwatch rules test`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.event import Event

LOGSOURCE = {"product": "partnerwatch", "service": "ledger"}

#: Sigma field name -> (path into the event, column of audit.events).
FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    "event_id": (("event_id",), "event_id"),
    "account_id": (("account_id",), "account_id"),
    "action": (("action",), "action"),
    "marketplace": (("marketplace",), "marketplace"),
    "actor.type": (("actor", "type"), "actor_type"),
    "actor.provider_id": (("actor", "provider_id"), "provider_id"),
    "actor.principal_id": (("actor", "principal_id"), "principal_id"),
    "source.ip": (("source", "ip"), "source_ip"),
    "source.user_agent": (("source", "user_agent"), "user_agent"),
    "source.session_id": (("source", "session_id"), "session_id"),
    "operation": (("operation",), "operation"),
    "resource.type": (("resource", "type"), "resource_type"),
    "resource.id": (("resource", "id"), "resource_id"),
    "outcome": (("outcome",), "outcome"),
    "approval_id": (("approval_id",), "approval_id"),
    "amount.value": (("amount", "value"), "amount_value"),
    "amount.currency": (("amount", "currency"), "amount_currency"),
}


class RuleError(ValueError):
    """A rule PartnerWatch cannot run, with the reason (file and rule named)."""


def field_value(event: Event, name: str) -> str:
    """The event's value of a Sigma field as the warehouse stores it ('' when absent)."""
    value: Any = event
    for part in FIELDS[name][0]:
        if not isinstance(value, dict):
            return ""
        value = value.get(part)
    return "" if value is None else str(value)


@dataclass
class Rule:
    """One detection rule, compiled."""

    name: str  # the detector id of its alerts: sigma_<name>
    title: str
    level: str
    source: Path
    matches: Callable[[Event], bool]
    condition: Any  # pySigma's parsed condition tree (the SQL compiler reads it)
    generate: bool = True  # raises alerts of its own


@dataclass
class Correlation:
    """One correlation rule over detection rules, compiled."""

    name: str
    title: str
    level: str
    source: Path
    kind: str  # event_count | value_count | temporal | temporal_ordered
    rules: list[str]  # names of the detection rules it correlates
    group_by: list[str]
    seconds: int
    threshold: int  # at least this many (events, distinct values, or rules matched)
    value_field: str | None = None  # value_count: the field whose distinct values count


@dataclass
class RuleSet:
    rules: dict[str, Rule] = field(default_factory=dict)
    correlations: dict[str, Correlation] = field(default_factory=dict)
    #: folder signature (file names, sizes, times) it was loaded from, for hot reload
    signature: tuple[Any, ...] = ()

    @property
    def names(self) -> list[str]:
        return sorted([*self.rules, *self.correlations])
