"""The worker's provider stage process (streams/provider_stage_child.py) without a broker: what
its health says, and which of the child's figures the worker's /metrics shows. (The process
itself, killed, restarted and orphaned: tests/integration/test_provider_stage_child.py.)"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    Summary,
    generate_latest,
)

from pipeline.config import Settings
from streams.child_process import sample_names
from streams.provider_stage_child import ChildMetrics, StageProcess
from streams.warehouse_service import health

CHILD_METRICS = """\
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 123.0
# HELP pw_heap_trims_total Heap trims
# TYPE pw_heap_trims_total counter
pw_heap_trims_total 7.0
# HELP pw_provider_stage_events_total Ledger entries the provider-wide stage folded
# TYPE pw_provider_stage_events_total counter
pw_provider_stage_events_total 42.0
# HELP pw_provider_stage_active 1 while this process holds the provider-wide stage (one worker at a time)
# TYPE pw_provider_stage_active gauge
pw_provider_stage_active 1.0
# HELP pw_provider_stage_alerts_total Alert versions the provider-wide stage published
# TYPE pw_provider_stage_alerts_total counter
pw_provider_stage_alerts_total{detector="cross_account_spray"} 3.0
"""


def _exposed(collector: ChildMetrics) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_the_worker_shows_only_the_stage_figures_of_its_child() -> None:
    collector = ChildMetrics()
    assert _exposed(collector) == ""  # nothing read yet: nothing shown
    collector.text = CHILD_METRICS
    text = _exposed(collector)
    assert "pw_provider_stage_events_total 42.0" in text
    assert "pw_provider_stage_active 1.0" in text
    assert 'pw_provider_stage_alerts_total{detector="cross_account_spray"} 3.0' in text
    # the child's own process, collector and trim figures would clash with the worker's
    assert "python_gc" not in text and "pw_heap_trims" not in text
    collector.text = CHILD_METRICS[:-30] + "\x00garbage {{"  # cut short, or not metrics at all
    assert "python_gc" not in _exposed(collector)


def test_health_of_a_stage_process_that_is_being_restarted_is_degraded() -> None:
    child = StageProcess(Settings.from_env({"PW_PROVIDER_STAGE": "process"}))
    assert child.health()["status"] == "starting"
    assert (
        health(None, True, external=True, warehouse_open=True, provider_stage=child.health())[0]
        == 200
    )
    child.status = "restarting"
    child.last_exit = "the provider stage process was ended by SIGKILL after 3 s"
    status, body = health(
        None, True, external=True, warehouse_open=True, provider_stage=child.health()
    )
    assert status == 503 and body["status"] == "degraded"
    assert body["provider_stage"]["error"] == child.last_exit
    child.status = "running"  # started again: healthy, and the last exit still on record
    status, body = health(
        None, True, external=True, warehouse_open=True, provider_stage=child.health()
    )
    assert status == 200 and body["provider_stage"]["last_exit"] == child.last_exit


def test_the_scrape_asks_the_child_for_the_shown_families_whole() -> None:
    """The query (`name[]` of every sample name) makes a child's exposition answer with the
    shown families, every sample of them, and nothing else: checked against prometheus_client's
    own restriction of a registry holding the shown metrics, observed, beside others."""
    registry = CollectorRegistry()
    events = Counter("pw_t_events", "events", registry=registry)
    held = Histogram("pw_t_held_seconds", "held", ["reason"], registry=registry)
    active = Gauge("pw_t_active", "active", registry=registry)
    info = Info("pw_t_build", "build", registry=registry)
    spread = Summary("pw_t_spread", "spread", registry=registry)
    other = Counter("pw_t_other", "not shown", registry=registry)
    events.inc(3)
    held.labels("ingest_backlog").observe(0.2)
    active.set(1)
    info.info({"version": "1"})
    spread.observe(4)
    other.inc()
    shown = (events, held, active, info, spread)
    names = sample_names(shown)
    asked = generate_latest(registry.restricted_registry(names)).decode()
    whole = generate_latest(registry).decode()
    assert "pw_t_other" in whole and "pw_t_other" not in asked
    for metric in shown:
        for family in metric.describe():
            lines = [
                line
                for line in whole.splitlines()
                if line.split("{")[0].split(" ")[0].startswith(family.name)
                or line.startswith((f"# HELP {family.name} ", f"# TYPE {family.name} "))
            ]
            assert lines and all(line in asked.splitlines() for line in lines), family.name
    collector = ChildMetrics(shown)
    assert [value for key, value in collector.query if key == "name[]"] == list(names)
    collector.text = asked
    assert _exposed(collector).count("pw_t_held_seconds_bucket") == len(
        [line for line in whole.splitlines() if line.startswith("pw_t_held_seconds_bucket")]
    )


def test_a_worker_scrape_that_asks_for_none_of_the_childs_figures_does_not_read_it() -> None:
    """`?name[]=` on the worker's /metrics: the child is read only when a name asked for is one
    of its samples (or none is named), against a real HTTP server standing in for the child."""
    import asyncio

    import aiohttp
    from aiohttp import web

    asked: list[list[str]] = []

    async def child_metrics(request: web.Request) -> web.Response:
        asked.append(request.query.getall("name[]", []))
        return web.Response(text=CHILD_METRICS)

    async def scenario() -> None:
        server = web.Application()
        server.router.add_get("/metrics", child_metrics)
        runner = web.AppRunner(server)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        child = StageProcess(Settings())
        child.port = runner.addresses[0][1]
        child.status = "running"
        child._session = aiohttp.ClientSession()
        try:
            await child.scrape(["pw_events_accepted_total"])  # the worker's own figure only
            assert asked == [] and child.collector.text == ""
            await child.scrape(["pw_events_accepted_total", "pw_provider_stage_active"])
            assert len(asked) == 1 and child.collector.text == CHILD_METRICS
            await child.scrape()  # the whole registry
            assert len(asked) == 2
            # the child is always asked for its shown families whole, whatever the worker's query
            assert asked[0] == asked[1] == [v for _, v in child.collector.query]
        finally:
            await child._session.close()
            await runner.cleanup()

    asyncio.run(scenario())


def test_a_restricted_scrape_of_the_worker_finds_the_childs_figures() -> None:
    """The worker's registry (auto-describing, as prometheus_client's global one) registers the
    collector before the child has answered; a `?name[]=` scrape must still find it by name."""
    registry = CollectorRegistry(auto_describe=True)
    collector = ChildMetrics()
    registry.register(collector)
    collector.text = CHILD_METRICS
    text = generate_latest(registry.restricted_registry(["pw_provider_stage_active"])).decode()
    assert [x for x in text.splitlines() if x[0] != "#"] == ["pw_provider_stage_active 1.0"]
    assert "pw_provider_stage_events" not in text


def test_a_new_stage_process_instance_takes_over_the_workers_figures() -> None:
    """The collector describes its families, so the registry knows it by their names: a second
    instance started in the same worker (a restarted service) replaces the first one's collector
    instead of clashing with it."""
    import asyncio

    from prometheus_client.registry import REGISTRY

    async def started(child: StageProcess) -> None:
        async def no_spawn() -> None:  # no process: only the registration is under test
            return None

        child._spawn = no_spawn  # type: ignore[method-assign]
        await child.start()
        assert child._session is not None
        await child._session.close()

    first, second = StageProcess(Settings()), StageProcess(Settings())
    try:
        asyncio.run(started(first))
        asyncio.run(started(second))
        first.collector.text = CHILD_METRICS.replace("42.0", "1.0")
        second.collector.text = CHILD_METRICS
        text = generate_latest(REGISTRY.restricted_registry(["pw_provider_stage_events_total"]))
        assert [x for x in text.decode().splitlines() if x[0] != "#"] == [
            "pw_provider_stage_events_total 42.0"
        ]
    finally:  # the registry as it was: the worker's own stage figures, no child collector
        from streams import child_process

        REGISTRY.unregister(child_process._SHOWING.pop(second.name))
        for metric in StageProcess.SHOWN:
            REGISTRY.register(metric)
