"""The compose stack's integrations, checked without a Docker engine: the alert feed starts with
.env.example's variables alone (every secret its routes file names is listed and passed), the
stack has an Alertmanager that Prometheus and the feed reach, worker replicas keep their own
state, the worker's healthcheck fails while /v1/health is not ok (run against a real HTTP server),
and the Grafana plugin is pinned and installed at build time."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import REPO_ROOT, Settings
from sinks.alert_outputs import routes as alert_routes
from streams.web.guard import exposure_error
from tests.observability.test_compose import (
    ENV_EXAMPLE,
    VARIABLE,
    partnerwatch_services,
    resolved,
    services,
)

COMPOSE = REPO_ROOT / "docker-compose.yml"


def listed_in_env_example(text: str | None = None) -> set[str]:
    return set(
        re.findall(
            r"^([A-Za-z_][A-Za-z0-9_]*)=", ENV_EXAMPLE.read_text() if text is None else text, re.M
        )
    )


def routes_file_of(service: dict[str, Any]) -> Path | None:
    """The host file bind-mounted where the service's PW_ALERT_ROUTES points."""
    target = (service.get("environment") or {}).get("PW_ALERT_ROUTES")
    if not target:
        return None
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return REPO_ROOT / source
    raise AssertionError(f"PW_ALERT_ROUTES={target} is not mounted from the repository")


def named_variables(routes_text: str) -> set[str]:
    """Every environment variable a routes file names (secret_env, url_env)."""
    data = alert_routes.tomllib.loads(routes_text)
    return {
        value
        for output in data.get("outputs", {}).values()
        for key, value in output.items()
        if key in ("secret_env", "url_env")
    }


def missing(service: dict[str, Any], routes_text: str, env_example: str) -> list[str]:
    """What a service with this routes file lacks: variables its compose entry or the routes file
    need that .env.example does not list, or that compose does not pass to the container."""
    listed = listed_in_env_example(env_example)
    env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
    problems = []
    used = {m.group(1) for value in env.values() for m in VARIABLE.finditer(value)}
    problems += [f"{name} (compose) not in .env.example" for name in sorted(used - listed)]
    for name in sorted(named_variables(routes_text)):
        if name not in listed:
            problems.append(f"{name} (routes file) not in .env.example")
        if not re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", env.get(name, "")):
            problems.append(f"{name} (routes file) not passed to the container as ${{{name}:?...}}")
    return problems


def test_the_alert_feed_starts_with_the_variables_env_example_lists() -> None:
    feed = services()["alert-feed"]
    path = routes_file_of(feed)
    assert path is not None and path.is_file()
    assert missing(feed, path.read_text(), ENV_EXAMPLE.read_text()) == []
    # what `partnerwatch alerts feed` does at start: the file validates and every named variable resolves
    environ = {k: resolved(v) for k, v in feed["environment"].items()}
    loaded = alert_routes.load(path, environ)
    assert set(loaded.outputs) >= {"alertmanager"}
    settings = Settings.from_env(environ)
    assert settings.alert_routes == "/etc/partnerwatch/routes.toml"


def test_the_check_finds_a_secret_that_env_example_or_compose_lacks() -> None:
    feed = services()["alert-feed"]
    extra = '\n[outputs.hook]\ntype = "webhook"\nurl = "https://soc.example/h"\nsecret_env = "PW_HOOK_SECRET"\n'
    text = (REPO_ROOT / "infra/alerts/routes.compose.toml").read_text() + extra
    assert missing(feed, text, ENV_EXAMPLE.read_text()) == [
        "PW_HOOK_SECRET (routes file) not in .env.example",
        "PW_HOOK_SECRET (routes file) not passed to the container as ${PW_HOOK_SECRET:?...}",
    ]
    passed = {
        **feed,
        "environment": {**feed["environment"], "PW_HOOK_SECRET": "${PW_HOOK_SECRET:?set it}"},
    }
    assert missing(passed, text, ENV_EXAMPLE.read_text() + "PW_HOOK_SECRET=\n") == []
    # the old mount, the full example file, names secrets the stack never had: this crash-looped
    example = (REPO_ROOT / "infra/alerts/routes.example.toml").read_text()
    assert any("PW_WEBHOOK_SECRET" in p for p in missing(feed, example, ENV_EXAMPLE.read_text()))
    with pytest.raises(alert_routes.RoutesError, match="PW_WEBHOOK_SECRET"):
        alert_routes.parse(
            alert_routes.tomllib.loads(example),
            {k: resolved(v) for k, v in feed["environment"].items()},
        )


def test_every_partnerwatch_service_starts_with_its_settings() -> None:
    for name, service in partnerwatch_services().items():
        env = {k: resolved(v) for k, v in (service.get("environment") or {}).items()}
        settings = Settings.from_env(env)
        assert exposure_error(settings) is None, (
            name
        )  # the worker listens beyond loopback only with a token


