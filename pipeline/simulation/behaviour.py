"""Behavioural anomalies that no rule catches, overlaid on the simulator's benign stream.

`generate` yields `pipeline.simulation.traffic.generate`'s benign events unchanged (same seed, same events
and ids: other tests rely on that stream) and merges in, in event-time order, episodes of one
principal behaving unlike itself while staying inside every rule:
- `price_erosion`: the same few SKUs cut by 15-25% each hour for 3 hours (each move under the
  grant's 30% limit, a dozen SKUs an hour: no bulk burst);
- `odd_hours`: a full day's workload between 01:00 and 04:00 UTC (the benign grants set no
  `active_hours`, so the off-hours rule has nothing to say);
- `report_growth`: report downloads growing hour by hour, 12 -> 36 on top of the usual work
  (under the exfiltration rule's 5x the principal's busy hour, listing reports only);
- `action_mix`: two hours of mostly ads budget edits and logins from a listings principal;
- `multi_day_erosion`: three days of office hours in which the provider's principals on one
  account take turns cutting prices by 2-8%, ten cuts an hour between them: each move inside the
  benign +-8%, each hour unremarkable, each day some 120 cuts more than rises (judged on day
  vectors: `JUDGED_ON`).
Besides them, a benign lookalike that must not alert: `approved_sale`, the seller approving price
changes (`approval.grant`) and the principal cutting 30 SKUs by 35-45% under that approval.
Episodes use the principal's own office network and the account's sites and SKUs, at most one
event every 20 s (the per-minute rate rule stays quiet); pipeline/simulation/behaviour_recipes.py
builds them. Each episode event is labelled `behaviour:<kind>` (a lookalike's `benign:<kind>`)
and its id ends in `-bhv<N>`, N numbering the episodes.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from datetime import datetime

from pipeline.event import Event
from pipeline.simulation.behaviour_recipes import HOUR, RECIPES, World
from pipeline.simulation.traffic import generate as benign_generate

#: The anomalous kinds, and the benign lookalikes injected beside them.
KINDS: tuple[str, ...] = (
    "odd_hours",
    "price_erosion",
    "report_growth",
    "action_mix",
    "multi_day_erosion",
)
LOOKALIKES: tuple[str, ...] = ("approved_sale",)
#: The order episodes are planned in, round robin (the five hour-scale ones fit in one day).
ROTATION: tuple[str, ...] = (
    "odd_hours",
    "price_erosion",
    "report_growth",
    "action_mix",
    "approved_sale",
    "multi_day_erosion",
)
#: The vectors a kind is judged on: hours, or (a trend over days) day vectors.
JUDGED_ON = {kind: "day" if kind == "multi_day_erosion" else "hour" for kind in KINDS}
LABEL_PREFIX = "behaviour:"
LOOKALIKE_PREFIX = "benign:"
DAY = 24 * HOUR
#: Start hour (UTC) of each kind's episodes.
START_HOUR = {
    "odd_hours": 1,
    "price_erosion": 7,
    "report_growth": 10,
    "action_mix": 15,
    "approved_sale": 18,
    "multi_day_erosion": 0,
}
#: Hours an episode lasts (the next one starts after it).
HOURS = {
    "odd_hours": 3,
    "price_erosion": 3,
    "report_growth": 4,
    "action_mix": 2,
    "approved_sale": 1,
    "multi_day_erosion": 72,
}


def generate(
    count: int,
    *,
    seed: int = 1,
    accounts: int = 6,
    providers: int = 4,
    events_per_hour: float = 1800.0,
    start: datetime | None = None,
    anomalies_after: int = 0,
    episodes: int = 8,
    kinds: tuple[str, ...] = ROTATION,
) -> Iterator[tuple[Event, str | None]]:
    """`count` benign events plus `episodes` behavioural episodes (lookalikes included), all in
    event-time order.

    Episodes start on the day after the first `anomalies_after` benign events, one kind after
    the other (round robin over `kinds`), each at its kind's hour of day once the previous one is
    over; a principal with a working history is picked for each.
    """
    rng = random.Random(f"behaviour-{seed}")  # noqa: S311 (a seeded, reproducible simulation)
    world = World()
    pending: list[tuple[int, int, Event, str]] = []  # (ms, order, event, label)
    order = 0
    planned = 0
    not_before: int | None = None
    begins = 0
    scale = events_per_hour / 1800.0
    for n, (event, truth) in enumerate(
        benign_generate(
            count,
            seed=seed,
            accounts=accounts,
            providers=providers,
            attack_kinds=(),
            start=start,
            events_per_hour=events_per_hour,
        )
    ):
        at = _ms(event["occurred_at"])
        while pending and pending[0][0] <= at:
            _, _, extra, label = heapq.heappop(pending)
            yield extra, label
        world.see(event)
        yield event, truth
        if n < anomalies_after or planned >= episodes:
            continue
        kind = kinds[planned % len(kinds)]
        if not_before is None:
            not_before = (at // DAY + 1) * DAY
        if not begins:
            # the first time of day START_HOUR[kind] not before `not_before`, plus a jitter
            day = not_before // DAY * DAY
            begins = day + START_HOUR[kind] * HOUR
            if begins < not_before:
                begins += DAY
            begins += rng.randint(0, 4) * 60_000  # the episode stays inside its clock hours
        if at < begins - HOUR:
            continue  # plan an episode an hour ahead: the world it draws on is recent
        candidates = [
            w for _, w in sorted(world.who.items()) if w.net and world.skus.get(w.account)
        ]
        if not candidates:
            continue
        planned += 1
        starts, begins = begins, 0
        not_before = starts // HOUR * HOUR + HOURS[kind] * HOUR  # the jitter aside
        who = rng.choice(candidates)
        ids = _ids(seed, planned)
        label = (LABEL_PREFIX if kind in KINDS else LOOKALIKE_PREFIX) + kind
        for extra in RECIPES[kind](rng, who, world, starts, ids, scale):
            order += 1
            heapq.heappush(pending, (_ms(extra["occurred_at"]), order, extra, label))
    while pending:
        _, _, extra, label = heapq.heappop(pending)
        yield extra, label


def _ids(seed: int, episode: int) -> Callable[[], str]:
    n = 0

    def next_id() -> str:
        nonlocal n
        n += 1
        return f"bhv-{seed}-{episode:04d}-{n:05d}-bhv{episode}"

    return next_id


def _ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)
