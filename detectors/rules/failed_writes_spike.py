"""Provider writes that keep failing: a partner's sync is broken, or it pushes what it may not.

Out-of-sync catalogues are a quiet way a partnership fails; not an attack, so medium, with the
talk-first response (`responses.DRIFT`). Fires when provider writes (`listing.*`,
`inventory.*`, `ads.*`) with outcome `failure` or `denied` on the account reach
`failed_writes_min` within a sliding `failed_writes_window_minutes` of event time.

Deliberately ignored: seller and Amazon writes (not the partner's sync), and failures older than
the window behind the newest one. State: the newest `failed_writes_min` failures (time, provider,
action, event id); the alert names those in the window as its evidence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors.responses import DRIFT
from pipeline.alert import Finding
from pipeline.event import Event, format_ms

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "failed_writes_spike"
SEVERITY = "medium"
WRITE_PREFIXES = ("listing.", "inventory.", "ads.")
#: The actions this rule looks at, as prefixes (detectors/run.py calls it for no other action).
ACTIONS = WRITE_PREFIXES
FAILED = frozenset({"failure", "denied"})
RESPONSE = (
    "Look at the failures' operations and resources (audit.events, outcome) with the provider:"
    " a broken feed, expired permissions, or changes it may not make?",
    *DRIFT,
)


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor = event["actor"]
    if (
        actor["type"] != "provider"
        or event["outcome"] not in FAILED
        or not event["action"].startswith(WRITE_PREFIXES)
    ):
        return []
    cfg = ctx.config
    now = ctx.epoch_ms(event["occurred_at"])
    window_ms = cfg.failed_writes_window_minutes * 60_000
    need = max(1, cfg.failed_writes_min)
    recent = state.get("fw", [])
    newest = max([now] + [r[0] for r in recent])
    if now < newest - window_ms:
        return []  # older than the window: too late to count
    recent = sorted([*recent, [now, actor["provider_id"], event["action"], event["event_id"]]])[
        -need:
    ]
    state["fw"] = recent
    inside = [r for r in recent if r[0] >= newest - window_ms]
    if len(inside) < need:
        return []
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity=SEVERITY,
            key=event["account_id"],
            title=f"{len(inside)} failed or denied provider writes in {cfg.failed_writes_window_minutes} min",
            summary=(
                f"Account {event['account_id']} saw at least {len(inside)} provider writes fail or"
                f" be denied within {cfg.failed_writes_window_minutes} minutes up to"
                f" {format_ms(newest)} (providers {', '.join(sorted({r[1] for r in inside}))};"
                f" actions {', '.join(sorted({r[2] for r in inside}))}; latest"
                f" {event['event_id']}, {event['outcome']})."
            ),
            response=RESPONSE,
            # the failures in the window (state written before ids were kept has none)
            related=tuple(r[3] for r in inside if len(r) > 3 and r[3] != event["event_id"]),
        )
    ]
