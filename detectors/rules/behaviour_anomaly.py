"""A provider principal's hour -- or a provider's, over all its principals on an account -- unlike
the behaviour the model learned (IsolationForest).

Rules catch what a seller wrote down; a partner abusing access slowly, inside every limit (prices
eroded a little at a time, a principal busy at night, report downloads creeping up, a new mix of
actions) needs a model of normal behaviour. The model (detectors/behaviour/model.py, fitted by
`partnerwatch train` on the warehouse's history) scores one principal's hour, described by
detectors/behaviour/features.py, the same code training used. Two kinds of vector are scored by
the one model: each principal's hour, and the provider-level hour (the same features over all of
the provider's principals on the account: load spread over several principals, each
unremarkable alone); an alert says which kind deviated, in its title and summary.

Scoring costs nothing per event beyond counting: an hour is scored when it closes (the account's
first event of a later hour; all the account's closing hours in one call), or early, once, when a
partial hour already exceeds the training range on a feature that only grows. An hour scoring at
or above the calibrated threshold, or with a feature beyond the training range (which a forest
cannot see: detectors/behaviour/model.py), raises a finding that names, in words, the features deviating
most from the principal's own baseline (the hours of it that scored normal; the training baseline
while it has fewer than `MIN_BASELINE_HOURS`). Evidence: the hour's first events. The window is
the hour, so the early and the closing finding fold into one alert.

Days: beside the hours, each provider's day on the account (detectors/behaviour/day_features.py)
closes at the account's first event of a later UTC day and is scored then, once, by the model's
day forest (detectors/behaviour/scoring.py, which the provider-wide stage also uses for a
provider's day across accounts); a flagged day raises a finding whose window is the day
(`<day>T00:00:00.000Z/P1D`). A change the seller approved (the event names a live approval that
covers it) is left out of every vector, hour and day: it is never what makes one anomalous.

Cold start: without a model (`ctx.model` is None) the detector does nothing and keeps no state;
the streams layer logs that once and exports it as a metric. A model without a day forest (too
little history at training) scores hours only. State per account: the feature state (`f`) and
per-principal baselines (`b`, running mean and variance, capped so they follow drift).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from detectors.behaviour import scoring
from detectors.behaviour.account_features import AccountFeatures, is_approved
from detectors.behaviour.features import (
    ALL_PRINCIPALS,
    DESCRIPTIONS,
    FEATURES,
    HOUR,
    HOUR_MS,
    Closed,
    kind_of,
    kind_of_vector,
    principal_key,
    provider_key,
)
from pipeline.alert import Finding
from pipeline.event import Event, format_ms

if TYPE_CHECKING:
    from detectors import Context
    from detectors.behaviour.model import BehaviourModel

DETECTOR = scoring.DETECTOR
SEVERITY = scoring.SEVERITY
RESPONSE = scoring.RESPONSE
MIN_BASELINE_HOURS = 24
#: A principal baseline weighs at most this many hours (older hours fade).
BASELINE_HOURS_CAP = 168
TOP_FEATURES = 3
#: Without a model (`ctx.model` None) this rule finds nothing and keeps no state: detectors/run.py
#: does not call it then.
NEEDS_MODEL = True


def detect(event: Event, state: dict[str, Any], ctx: Context) -> list[Finding]:
    model = ctx.model
    if model is None:
        return []
    features = AccountFeatures(state.setdefault("f", {}))
    key = principal_key(event)
    approved = key is not None and is_approved(ctx.auth, event)
    closed = features.observe(event, ctx.covering(event) if key is not None else [], approved)
    hours = [c for c in closed if c.span == HOUR]
    findings: list[Finding] = []
    if hours:
        scores = model.score([c.vector for c in hours])
        for c, score in zip(hours, scores, strict=True):
            if model.flags(c.vector, score):
                findings.append(_finding(event, c, score, ctx, state, early=False))
            else:
                _learn(state.setdefault("b", {}), c.key, c.vector)
        baselines = state.get("b", {})
        if len(baselines) > len(features.state["p"]):  # principals forgotten as idle
            state["b"] = {k: v for k, v in baselines.items() if k in features.state["p"]}
    if len(hours) < len(closed):
        days = [c for c in closed if c.span != HOUR]
        findings += scoring.score_days(event, days, event["account_id"], model, ctx)
    if key is not None and not approved:
        for k in (key, provider_key(key)):
            early = _early(features, k, model)
            if early is not None and model.flags(early[0].vector, early[1]):
                findings.append(_finding(event, early[0], early[1], ctx, state, early=True))
    return findings


def _early(
    features: AccountFeatures, key: str, model: BehaviourModel
) -> tuple[Closed, float] | None:
    """Score the open hour of `key` (a principal or `provider|*`) once, when a growing count passes
    its kind's training range."""
    w = features.state["p"][key]["w"]
    if w.get("early"):
        return None
    counts = (w["n"], len(w["sku"]), len(w["ip"]), w["off"], w["fund"], w["rep"], w["new"])
    if not any(c > limit for c, limit in zip(counts, model.early[kind_of(key)], strict=True)):
        return None
    w["early"] = 1
    vector = features.open_vector(key)
    if vector is None:  # the hour is open: its counts were just read
        raise RuntimeError(f"no open hour for {key}")
    return Closed(key, w["h"], vector, {k: list(v) for k, v in w["ev"].items()}), model.score(
        [vector]
    )[0]


