"""One provider principal editing or deleting far more listings than it usually does, fast.

A co-operation partner normally touches a handful of SKUs at a time; a script rewriting or
deleting the whole catalogue in minutes is either a compromised API client or a partner on its
way out. The rule counts distinct SKUs (`resource.id`) a principal edits (`listing.*`,
`inventory.*`) in a sliding `bulk_window_minutes` window and fires when the count reaches both
`bulk_min_skus` and `bulk_baseline_factor` times the principal's own baseline: the mean of the
peak counts of its last completed windows (tumbling, `HISTORY` of them, idle windows not
recorded). Until a principal has `MIN_HISTORY` completed windows its baseline is taken to be
`bulk_min_skus`, so a new principal must reach factor x min SKUs: onboarding syncs are big, and a
missing history is no evidence of a burst. When the deleted SKUs alone reach the threshold the
burst is a mass delete and the alert is `critical` (a separate alert key), otherwise `medium`;
a severity configured for the detector (`PW_DETECT_SEVERITIES`) overrides both, deliberately: a
seller who lowers or raises this detector means every burst it raises.
An alert's window is the moment its burst crossed the threshold: every event while the count
stays above it folds into that one alert, so a burst across an hour boundary is still one alert.
Burst windows enter the history like any other, so a lasting new workload stops firing after a
few windows (its first burst has raised the alert by then).

State per account: per principal, the last-seen time of each SKU in the sliding window (insertion
ordered, pruned from the front, at most `MAX_SKUS`: larger counts read as `MAX_SKUS`), the ids of
its latest `RECENT` edits in the window (the alert's evidence besides the crossing event), the
current window's peak and a short history of peaks; principals idle for `IDLE_DAYS` are
forgotten, at most `MAX_PRINCIPALS` are kept.
Deliberately ignored: sellers and Amazon (a seller bulk-editing its own catalogue is routine),
`ads.*` (campaigns, not SKUs), and events without a `resource.id`. All outcomes count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from detectors import responses
from detectors.windows import recent_after
from pipeline.alert import Finding
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context

DETECTOR = "bulk_listing_burst"
EDIT_PREFIXES: Final = ("listing.", "inventory.")
#: The actions this rule looks at, as prefixes (detectors/run.py calls it for no other action).
ACTIONS = EDIT_PREFIXES
#: Completed windows averaged for the baseline: recent ones (activity has a daily cycle).
HISTORY: Final = 6
MIN_HISTORY: Final = 3
MAX_SKUS: Final = 2000
MAX_PRINCIPALS: Final = 200
#: The principal's latest edits in the window, named as the burst's evidence with the event
#: that crossed the threshold (the crossing event may be an ordinary edit after a scripted run).
RECENT: Final = 20
IDLE_DAYS: Final = 30
RESPONSE = (
    "Pause the principal's API access (SP-API authorization) and check the listings it touched;"
    " restore deleted or altered listings from the last flat-file export.",
    *responses.ABUSE,
)


def _touch(seen: dict[str, int], sku: str | None, at: int, cutoff: int) -> dict[str, int]:
    """Record `sku` at `at` (when given) and drop entries at or before `cutoff`, oldest first."""
    if sku is not None and at > cutoff:
        seen.pop(sku, None)
        seen[sku] = at
    # the oldest first, until one is inside the window with no more than MAX_SKUS left (a loop
    # over the dict, not `next(iter(seen))` per entry: nothing to drop is the common case)
    over = len(seen) - MAX_SKUS
    drop: list[str] = []
    for name, last in seen.items():
        if last > cutoff and over <= 0:
            break
        drop.append(name)
        over -= 1
    for name in drop:
        del seen[name]
    return seen


def _forget_idle(principals: dict[str, Any], now: int) -> None:
    cutoff = now - IDLE_DAYS * 86_400_000
    for who in [w for w, p in principals.items() if p["clock"] < cutoff]:
        del principals[who]
    while len(principals) > MAX_PRINCIPALS:
        del principals[min(principals, key=lambda w: principals[w]["clock"])]


def _principal(principals: dict[str, Any], who: str, at: int, size: int) -> dict[str, Any]:
    """The principal's record, its clock advanced to `at` and its window rolled over if due."""
    p = principals.get(who)
    if p is None:
        p = {
            "clock": at,
            "bucket": at // size,
            "peak": 0,
            "history": [],
            "edits": {},
            "deletes": {},
        }
        principals[who] = p
        _forget_idle(principals, at)
    if at > p["clock"]:
        p["clock"] = at
    if p["clock"] // size > p["bucket"]:
        p["history"] = [*p["history"], p["peak"]][-HISTORY:]
        p["bucket"], p["peak"] = p["clock"] // size, 0
        _forget_idle(principals, p["clock"])
    return p


