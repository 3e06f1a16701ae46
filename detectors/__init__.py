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
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, cast

from detectors.config import DetectionConfig
from pipeline.alert import Finding
from pipeline.event import Event
from pipeline.grants import covering

if TYPE_CHECKING:
    from detectors.behaviour_model import BehaviourModel


@dataclass(frozen=True, slots=True)
class Context:
    """What the detectors share for one event; built per event, so its memo is per event."""

    auth: dict[str, Any]
    config: DetectionConfig
    memo: dict[str, Any] = field(default_factory=dict)
    #: The behaviour model in force (read-only, shared by all accounts); None: not trained yet.
    model: BehaviourModel | None = None

    def covering(self, event: Event) -> list[dict[str, Any]]:
        """`pipeline.grants.covering` for this event, computed once for all detectors."""
        if "covering" not in self.memo:
            self.memo["covering"] = covering(self.auth["grants"], event)
        return cast(list[dict[str, Any]], self.memo["covering"])

    def declared_network(self, event: Event) -> str | None:
        """`detectors.declared_networks.declared_network` for this event, computed once."""
        if "declared" not in self.memo:
            from detectors.declared_networks import declared_network

            self.memo["declared"] = declared_network(event, self.auth["grants"], self)
        return cast(str | None, self.memo["declared"])


DetectFn = Callable[[Event, dict[str, Any], Context], list[Finding]]

#: Detector modules, each with `detect(event, state, ctx) -> list[Finding]`; `state` is kept per
#: account under the module's name.
MODULES: tuple[str, ...] = (
    "ip_allowlist",
    # listing edits, scope and off-hours
    "listing_scope",
    "price_limit",
    "approval_required",
    "bulk_edits",
    "sensitive_actions",
    "off_hours",
    # fund moves, API rate, exfiltration, compliance drift
    "fund_moves",
    "account_takeover",
    "refund_burst",
    "api_rate",
    "report_exfiltration",
    "compliance_drift",
    # IP and geography
    "geo_novelty",
    "ip_churn",
    "impossible_travel",
    # learned behaviour (idle until a model is trained)
    "behaviour_anomaly",
)

ALL: tuple[tuple[str, DetectFn], ...] = tuple(
    (name, cast(DetectFn, import_module(f"detectors.{name}").detect)) for name in MODULES
)
