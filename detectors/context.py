"""`Context`: what the detectors share for one event (re-exported as `detectors.Context`).

A module of its own, not part of `detectors/__init__.py`, so that the optional mypyc build
(tools/compile_detectors.py) compiles it with the rules while the package's `__init__` stays
a `.py` file (import-linter and grimp read the package from its `__init__.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from detectors.networks import declared_network
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
