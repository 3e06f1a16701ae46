"""`Context`: what the detectors share for one event (re-exported as `detectors.Context`).

A module of its own, not part of `detectors/__init__.py`, so that the optional mypyc build
(tools/compile_detectors.py) compiles it with the rules while the package's `__init__` stays
a `.py` file (import-linter and grimp read the package from its `__init__.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors.networks import declared_network
from detectors.windows import bucket, epoch_ms
from pipeline.alert import Finding
from pipeline.authorization import covering
from pipeline.config import DetectionConfig
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors.behaviour.model import BehaviourModel


class Context:
    """What the detectors share for one event; built per event, so its memo is per event.

    A plain class, not a dataclass: the optional mypyc build compiles its `__init__` (a
    dataclass's is generated at import, so it stays interpreted, and a frozen one sets every
    field through `object.__setattr__`), and the memo is two attributes rather than a dict.
    """

    __slots__ = ("_covering", "_declared", "_has_declared", "_ms", "_ts", "auth", "config", "model")

    def __init__(
        self,
        auth: dict[str, Any],
        config: DetectionConfig,
        model: BehaviourModel | None = None,
    ) -> None:
        self.auth = auth
        self.config = config
        #: The behaviour model in force (read-only, shared by all accounts); None: not trained yet.
        self.model = model
        self._covering: list[dict[str, Any]] | None = None
        self._declared: str | None = None
        self._has_declared = False
        self._ts: str | None = None
        self._ms = 0

    def epoch_ms(self, ts: str) -> int:
        """`detectors.windows.epoch_ms(ts)`, remembered for the last `ts` asked (the event's
        time, which most rules ask for): an identity test instead of a call."""
        if ts is not self._ts:
            self._ms = epoch_ms(ts)
            self._ts = ts
        return self._ms

    def covering(self, event: Event) -> list[dict[str, Any]]:
        """`pipeline.authorization.covering` for this event, computed once for all detectors."""
        found = self._covering
        if found is None:
            found = self._covering = covering(self.auth["grants"], event)
        return found

    def declared_network(self, event: Event) -> str | None:
        """`detectors.networks.declared_network` for this event, computed once."""
        if not self._has_declared:
            self._declared = declared_network(event, self.auth["grants"], self)
            self._has_declared = True
        return self._declared

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