def test_alertmanager_is_in_the_stack_and_everything_reaches_it() -> None:
    s = services()
    am = s["alertmanager"]
    assert re.fullmatch(r"prom/alertmanager:v\d+\.\d+\.\d+", am["image"])
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in am["command"]
    assert "./infra/alertmanager:/etc/alertmanager:ro" in am["volumes"]
    assert "127.0.0.1:9093:9093" in am["ports"]
    # Prometheus's rules notify it
    prometheus = yaml.safe_load((REPO_ROOT / "infra/prometheus/prometheus.yml").read_text())
    targets = [
        t
        for a in prometheus["alerting"]["alertmanagers"]
        for c in a["static_configs"]
        for t in c["targets"]
    ]
    assert targets == ["alertmanager:9093"]
    assert s["prometheus"]["depends_on"]["alertmanager"] == {"condition": "service_healthy"}
    # the alert feed's output points at it
    routes = alert_routes.tomllib.loads(
        (REPO_ROOT / "infra/alerts/routes.compose.toml").read_text()
    )
    assert routes["outputs"]["alertmanager"]["url"] == "http://alertmanager:9093"
    assert s["alert-feed"]["depends_on"]["alertmanager"] == {"condition": "service_healthy"}


@pytest.mark.skipif(
    shutil.which("amtool") is None,
    reason="amtool (Debian's prometheus-alertmanager) is not installed",
)
def test_the_alertmanager_configuration_is_valid() -> None:
    done = subprocess.run(
        ["amtool", "check-config", str(REPO_ROOT / "infra/alertmanager/alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_worker_replicas_keep_their_own_state() -> None:
    s = services()
    for name, service in s.items():
        for volume in service.get("volumes", []):
            source, _, target = volume.partition(":")
            target = target.split(":")[0]
            assert target != "/data", (
                f"{name} mounts {source} at /data: replicas would share Faust state"
            )
    assert re.search(
        r"^VOLUME /data$", (REPO_ROOT / "Dockerfile").read_text(), re.M
    )  # one anonymous volume each
    # what they do share is read-only: the behaviour model artifacts
    assert (
        "models:/models:ro" in s["worker"]["volumes"]
        and s["worker"]["environment"]["PW_MODEL_DIR"] == "/models"
    )
    assert (
        "models:/models" in s["train"]["volumes"]
        and s["train"]["environment"]["PW_MODEL_DIR"] == "/models"
    )


class _Health:
    """A real HTTP server on 127.0.0.1 answering /v1/health with a given status and body."""

    def __init__(self) -> None:
        self.answer = (200, b'{"status": "ok"}')
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = health.answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def health() -> Iterator[_Health]:
    server = _Health()
    yield server
    server.close()


def test_the_worker_healthcheck_fails_while_health_is_not_ok(health: _Health) -> None:
    test = services()["worker"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    code = test[3]
    assert "127.0.0.1:6066/v1/health" in code
    code = code.replace("127.0.0.1:6066", f"127.0.0.1:{health.port}")

    def exit_code() -> int:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, timeout=30
        ).returncode

    assert exit_code() == 0
    for answer in [
        (503, b'{"status": "degraded", "warehouse_error": "disk full"}'),
        (503, b'{"status": "starting"}'),
        (200, b'{"status": "degraded"}'),  # an older worker that answered 200 while degraded
        (200, b"not json"),
    ]:
        health.answer = answer
        assert exit_code() != 0, answer
    health.answer = (200, b'{"status": "ok", "stored_events": 3}')
    assert exit_code() == 0


def test_the_grafana_plugin_is_pinned_and_baked_in() -> None:
    grafana = services()["grafana"]
    assert "GF_INSTALL_PLUGINS" not in grafana["environment"], (
        "installing at start needs the internet"
    )
    version = grafana["build"]["args"]["CLICKHOUSE_PLUGIN_VERSION"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    dockerfile = (REPO_ROOT / grafana["build"]["context"] / "Dockerfile").read_text()
    base = re.search(r"^FROM grafana/grafana:(\d+\.\d+\.\d+)$", dockerfile, re.M)
    assert base and base.group(1) in grafana["image"] and version in grafana["image"]
    assert re.search(
        r"plugins install grafana-clickhouse-datasource \"\$\{CLICKHOUSE_PLUGIN_VERSION\}\"",
        dockerfile,
    )
    assert f"ARG CLICKHOUSE_PLUGIN_VERSION={version}" in dockerfile
    assert (
        "GF_PATHS_PLUGINS=/opt/grafana-plugins" in dockerfile
    )  # not under the grafana-data volume
