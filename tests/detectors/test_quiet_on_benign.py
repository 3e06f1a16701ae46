"""No detector raises on traffic that violates no grant and moves no funds (hypothesis).

Streams come from the simulator's benign generator with hypothesis-chosen seeds, world sizes,
rates and start times; every event runs through `detectors.run.observe` like the detect agent, and through the
provider-wide stage's rules (`detectors.provider_wide.run.Stage`) like the provider stage.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.provider_wide.run import Stage
from detectors.run import new_state, observe
from pipeline.config import DetectionConfig
from pipeline.event import normalize
from pipeline.simulation.traffic import generate


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**31),
    accounts=st.integers(min_value=1, max_value=8),
    providers=st.integers(min_value=1, max_value=5),
    per_hour=st.sampled_from([300.0, 900.0, 1800.0]),
    start_offset_hours=st.integers(min_value=0, max_value=24 * 400),
)
def test_no_detector_raises_on_benign_traffic(
    seed: int, accounts: int, providers: int, per_hour: float, start_offset_hours: int
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=start_offset_hours)
    config = DetectionConfig()
    states: dict[str, dict] = {}
    stage = Stage(config)
    for raw, truth in generate(
        1500,
        seed=seed,
        accounts=accounts,
        providers=providers,
        attack_kinds=(),
        start=start,
        events_per_hour=per_hour,
    ):
        assert truth is None
        event = normalize(raw)
        assert not event["action"].startswith("funds.")
        findings = observe(states.setdefault(event["account_id"], new_state()), event, config)
        assert not findings, f"{[f.detector for f in findings]} on benign {event}"
        wide = stage.findings(event)
        assert not wide, f"{[f.detector for f in wide]} on benign {event}"