def _threshold(history: list[int], ctx: Context) -> int | float:
    config = ctx.config
    # `Any`: the minimum is an int and is kept in the state as one when it wins; typed as a
    # number, the mypyc build (tools/compile_detectors.py) would compute `max` in floats (40.0)
    minimum: Any = config.bulk_min_skus
    baseline = sum(history) / len(history) if len(history) >= MIN_HISTORY else minimum
    return max(minimum, config.bulk_baseline_factor * baseline)  # type: ignore[no-any-return]


def _burst(
    p: dict[str, Any], counts: dict[str, int], deleting: bool, at: str, ctx: Context
) -> str | None:
    """The kind of burst ("deletes" or "edits") this event belongs to, if any.

    An ongoing burst (`p["bursts"]`: kind -> [start, threshold]) keeps the threshold it crossed,
    so its own peak entering the history does not split it in two.
    """
    bursts: dict[str, Any] | None = p.get("bursts")
    if bursts is None:
        # no burst going on (the common case): none starts below the minimum, which every
        # threshold is at least
        minimum = ctx.config.bulk_min_skus
        if counts["edits"] < minimum and (not deleting or counts["deletes"] < minimum):
            return None
    else:
        for kind in list(bursts):
            if counts[kind] < bursts[kind][1]:
                del bursts[kind]
    current = _threshold(p["history"], ctx)
    for kind in ("deletes", "edits") if deleting else ("edits",):
        if bursts is not None and kind in bursts:
            if counts[kind] >= bursts[kind][1]:
                return kind
        elif counts[kind] >= current:
            if bursts is None:
                bursts = p["bursts"] = {}
            bursts[kind] = [at, current]
            return kind
    if bursts is not None and not bursts:
        del p["bursts"]
    return None


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    actor, action = event["actor"], event["action"]
    sku = event.get("resource", {}).get("id")
    if actor["type"] != "provider" or not action.startswith(EDIT_PREFIXES) or sku is None:
        return []
    size = max(1, ctx.config.bulk_window_minutes) * 60_000
    at = ctx.epoch_ms(event["occurred_at"])
    provider, principal = actor["provider_id"], actor["principal_id"]
    p = _principal(state.setdefault("principals", {}), f"{provider}|{principal}", at, size)
    cutoff = p["clock"] - size
    deleting = action == "listing.delete"
    counts = {
        "edits": len(_touch(p["edits"], sku, at, cutoff)),
        "deletes": len(_touch(p["deletes"], sku if deleting else None, at, cutoff)),
    }
    if counts["edits"] > p["peak"]:
        p["peak"] = counts["edits"]
    recent = recent_after(p, "recent", cutoff, RECENT)
    recent.append([at, event["event_id"]])
    kind = _burst(p, counts, deleting, event["occurred_at"], ctx)
    if kind is None:
        return []
    started, limit = p["bursts"][kind]
    verb, minutes = ("deleted" if kind == "deletes" else "edited"), size // 60_000
    return [
        ctx.finding(
            event,
            detector=DETECTOR,
            severity="critical" if kind == "deletes" else "medium",
            key=f"{event['account_id']}|{provider}|{principal}|{kind}",
            window=started,  # one alert per burst, however long it lasts
            title=f"Provider {provider} {verb} {counts[kind]} listings within {minutes} minutes",
            summary=(
                f"Principal {principal} of provider {provider} {verb} {counts[kind]} distinct SKUs"
                f" on account {event['account_id']} in the {minutes} minutes up to"
                f" {event['occurred_at']} (last: {action} on {sku}); the threshold is {limit:g}"
                f" SKUs ({len(p['history'])} earlier windows on record), the burst began at"
                f" {started}."
            ),
            response=RESPONSE,
            related=tuple(r[1] for r in recent[:-1]),
        )
    ]
