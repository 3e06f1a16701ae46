"""Pure detection logic: each module decides on one kind of abuse, with no Kafka or warehouse.

A detector is `detect(event, state, ctx) -> list[Finding]`, called for every ledger event of an
account in `seq` order and deciding on event time only:
- `event`: the normalized event (pipeline/event.py);
- `state`: the detector's own JSON-serializable dict for this account, which it may change
  (windows, baselines); the detect agent stores it in a Faust table;
- `ctx`: read-only context: the account's authorization (grants, approvals, policy, folded from
  the log by pipeline/authorization.py before the detectors run) and the `DetectionConfig`.

`ALL` lists the detectors the detect agent runs, by state name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from detectors import ip_allowlist
from detectors.config import DetectionConfig
from pipeline.alert import Finding
from pipeline.event import Event


@dataclass(frozen=True, slots=True)
class Context:
    auth: dict[str, Any]
    config: DetectionConfig


DetectFn = Callable[[Event, dict[str, Any], Context], list[Finding]]


def _ip_allowlist(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    finding = ip_allowlist.detect(event, ctx.auth["grants"])
    return [finding] if finding is not None else []


ALL: tuple[tuple[str, DetectFn], ...] = (("ip_allowlist", _ip_allowlist),)
