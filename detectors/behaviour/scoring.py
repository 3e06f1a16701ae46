"""Scoring closed day vectors, and the findings they raise, for both places days are kept.

A provider's day on one account closes in the account's state (detectors/rules/behaviour_anomaly.py);
a provider's day across all its accounts closes in the provider-wide stage
(detectors/provider_wide/run.py calls `provider_days`). Both score with the model's day forest
(`BehaviourModel.day`, detectors/behaviour/model.py) and raise the same `behaviour_anomaly`
finding: key `<account>|<provider>|*` (account `*` across accounts), window the day
(`<day>T00:00:00.000Z/P1D`, so a day's alert id never meets an hour's), evidence the day's
first events of the kinds behind the deviating features. A day is scored once, when it closes
(the account's first event of a later day; across accounts, the provider's first event
`GRACE_MS` past its end).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detectors import responses
from detectors.behaviour.account_features import is_approved
from detectors.behaviour.day_features import (
    ALL_ACCOUNTS,
    DAY_DESCRIPTIONS,
    DAY_EVIDENCE_OF,
    ProviderDays,
)
from detectors.behaviour.features import Closed, is_off_hours
from pipeline.alert import Finding
from pipeline.event import Event

if TYPE_CHECKING:
    from detectors import Context
    from detectors.behaviour.model import BehaviourModel, Forest

DETECTOR = "behaviour_anomaly"
SEVERITY = "medium"
RESPONSE: tuple[str, ...] = (
    responses.CONFIRM,
    "Compare the hour's (or the day's) evidence with the work agreed with the provider; if it is"
    " not explained, rotate the principal's credentials.",
    responses.PRESERVE,
)
TOP_FEATURES = 3


def score_days(
    event: Event, days: list[Closed], account: str, model: BehaviourModel | None, ctx: Context
) -> list[Finding]:
    """Findings for the closed `days` (of `account`, or `*`) that the day forest flags."""
    forest = None if model is None else model.day
    if forest is None or not days:
        return []
    found = []
    for closed, score in zip(days, forest.score([c.vector for c in days]), strict=True):
        if forest.flags(closed.vector, score):
            found.append(_finding(event, closed, score, account, forest, model, ctx))
    return found


def provider_days(
    state: dict[str, Any], event: Event, ctx: Context, model: BehaviourModel
) -> list[Finding]:
    """The provider-wide stage's part: fold a provider's event into its days across accounts
    (`state` is the provider's), close the days now past their grace, and score them."""
    actor = event["actor"]
    if actor["type"] != "provider" or model.day is None:
        return []
    days = ProviderDays(actor["provider_id"], state)
    if not is_approved(ctx.auth, event):
        days.add(event, is_off_hours(event["occurred_at"], ctx.covering(event)))
    return score_days(event, days.tick(event), ALL_ACCOUNTS, model, ctx)


def explain(vector: list[float], forest: Forest) -> tuple[str, list[str]]:
    """The features deviating most from the kind's training days, in words, and their names."""
    vector = forest.floored(vector)
    stats = forest.baselines[forest.kind(vector)]
    ranked = []
    for i, name in enumerate(forest.features[:-1]):
        g = stats[name]
        spread = max(g["std"], 0.1 * abs(g["mean"]), 1e-3)
        ranked.append((abs(vector[i] - g["mean"]) / spread, name, vector[i], g["mean"], spread))
    ranked.sort(key=lambda r: -r[0])
    parts = [
        f"{DAY_DESCRIPTIONS[name]} {_num(value)}, {'above' if value > usual else 'below'} the"
        f" usual {_num(usual)} ± {_num(spread)} ({z:.1f} spreads)"
        for z, name, value, usual, spread in ranked[:TOP_FEATURES]
    ]
    return "; ".join(parts), [r[1] for r in ranked[:TOP_FEATURES]]


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 or float(x).is_integer() else f"{x:.2f}"


def _finding(
    event: Event,
    c: Closed,
    score: float,
    account: str,
    forest: Forest,
    model: BehaviourModel | None,
    ctx: Context,
) -> Finding:
    provider = c.key.partition("|")[0]
    day = c.window.partition("T")[0]
    words, top = explain(c.vector, forest)
    beyond = forest.out_of_range(c.vector)
    if beyond:
        words += "; beyond anything in the training window: " + ", ".join(
            DAY_DESCRIPTIONS[f] for f in beyond
        )
    if account == ALL_ACCOUNTS:
        title = (
            f"Unusual day of provider {provider} across its accounts (provider-accounts-day vector)"
        )
        who = (
            f"Provider {provider} over every account it worked on {day} (the provider-accounts-day"
            f" vector, {int(c.vector[forest.features.index('accounts')])} accounts)"
        )
    else:
        title = f"Unusual day of provider {provider} on account {account} (provider-day vector)"
        who = f"Provider {provider}'s principals on account {account} on {day} (the provider-day vector)"
    name = model.name if model is not None else "?"
    return ctx.finding(
        event,
        detector=DETECTOR,
        severity=SEVERITY,
        key=f"{account}|{c.key}",
        window=c.window,
        title=title,
        summary=(
            f"{who} behaved unlike its usual days (day anomaly score {score:.3f}, threshold"
            f" {forest.threshold:.3f}, model {name}): {words}."
        ),
        response=RESPONSE,
        related=tuple(c.evidence_for(top, evidence_of=DAY_EVIDENCE_OF)),
    )
