"""docker-compose.yml, validated without a Docker engine (none runs on the project's machines).

The structure is checked from the YAML (healthchecks, loopback ports, named volumes, pinned
images, no literal secrets), and Debian's docker-compose parses and validates the whole file
(`docker-compose config`), with throwaway values for the secrets it requires from .env.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from pipeline.config import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
ONE_SHOT = {"migrate", "simulate"}
SECRETS = (
    "PW_CLICKHOUSE_PASSWORD", "GRAFANA_CLICKHOUSE_PASSWORD", "PW_CLICKHOUSE_READER_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
    "PW_API_TOKEN",
)
SECRET_KEY = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$")


def services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def test_the_whole_stack_is_there() -> None:
    s = services()
    assert {"kafka", "clickhouse", "migrate", "worker", "alert-feed", "simulate", "prometheus", "grafana"} <= set(s)
    assert s["kafka"]["image"].startswith("apache/kafka:")
    assert s["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert s["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert s["migrate"]["command"] == ["migrate"]
    assert s["alert-feed"]["command"] == ["alerts", "feed"]
    assert s["simulate"]["profiles"] == ["demo"]
    assert "grafana-clickhouse-datasource" in s["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    assert s["worker"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_every_service_has_a_healthcheck_or_is_one_shot() -> None:
    for name, service in services().items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
        else:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_ports_are_bound_to_loopback() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_images_are_pinned_and_volumes_named() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    declared = set(doc["volumes"])
    for name, service in doc["services"].items():
        image = service.get("image", "")
        if "build" not in service:
            tag = image.rsplit(":", 1)[1] if ":" in image else ""
            assert tag and tag != "latest", f"{name}: image {image!r} is not pinned"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists() and volume.endswith(":ro"), f"{name}: bind mount {volume}"
            else:
                assert source in declared, f"{name}: volume {source} is not a named volume"


def test_no_secret_in_the_file() -> None:
    text = COMPOSE.read_text()
    for name, service in services().items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY.search(key) and key != "GF_SECURITY_ADMIN_USER":
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), f"{name}: {key} must come from .env"
    # credentials inside URLs come from .env too, never a default
    urls = re.findall(r"clickhouse://.*", text)
    assert urls
    for url in urls:
        assert re.match(r"clickhouse://\w+:\$\{PW_CLICKHOUSE_PASSWORD:\?[^}]*\}@", url), url
    assert ":-" not in text, "no default values: a default password is a published password"
    example = (REPO_ROOT / ".env.example").read_text()
    for secret in SECRETS:
        assert f"${{{secret}:?" in text
        assert re.search(rf"^{secret}=$", example, re.M), f".env.example lists {secret} with no value"


@pytest.mark.skipif(
    shutil.which("docker-compose") is None and not os.environ.get("CI"),
    reason="Debian's docker-compose is not installed (apt-get install --no-install-recommends docker-compose)",
)
def test_docker_compose_parses_and_validates_the_file() -> None:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    command = ["docker-compose", "-f", str(COMPOSE), "--project-directory", str(REPO_ROOT)]
    missing = subprocess.run([*command, "config", "-q"], env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "PW_CLICKHOUSE_PASSWORD" in missing.stderr  # refuses without secrets
    env.update({secret: "test-only-value" for secret in SECRETS})
    done = subprocess.run([*command, "--profile", "demo", "config"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert "simulate" in resolved["services"] and "worker" in resolved["services"]
