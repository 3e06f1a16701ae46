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

from pipeline.config import REPO_ROOT, Settings

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
ONE_SHOT = {"migrate", "simulate", "train"}
SECRETS = (
    "PW_CLICKHOUSE_PASSWORD",
    "GRAFANA_CLICKHOUSE_PASSWORD",
    "PW_CLICKHOUSE_READER_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "PW_API_TOKEN",
    "PW_KAFKA_SASL_PASSWORD",
    "PW_MASK_KEY",
    "PW_DIGEST_HMAC_KEY",
)
SECRET_KEY = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$")
#: `${NAME...}` compose substitutes (`$${...}` is a literal `$` for the container's shell)
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}")


def services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def partnerwatch_services() -> dict[str, Any]:
    """The services that run the PartnerWatch image."""
    return {name: s for name, s in services().items() if s.get("image") == "partnerwatch:local"}


def resolved(value: Any) -> str:
    """A compose value with every `${VAR:?...}` replaced by a stand-in secret."""
    return VARIABLE.sub(lambda m: f"test-{m.group(1).lower()}", str(value))


def test_the_whole_stack_is_there() -> None:
    s = services()
    assert {
        "kafka",
        "clickhouse",
        "migrate",
        "worker",
        "loader",
        "alert-feed",
        "simulate",
        "prometheus",
        "grafana",
    } <= set(s)
    assert s["kafka"]["image"].startswith("apache/kafka:")
    assert (
        s["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    )  # KRaft, no ZooKeeper
    assert s["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert s["migrate"]["command"] == ["migrate"]
    assert s["alert-feed"]["command"] == ["alerts", "feed"]
    assert s["simulate"]["profiles"] == ["demo"]
    assert (
        "GF_INSTALL_PLUGINS" not in s["grafana"]["environment"]
    )  # baked in at a pinned version (infra/grafana)
    assert s["worker"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    # the loader runs apart from the workers, on the ClickHouse server (issue 16)
    assert (
        s["loader"]["command"] == ["loader"]
        and s["worker"]["environment"]["PW_WAREHOUSE_LOADER"] == "external"
    )
    assert "PW_CLICKHOUSE_URL" in s["loader"]["environment"]


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
                assert (REPO_ROOT / source).exists() and volume.endswith(":ro"), (
                    f"{name}: bind mount {volume}"
                )
            else:
                assert source in declared, f"{name}: volume {source} is not a named volume"


def test_no_secret_in_the_file() -> None:
    text = COMPOSE.read_text()
    for name, service in services().items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY.search(key) and key != "GF_SECURITY_ADMIN_USER":
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), (
                    f"{name}: {key} must come from .env"
                )
    # credentials inside URLs come from .env too, never a default
    urls = re.findall(r"clickhouse://.*", text)
    assert urls
    for url in urls:
        assert re.match(r"clickhouse://\w+:\$\{PW_CLICKHOUSE_PASSWORD:\?[^}]*\}@", url), url
    assert ":-" not in text, "no default values: a default password is a published password"
    example = (REPO_ROOT / ".env.example").read_text()
    for secret in SECRETS:
        assert f"${{{secret}:?" in text
        assert re.search(rf"^{secret}=$", example, re.M), (
            f".env.example lists {secret} with no value"
        )


def values(node: Any) -> list[str]:
    """Every string in the parsed file (compose substitutes in values, not in comments)."""
    if isinstance(node, dict):
        return [v for key, item in node.items() for v in (*values(key), *values(item))]
    if isinstance(node, list):
        return [v for item in node for v in values(item)]
    return [node] if isinstance(node, str) else []


def test_every_variable_compose_needs_is_required_and_listed_in_env_example() -> None:
    strings = values(yaml.safe_load(COMPOSE.read_text()))
    used = {m.group(1): m.group(2) for text in strings for m in VARIABLE.finditer(text)}
    assert {"PW_KAFKA_SASL_PASSWORD", "PW_MASK_KEY", "PW_DIGEST_HMAC_KEY"} <= set(used)
    listed = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    assert set(used) <= listed, f"missing from .env.example: {sorted(set(used) - listed)}"
    for name, tail in used.items():
        assert tail.startswith(":?"), (
            f"${{{name}}} must be required (${{{name}:?message}}): compose would run without it"
        )


def test_the_worker_masks_and_signs_with_keys_from_env() -> None:
    worker = services()["worker"]["environment"]
    for key in ("PW_MASK_KEY", "PW_DIGEST_HMAC_KEY"):
        assert re.fullmatch(rf"\$\{{{key}:\?[^}}]+\}}", str(worker.get(key, ""))), key
    settings = Settings.from_env({k: resolved(v) for k, v in worker.items()})
    assert settings.mask_key and settings.digest_hmac_key


def test_kafka_clients_and_the_broker_use_sasl() -> None:
    s = services()
    kafka = s["kafka"]["environment"]
    protocols = dict(
        item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    advertised = [item.split("://")[0] for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")]
    assert advertised and all(protocols[name].startswith("SASL_") for name in advertised), (
        advertised
    )
    assert protocols[kafka["KAFKA_INTER_BROKER_LISTENER_NAME"]].startswith("SASL_")
    assert (
        "localhost:" in kafka["KAFKA_LISTENERS"].split("CONTROLLER://")[1]
    )  # the controller is not on the network
    mechanisms = kafka["KAFKA_SASL_ENABLED_MECHANISMS"].split(",")
    jaas = " ".join(v for k, v in kafka.items() if k.endswith("_SASL_JAAS_CONFIG"))
    assert "healthcheck" in s["kafka"] and "--command-config" in str(
        s["kafka"]["healthcheck"]["test"]
    )
    pw = partnerwatch_services()
    assert {"migrate", "worker", "alert-feed", "simulate"} <= set(pw)
    for name, service in pw.items():
        env = service["environment"]
        settings = Settings.from_env(
            {k: resolved(v) for k, v in env.items()}
        )  # consistent settings
        assert settings.kafka_sasl, f"{name} connects to Kafka without SASL"
        assert env["PW_KAFKA_BROKER"] == kafka["KAFKA_ADVERTISED_LISTENERS"].split("://")[1]
        assert settings.kafka_sasl_mechanism in mechanisms, name
        # the broker knows the user, with the password the clients get from .env
        password = env["PW_KAFKA_SASL_PASSWORD"]
        assert re.fullmatch(r"\$\{PW_KAFKA_SASL_PASSWORD:\?[^}]+\}", password)
        assert f'user_{settings.kafka_sasl_username}="{password}"' in jaas, name


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())  # join continued lines
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def test_the_worker_image_runs_as_an_unprivileged_user() -> None:
    instructions = dockerfile_instructions()
    users = [arg.strip() for op, arg in instructions if op == "USER"]
    assert users, "the image runs as root: add USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]
    created = " ".join(arg for op, arg in instructions if op == "RUN")
    assert re.search(rf"useradd\b.*--uid {user}\b", created) or re.search(
        rf"useradd\b.*\b{user}$", created
    ), created
    last_run = max(i for i, (op, _) in enumerate(instructions) if op == "RUN")
    last_user = max(i for i, (op, _) in enumerate(instructions) if op == "USER")
    assert last_user > last_run, (
        "USER must come after the last RUN (the installed image runs unprivileged)"
    )
    assert any(op == "RUN" and "chown" in arg and "/data" in arg for op, arg in instructions), (
        "the data volume must belong to the user"
    )
    for name, service in partnerwatch_services().items():
        assert str(service.get("user", "10001")) not in {"root", "0", "0:0"}, name


def test_the_build_context_leaves_out_local_state() -> None:
    ignore = REPO_ROOT / ".dockerignore"
    assert ignore.is_file(), "no .dockerignore: the build context would include .venv and .cache"
    patterns = {
        line.strip().rstrip("/")
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {
        ".venv",
        ".cache",
        "data",
        ".git",
        ".env",
        ".pytest_cache",
        "**/__pycache__",
    } <= patterns
    # and nothing the Dockerfile copies is ignored
    copied = [
        part for op, arg in dockerfile_instructions() if op == "COPY" for part in arg.split()[:-1]
    ]
    assert "pyproject.toml" in copied and "partnerwatch" in copied
    assert not set(copied) & patterns, set(copied) & patterns


@pytest.mark.skipif(
    shutil.which("docker-compose") is None and not os.environ.get("CI"),
    reason="Debian's docker-compose is not installed (apt-get install --no-install-recommends docker-compose)",
)
def test_docker_compose_parses_and_validates_the_file() -> None:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    command = ["docker-compose", "-f", str(COMPOSE), "--project-directory", str(REPO_ROOT)]
    missing = subprocess.run(
        [*command, "config", "-q"], env=env, capture_output=True, text=True, timeout=120
    )
    # refuses without secrets, naming one (which comes first depends on the service order)
    assert missing.returncode != 0 and any(secret in missing.stderr for secret in SECRETS), (
        missing.stderr
    )
    env.update({secret: "test-only-value" for secret in SECRETS})
    done = subprocess.run(
        [*command, "--profile", "demo", "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert "simulate" in resolved["services"] and "worker" in resolved["services"]
