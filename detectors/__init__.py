"""Pure detection logic: each module decides on one kind of abuse, with no Kafka or warehouse.

A detector is `detect(event, state, ctx) -> list[Finding]`, called for every ledger event of an
account in `seq` order and deciding on event time only:
- `event`: the normalized event (pipeline/event.py);
- `state`: the detector's own JSON-serializable dict for this account, which it may change
  (windows, baselines); the detect agent stores it in a Faust table;
- `ctx`: read-only context: the account's authorization (grants, approvals, policy, folded from
  the log by pipeline/authorization.py before the detectors run) and the `DetectionConfig`.
  Rules build every finding with `ctx.finding(...)`, which applies the configured severity and
  the suppression window.

`ALL` lists the detectors the detect agent runs, by state name: the module name, which is the
detector id. A rule's only public function is `detect`; no rule imports another (what two rules
share lives in a detectors/ module named for its domain: grants, networks, prices, rates).

A rule that looks at some actions only says so with `ACTIONS` (action prefixes), and one that does
nothing without the behaviour model with `NEEDS_MODEL`: for any other event it finds nothing and
leaves its state as it was, so `detectors.run.observe` does not call it
(tests/detectors/test_dispatch.py holds every rule to what it declares).
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from importlib import import_module
from typing import Any, cast

from detectors import rules
from detectors.context import Context
from pipeline.alert import Finding
from pipeline.event import Event

__all__ = ["ACTIONS", "ALL", "MODULES", "NEEDS_MODEL", "Context", "DetectFn"]

DetectFn = Callable[[Event, dict[str, Any], Context], list[Finding]]

#: Detector modules, one per detector id in `detectors/rules/`, discovered with pkgutil; each has
#: `detect(event, state, ctx) -> list[Finding]` and keeps its `state` per account under its name.
MODULES: tuple[str, ...] = tuple(
    sorted(
        info.name for info in pkgutil.iter_modules(rules.__path__) if not info.name.startswith("_")
    )
)

_RULES = {name: import_module(f"detectors.rules.{name}") for name in MODULES}

ALL: tuple[tuple[str, DetectFn], ...] = tuple(
    (name, cast(DetectFn, _RULES[name].detect)) for name in MODULES
)

#: Detector id -> the action prefixes its rule looks at (the rule's `ACTIONS`), for the rules
#: that declare them; the others look at every action.
ACTIONS: dict[str, tuple[str, ...]] = {
    name: tuple(module.ACTIONS) for name, module in _RULES.items() if hasattr(module, "ACTIONS")
}

#: The detector ids whose rules do nothing without a behaviour model (`NEEDS_MODEL`).
NEEDS_MODEL: frozenset[str] = frozenset(
    name for name, module in _RULES.items() if getattr(module, "NEEDS_MODEL", False)
)
