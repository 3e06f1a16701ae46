"""Provider-wide detection: one provider's principals across every seller account it works on.

The per-account rules (detectors/rules/) keep their state per account, so one provider credential
working many sellers at once, or a provider cutting prices a little on each of many accounts, is
invisible to them. The rules here keep their state per provider (and, inside it, per principal
or session), over the ledger events of every account.

A rule is the same shape as an account rule: `detect(event, state, ctx) -> list[Finding]`, one
module per detector id in `detectors/provider_wide/rules/<id>.py` with its fixture cases beside
it in `<id>.json` (the same format as detectors/rules/*.json). It differs in what it is given:
- `event`: a ledger event of any account, routed to the provider it is about (`provider_of`);
  events arrive roughly in event-time order across accounts (the stage merges the ledger's
  partitions by event time, and arrival disorder remains), so a rule keeps windows on event time
  and tolerates late events;
- `state`: the rule's own JSON-serializable dict for that provider;
- `ctx`: a `detectors.Context` whose `auth` is the authorization of the event's account (grants,
  approvals, policy, folded by the stage from the same ledger), so `ctx.covering`,
  `ctx.declared_network` and approvals work as in the account rules.

A rule that looks at some actions only says so with `ACTIONS` (action prefixes): for any other
event it finds nothing and leaves its state as it was, so `run.Stage` does not call it
(tests/detectors/test_provider_dispatch.py holds every rule to what it declares).

Rules here never import the account rules, nor each other (import-linter); what they share
lives in detectors/ modules named for their domain (networks, geo, prices, reports, windows).
`run.Stage` runs them; streams/provider_stage.py feeds it from the ledger topic.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module
from typing import cast

from detectors import DetectFn
from detectors.provider_wide import rules
from pipeline.event import Event

#: Rule modules, one per detector id in detectors/provider_wide/rules/, discovered with pkgutil.
MODULES: tuple[str, ...] = tuple(
    sorted(
        info.name for info in pkgutil.iter_modules(rules.__path__) if not info.name.startswith("_")
    )
)

_RULES = {name: import_module(f"detectors.provider_wide.rules.{name}") for name in MODULES}

ALL: tuple[tuple[str, DetectFn], ...] = tuple(
    (name, cast(DetectFn, _RULES[name].detect)) for name in MODULES
)

#: Rule id -> the action prefixes its rule looks at (the rule's `ACTIONS`), for the rules that
#: declare them (as account rules do, detectors/__init__.py); the others look at every action.
ACTIONS: dict[str, tuple[str, ...]] = {
    name: tuple(module.ACTIONS) for name, module in _RULES.items() if hasattr(module, "ACTIONS")
}


def provider_of(event: Event) -> str | None:
    """The provider an event is about: the acting provider, or the provider a seller's grant or
    revoke names; None for everything else (a seller's own work, Amazon's)."""
    actor = event["actor"]
    if actor["type"] == "provider":
        return actor.get("provider_id") or None
    grant = event.get("grant")
    if grant is not None:
        return grant.get("provider_id") or None
    return None
