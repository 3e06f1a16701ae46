"""The stateful detectors whose per-event state handling was made cheaper find exactly what they
found before, and leave exactly the state they left before, byte for byte as stored.

Simulator streams (every attack kind, seeds 7 and 23, as the mypyc parity test runs them) are
folded through `detectors.run.apply_event` as the ingest service folds them. For each detector
in `RECORDED`, the alert ids it published in order, every alert version, and its state of every
account as the changelog stores it (streams/ingest_batch.py `state_record`: orjson with
non-string keys, dict order kept, not sorted) are hashed and compared with digests that the code
before the change (main at 759855f) computed on the same streams. A third stream, spread over
two weeks of event time so that idle providers and principals are forgotten, also passes every
account's state through its stored JSON form every 1,000 events, as a worker's recovery does:
a state loaded from an existing changelog must fold on to the same results.

Edge cases the simulator does not produce (late events, out-of-order steps, idle sweeps at odd
moments) are compared with the earlier implementations by hypothesis in
tests/detectors/test_state_reference.py.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import orjson
import pytest

from pipeline.config import DetectionConfig
from pipeline.simulation.traffic import ATTACKS, generate
from tests.detectors.compiled_parity import FlaggingModel, fold_event

if TYPE_CHECKING:
    from detectors.behaviour.model import BehaviourModel

COUNT = 20_000

#: (seed, events per hour of event time, a JSON round trip of every state every n events or 0)
STREAMS = {
    "seed7": (7, 3600.0, 0),
    "seed23": (23, 3600.0, 0),
    "seed23-two-weeks-reloaded": (23, 60.0, 1_000),
}

#: The detectors compared: those whose state handling changed, and two stateful ones beside them.
DETECTORS = (
    "api_rate_exceeded",
    "api_rate_sustained",
    "report_exfiltration",
    "bulk_listing_burst",
    "new_country_or_asn",
    "change_outside_gateway",
    "ip_churn",
    "impossible_travel",
)

#: What the code before the change gave: stream -> detector -> (digest of its alerts, of its states).
RECORDED: dict[str, dict[str, tuple[str, str]]] = {
    "seed7": {
        "api_rate_exceeded": (
            "e1638e7e91a777bcd271f93de6183f682f88786b43e49b951bb8a61bea88264b",
            "af4cc64dd3d40053c0786978fe6497f00f9b31e906c0ed4bd63a4ca0dd9f4263",
        ),
        "api_rate_sustained": (
            "b0e15e46fb052050a9fee7bba06b11cbff5b57502924111e519d3a6afe6b264f",
            "4260bbbdd356a8a6f9488f3241c00d004fea2bb2df7cb2956eccd2803651d317",
        ),
        "report_exfiltration": (
            "5d7c0fcbaf6d090a302e86b07c7f164f1afbd28212c683b82689b3728d7c530f",
            "82f1d80a4b9e6ce5013d381d7b02bdadcb8dc8780b2a1b1f46e1dc0c29742c1e",
        ),
        "bulk_listing_burst": (
            "9e7784f2cbf8eef1d88c43e8a90d6440c12629901f4c39482d1e39a84299abac",
            "ae8cead8d53164ebb24b501a0a1ca68bf997c4284223cb9bf783c7cc36c8efc4",
        ),
        "new_country_or_asn": (
            "70c5b43ea0b34a77784f0cbceec3b6a897bf97c82f13628672fec81979b1b2e0",
            "cf482b9d0fcf24ab78303b17508593bdb6ea8992f3a3e6490747a49e4bf31d77",
        ),
        "change_outside_gateway": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "ccaf6e7f6dab8b272908ff40b40de8f59073c17458397c21669935fe3d8acf90",
        ),
        "ip_churn": (
            "d99f719083f954fbaad731157076a57c6239702380e587d5ee13e7c40d8c8723",
            "03fec67167bcc8c61e6839f454cdb0c95d8718b9057f849794336d32f8f84cfa",
        ),
        "impossible_travel": (
            "1be4b64bd12a09e05c9dc932a2463f7fd3581c8e2c74e493e1e0d85e5f60b96c",
            "7656500ee75d5ab038d82ecc1d63e2f6430ab125a17d0fd991ad74ec0a47a201",
        ),
    },
    "seed23": {
        "api_rate_exceeded": (
            "9a582b766a9f813ec6cfd11eeddd11911e8925771a8bbdeef9acf076eea57835",
            "ba25c0de2b4361c2ae275e1135c298f69a92f455e47a83f0c046623ad470edf3",
        ),
        "api_rate_sustained": (
            "6d9372bb82921932716eb336cce52f77f12a73d69f4e4555fd7359b7c21c216e",
            "7d15bd571e8fdb4abc58302946699f9fa807cd0487d44cc97c32f6db270a8b3c",
        ),
        "report_exfiltration": (
            "bb2c52112fa3d3e1a8255c79ce95a305eac82d5c3326c67a9804f5589e7b0150",
            "715e355050d2ca181d1d618331768077be72626bb143218d8904145c75337a38",
        ),
        "bulk_listing_burst": (
            "d13655a7a5b81a08790cefe3d2f39d5eee6e606cdf3d7eab46613925af1480f1",
            "a5a368d637bf0cefc0a5a810503bfb3296f518639d23d90e1d89a2bb12247f72",
        ),
        "new_country_or_asn": (
            "3b6474902e0990499aaa4fff397bcd9064afe3cb41c9049c2dd79a71c8000e83",
            "c5d2096736dab9732841c59d4fa53b308a0fe0b1e111b60e88fffc71ee6daa7a",
        ),
        "change_outside_gateway": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "d58a091b40985ae381af74e4162d22d5f5b99afa18a0770b4fcab30348080b5a",
        ),
        "ip_churn": (
            "64b3a45817b1cad47a4b743d0bc9c723dec2319f4e7654a5d1af8bb738dbf854",
            "616c9d4f747cc9a789462df3230ad6d8359ba7501b82a1a786fa45ea5ccd195d",
        ),
        "impossible_travel": (
            "92cf7808f80ec7fbec6bdef399ed9131f4df9ee45547960a1d8ee83b1aae837e",
            "0eca91c5006a709b400100477af575792688a9abc9da781f0f14c9df07a3db66",
        ),
    },
    "seed23-two-weeks-reloaded": {
        "api_rate_exceeded": (
            "b32bb6f1221889dc42963fad75127ff3efd52b5f2c623ae4b5744e513f823487",
            "ab4ec367151ea8d75587600555a7cf383616a4f94a73ea33529550b3b43c784f",
        ),
        "api_rate_sustained": (
            "9fc47f7c84231c78f1765ec9cd4983a31aa5b77a8aaecd3cda12f11836bf4b78",
            "818345583dd2be64428b27666b1d375906d0188a93ac45a038bd675ad8cd8fbb",
        ),
        "report_exfiltration": (
            "27506984010970a00f89820d353c1da04659df3339cf2e77f3a085b51fc09521",
            "44ae859df281331a47ba0ed779e84cef3523b9c807c613a4ce7bc230f1709360",
        ),
        "bulk_listing_burst": (
            "71b53737061574b693f4078f5d7578a640b2b18fd00979e2d11d871321d0da74",
            "60c1cc743fb59ddfb416c89dd9dd3598e16c0dd6d8a8c6ae805613ac87ced330",
        ),
        "new_country_or_asn": (
            "4501de6e2fa6d20e4d3035f25aae03ed557932db6f0965bacb1b26709d7f8f6f",
            "95711e44aeeb82a63499155bd58124fa7f3620a529ecdd4ca26fc61bcb79a1c6",
        ),
        "change_outside_gateway": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "241fc84f74f999c1e75ea6822294922b682753889cd49765080b178511ef413f",
        ),
        "ip_churn": (
            "0a27e3aa5fa6ef7cccfc025a2cd66a5be20d046d66f789260fa9ea65f83da5c6",
            "d044780c1f5b6433c6ca9df0366c2aab37d6c4a547231dfadba1aa7941f15ff0",
        ),
        "impossible_travel": (
            "53fe136306e6ea0b19cea06d63cc90abe1a3f8d3b8c91daf15e9e95bc8e94d9d",
            "45cfefb67081880734432a37c3fa1454ec90fb79b379483ad61004c9ca956bb7",
        ),
    },
}


def stored(value: Any) -> bytes:
    """A state as the changelog stores it (streams/ingest_batch.py `state_record`)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def fold(seed: int, per_hour: float, reload_every: int) -> dict[str, tuple[str, str]]:
    """Per detector of `RECORDED`'s: the digest of its alerts and of its final states."""
    config = DetectionConfig()
    model = cast("BehaviourModel", FlaggingModel())
    states: dict[str, dict[str, Any]] = {}
    open_alerts: dict[str, Any] = {}
    alerts = {name: hashlib.sha256() for name in DETECTORS}
    events = generate(
        COUNT,
        seed=seed,
        accounts=8,
        providers=5,
        attack_rate=0.01,
        attack_kinds=ATTACKS,
        start=datetime(2026, 11, 2, 6, 0, tzinfo=UTC),
        events_per_hour=per_hour,
    )
    for n, (raw, _) in enumerate(events, 1):
        applied = fold_event(raw, states, open_alerts, config, model)
        for alert in applied.alerts:
            if alert["detector"] in alerts:
                digest = alerts[alert["detector"]]
                digest.update(alert["alert_id"].encode())
                digest.update(orjson.dumps(alert, option=orjson.OPT_SORT_KEYS))
        if reload_every and n % reload_every == 0:
            states = {k: orjson.loads(stored(v)) for k, v in states.items()}
            open_alerts = orjson.loads(stored(open_alerts))
    out: dict[str, tuple[str, str]] = {}
    for name in DETECTORS:
        final = hashlib.sha256()
        for account in sorted(states):
            final.update(account.encode() + b"=" + stored(states[account]["det"].get(name)))
        out[name] = (alerts[name].hexdigest(), final.hexdigest())
    return out


@pytest.mark.parametrize("stream", list(STREAMS))
def test_same_alerts_and_state_as_before(stream: str) -> None:
    got = fold(*STREAMS[stream])
    assert got == RECORDED[stream]


if __name__ == "__main__":  # prints RECORDED for the code checked out
    import pprint

    pprint.pprint({name: fold(*args) for name, args in STREAMS.items()}, width=100)