def _learn(baselines: dict[str, Any], key: str, vector: list[float]) -> None:
    """Fold a normal hour into the principal's running mean and variance (Welford, capped)."""
    b = baselines.get(key)
    if b is None or len(b["mean"]) != len(
        vector
    ):  # none yet, or kept under another feature version
        baselines[key] = {"n": 1, "mean": list(vector), "m2": [0.0] * len(vector)}
        return
    n = min(b["n"] + 1, BASELINE_HOURS_CAP)
    mean, m2 = b["mean"], b["m2"]
    for i, x in enumerate(vector):
        delta = x - mean[i]
        mean[i] += delta / n
        m2[i] = m2[i] * (n - 1) / max(1, b["n"]) + delta * (x - mean[i])
    b["n"] = n


def _deviations(
    vector: list[float], model: BehaviourModel, baseline: dict[str, Any] | None
) -> list[tuple[str, float, float, float, float]]:
    """(feature, value, usual, spread, z) for every feature, largest deviation first.

    The principal's own baseline once it has `MIN_BASELINE_HOURS`, else the training baseline;
    the spread never falls below the training spread's tenth (a feature constant in the past
    would otherwise make any change infinite).
    """
    stats = model.meta["baseline"][kind_of_vector(vector)]
    own = baseline is not None and baseline["n"] >= MIN_BASELINE_HOURS
    out = []
    for i, name in enumerate(FEATURES):
        g = stats[name]
        floor = max(0.1 * g["std"], 1e-3 * max(1.0, abs(g["mean"])), 1e-6)
        if baseline is not None and own:
            usual = baseline["mean"][i]
            spread = math.sqrt(max(0.0, baseline["m2"][i] / max(1, baseline["n"] - 1)))
        else:
            usual, spread = g["mean"], g["std"]
        spread = max(spread, floor)
        out.append((name, vector[i], usual, spread, (vector[i] - usual) / spread))
    out.sort(key=lambda d: -abs(d[4]))
    return out


def _explain(
    vector: list[float], model: BehaviourModel, baseline: dict[str, Any] | None
) -> tuple[str, list[str]]:
    """The top deviating features, in words, and their names."""
    whose = (
        "its usual" if baseline is not None and baseline["n"] >= MIN_BASELINE_HOURS else "the usual"
    )
    parts = []
    top = _deviations(vector, model, baseline)[:TOP_FEATURES]
    for name, value, usual, spread, z in top:
        direction = "above" if z > 0 else "below"
        parts.append(
            f"{DESCRIPTIONS[name]} {_num(value)}, {direction} {whose} {_num(usual)} ± {_num(spread)}"
            f" ({abs(z):.1f} spreads)"
        )
    return "; ".join(parts), [d[0] for d in top]


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 or float(x).is_integer() else f"{x:.2f}"


def _finding(
    event: Event, c: Closed, score: float, ctx: Context, state: dict[str, Any], *, early: bool
) -> Finding:
    model = ctx.model
    if model is None:  # only called with a model loaded
        raise RuntimeError("behaviour_anomaly finding without a model")
    provider, _, principal = c.key.partition("|")
    hour = format_ms(c.hour * HOUR_MS)
    if principal == ALL_PRINCIPALS:
        title = f"Unusual behaviour of provider {provider} across its principals (provider-level vector)"
        who = f"Provider {provider}'s principals together on account {event['account_id']} (the provider-level vector)"
    else:
        title = (
            f"Unusual behaviour of principal {principal} (provider {provider}; principal vector)"
        )
        who = f"Principal {principal} of provider {provider} on account {event['account_id']} (the principal vector)"
    when = f"so far in the hour from {hour}" if early else f"in the hour from {hour}"
    baseline = state.get("b", {}).get(c.key)
    if baseline is not None and len(baseline["mean"]) != len(FEATURES):
        baseline = None  # kept under another feature version: the training baseline speaks
    words, top = _explain(c.vector, model, baseline)
    beyond = model.out_of_range(c.vector)
    if beyond:
        words += "; beyond anything in the training window: " + ", ".join(
            DESCRIPTIONS[f] for f in beyond
        )
    return ctx.finding(
        event,
        detector=DETECTOR,
        severity=SEVERITY,
        key=f"{event['account_id']}|{c.key}",
        window=hour,
        title=title,
        summary=(
            f"{who} behaved unlike its history {when} (anomaly score {score:.3f}, threshold"
            f" {model.threshold:.3f}, model {model.name}): " + words + "."
        ),
        response=RESPONSE,
        related=tuple(c.evidence_for(top)),
    )
