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
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, cast

from detectors import rules
from detectors.windows import bucket
from pipeline.alert import Finding
from pipeline.authorization import covering
from pipeline.config import DetectionConfig
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors.behaviour.model import BehaviourModel


@dataclass(frozen=True, slots=True)
class Context:
    """What the detectors share for one event; built per event, so its memo is per event."""

    auth: dict[str, Any]
    config: DetectionConfig
    memo: dict[str, Any] = field(default_factory=dict)
    #: The behaviour model in force (read-only, shared by all accounts); None: not trained yet.
    model: BehaviourModel | None = None

    def covering(self, event: Event) -> list[dict[str, Any]]:
        """`pipeline.authorization.covering` for this event, computed once for all detectors."""
        if "covering" not in self.memo:
            self.memo["covering"] = covering(self.auth["grants"], event)
        return cast(list[dict[str, Any]], self.memo["covering"])

    def declared_network(self, event: Event) -> str | None:
        """`detectors.networks.declared_network` for this event, computed once."""
        if "declared" not in self.memo:
            from detectors.networks import declared_network

            self.memo["declared"] = declared_network(event, self.auth["grants"], self)
        return cast(str | None, self.memo["declared"])

    def finding(
        self,
        event: Event,
        *,
        detector: str,
        severity: str,
        key: str,
        title: str,
        summary: str,
        response: tuple[str, ...],
        related: tuple[str, ...] = (),
        window: str | None = None,
    ) -> Finding:
        """The one way a rule builds a finding of `event`.

        `severity` is the rule's default: an override configured for `detector`
        (`PW_DETECT_SEVERITIES`) wins. `window` defaults to the suppression bucket of the event's
        time; a rule names its own window (an hour, a period, a burst's start) when repeats
        should fold by that instead.
        """
        if window is None:
            window = bucket(event["occurred_at"], self.config.suppression_minutes)
        return Finding(
            detector=detector,
            severity=self.config.severity(detector, severity),
            key=key,
            window=window,
            title=title,
            summary=summary,
            response=response,
            related=related,
        )


DetectFn = Callable[[Event, dict[str, Any], Context], list[Finding]]

#: Detector modules, one per detector id in `detectors/rules/`, discovered with pkgutil; each has
#: `detect(event, state, ctx) -> list[Finding]` and keeps its `state` per account under its name.
MODULES: tuple[str, ...] = tuple(
    sorted(
        info.name for info in pkgutil.iter_modules(rules.__path__) if not info.name.startswith("_")
    )
)

ALL: tuple[tuple[str, DetectFn], ...] = tuple(
    (name, cast(DetectFn, import_module(f"detectors.rules.{name}").detect)) for name in MODULES
)
