"""Settings: where each value comes from, the nested detection variables, bad values, secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import REPO_ROOT, DetectionConfig, Settings, shown_value, variables


def test_every_variable_comes_from_environment_file_override_or_default(tmp_path: Path) -> None:
    env_file = tmp_path / "pw.env"
    env_file.write_text(
        "PW_TOPIC_PREFIX=file.\n"
        "PW_WEB_PORT=7001\n"
        "PW_DETECT_REFUND_MIN=33\n"
        "# a comment\n"
        "PW_APP_ID=from-file\n"
        f"PW_ENV_FILE={tmp_path / 'elsewhere.env'}\n"  # a file names no further file
    )
    environ = {"PW_ENV_FILE": str(env_file), "PW_WEB_PORT": "7002", "PW_DETECT_BULK_MIN_SKUS": "12"}
    s = Settings.from_env(environ, app_id="from-code")

    assert (s.topic_prefix, s.web_port, s.app_id) == ("file.", 7002, "from-code")
    assert (s.detect.refund_min, s.detect.bulk_min_skus) == (33, 12)
    assert s.origin("PW_TOPIC_PREFIX") == f"file {env_file}"
    assert s.origin("PW_WEB_PORT") == "environment"  # the environment wins over the file
    assert s.origin("PW_APP_ID") == "override"
    assert s.origin("PW_DETECT_REFUND_MIN") == f"file {env_file}"
    assert s.origin("PW_DETECT_BULK_MIN_SKUS") == "environment"
    assert s.origin("PW_RETENTION_DAYS") == "default" and s.retention_days == 730


def test_an_explicit_mapping_is_all_that_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_TOPIC_PREFIX", "process.")
    monkeypatch.setenv("PW_DETECT_REFUND_MIN", "99")
    assert Settings.from_env({}).topic_prefix == "pw."
    assert Settings.from_env({}).detect == DetectionConfig()
    assert Settings.from_env().topic_prefix == "process."
    assert Settings.from_env().detect.refund_min == 99


def test_detection_variables_are_nested_and_severities_keep_their_form() -> None:
    s = Settings.from_env(
        {
            "PW_DETECT_SUPPRESSION_MINUTES": "5",
            "PW_DETECT_MAX_PRICE_CHANGE_PCT": "12.5",
            "pw_detect_travel_max_kmh": "800",  # names are not case-sensitive
            "PW_DETECT_SEVERITIES": " ip_churn=critical , refund_burst=low,",
        }
    )
    d = s.detect
    assert (d.suppression_minutes, d.max_price_change_pct, d.travel_max_kmh) == (5, 12.5, 800.0)
    assert d.severities == {"ip_churn": "critical", "refund_burst": "low"}
    assert (
        d.severity("ip_churn", "medium") == "critical"
        and d.severity("bulk_edits", "medium") == "medium"
    )
    assert d.bulk_min_skus == DetectionConfig().bulk_min_skus  # the rest keep their defaults
    severities = next(v for v in variables() if v.env == "PW_DETECT_SEVERITIES")
    assert shown_value(s, severities) == "'ip_churn=critical,refund_burst=low'"


def test_detection_config_is_frozen_and_built_in_code_with_defaults() -> None:
    d = DetectionConfig(tax_grace_days=3)
    assert d.tax_grace_days == 3 and d.refund_min == 10
    with pytest.raises(ValueError):
        d.tax_grace_days = 4  # type: ignore[misc]
    with pytest.raises(ValueError):
        DetectionConfig(severities={"x": "urgent"})


def test_log_level_takes_any_case() -> None:
    assert Settings.from_env({"PW_LOG_LEVEL": "INFO"}).log_level == "info"
    assert Settings.from_env({"PW_LOG_LEVEL": " Warning "}).log_level == "warning"
    assert Settings.from_env({"PW_LOG_FORMAT": "JSON"}).log_format == "json"


@pytest.mark.parametrize(
    ("environ", "named", "says"),
    [
        ({"PW_DATA_DIR": ""}, "PW_DATA_DIR=''", "must name a folder"),
        ({"PW_DATA_DIR": "   "}, "PW_DATA_DIR='   '", "must name a folder"),
        ({"PW_TOPIC_PARTITIONS": "four"}, "PW_TOPIC_PARTITIONS='four'", "integer"),
        ({"PW_TOPIC_PARTITIONS": "0"}, "PW_TOPIC_PARTITIONS='0'", "greater than or equal to 1"),
        ({"PW_RETENTION_DAYS": "-1"}, "PW_RETENTION_DAYS='-1'", "greater than or equal to 1"),
        ({"PW_HTTP_RATE": "fast"}, "PW_HTTP_RATE='fast'", "number"),
        (
            {"PW_LOG_LEVEL": "verbose"},
            "PW_LOG_LEVEL='verbose'",
            "'debug', 'info', 'warning' or 'error'",
        ),
        ({"PW_LOG_FORMAT": "xml"}, "PW_LOG_FORMAT='xml'", "'console' or 'json'"),
        ({"PW_PROCESSING_GUARANTEE": "maybe"}, "PW_PROCESSING_GUARANTEE='maybe'", "exactly_once"),
        ({"PW_DIGEST_PERIOD": "week"}, "PW_DIGEST_PERIOD='week'", "'hour' or 'day'"),
        ({"PW_SSE_KEEPALIVE": "0"}, "PW_SSE_KEEPALIVE='0'", "greater than 0"),
        ({"PW_CLICKHOUSE_CLUSTER": "a;DROP"}, "PW_CLICKHOUSE_CLUSTER='a;DROP'", "identifier"),
        ({"PW_KAFKA_BROKER": "127.0.0.1:port"}, "PW_KAFKA_BROKER='127.0.0.1:port'", "host:port"),
        ({"PW_KAFKA_BROKER": "a:9092,"}, "PW_KAFKA_BROKER='a:9092,'", "host:port"),
        ({"PW_DETECT_BULK_MIN_SKUS": "lots"}, "PW_DETECT_BULK_MIN_SKUS='lots'", "integer"),
        (
            {"PW_DETECT_SEVERITIES": "ip_churn=urgent"},
            "PW_DETECT_SEVERITIES='ip_churn=urgent'",
            "one of info, low",
        ),
        ({"PW_DETECT_SEVERITIES": "=high"}, "PW_DETECT_SEVERITIES='=high'", "detector=one of"),
        ({"PW_DETECT_BULK_MIN_SKUZ": "3"}, "PW_DETECT_BULK_MIN_SKUZ", "not a detector setting"),
        ({"PW_DETECT": "{"}, "PW_DETECT", "error parsing"),
        (
            {"PW_ENV_FILE": "/nonexistent/pw.env"},
            "PW_ENV_FILE='/nonexistent/pw.env'",
            "no such file",
        ),
    ],
)
def test_a_bad_value_is_one_line_that_names_the_variable(
    environ: dict[str, str], named: str, says: str
) -> None:
    with pytest.raises(ValueError) as caught:
        Settings.from_env(environ)
    message = str(caught.value)
    assert message.startswith(named) and says in message, message
    assert "\n" not in message


def test_a_bad_value_in_the_file_names_the_file_and_several_are_reported_together(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / "pw.env"
    env_file.write_text("PW_WEB_PORT=http\n")
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"PW_ENV_FILE": str(env_file), "PW_TOPIC_PARTITIONS": "x"})
    message = str(caught.value)
    assert (
        f"PW_WEB_PORT='http' (file {env_file})" in message and "PW_TOPIC_PARTITIONS='x'" in message
    )
    assert "\n" not in message


def test_an_unknown_override_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="web_prot"):
        Settings.from_env({}, web_prot=1)


def _config(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PW_")}
    env.update(environ)
    return subprocess.run(
        [sys.executable, "-m", "partnerwatch", "config", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_prints_every_variable_its_value_and_origin_with_secrets_hidden(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / "pw.env"
    env_file.write_text("PW_MASK_KEY=mask-secret-in-file\nPW_HTTP_BURST=7\n")
    done = _config(
        {
            "PW_ENV_FILE": str(env_file),
            "PW_API_TOKEN": "token-secret-in-env",
            "PW_CLICKHOUSE_URL": "clickhouse://pw:url-secret@127.0.0.1:9000/audit",
            "PW_DETECT_REFUND_MIN": "4",
        }
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for secret in ("mask-secret-in-file", "token-secret-in-env", "url-secret"):
        assert secret not in out + done.stderr
    lines = dict(line.split(" = ", 1) for line in out.splitlines())
    assert lines["PW_API_TOKEN"] == "***  (environment)"
    assert lines["PW_MASK_KEY"] == f"***  (file {env_file})"
    assert (
        lines["PW_INGEST_HMAC_SECRET"] == "''  (default)"
    )  # an unset secret shows that it is unset
    assert lines["PW_CLICKHOUSE_URL"] == "'clickhouse://pw:***@127.0.0.1:9000/audit'  (environment)"
    assert lines["PW_HTTP_BURST"] == f"7  (file {env_file})"
    assert lines["PW_DETECT_REFUND_MIN"] == "4  (environment)"
    assert lines["PW_LOG_LEVEL"] == "'info'  (default)"
    assert lines["PW_ENV_FILE"] == f"{str(env_file)!r}  (environment)"
    assert set(lines) == {v.env for v in variables()} | {"PW_ENV_FILE"}

    detectors = _config({"PW_DETECT_REFUND_MIN": "4"}, "--detectors")
    assert detectors.returncode == 0, detectors.stderr
    names = [line.split(" = ")[0] for line in detectors.stdout.splitlines()]
    assert names == [v.env for v in variables() if v.env.startswith("PW_DETECT_")]
    assert "PW_DETECT_REFUND_MIN = 4  (environment)" in detectors.stdout


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PW_DATA_DIR": ""}, "PW_DATA_DIR=''"),
        ({"PW_DETECT_REFUND_MIN": "some"}, "PW_DETECT_REFUND_MIN='some'"),
    ],
)
def test_a_command_exits_2_with_one_line_naming_the_variable(
    environ: dict[str, str], named: str
) -> None:
    done = _config(environ)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(
        f"configuration error: {named}"
    ), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_repr_and_str_show_no_secret() -> None:
    s = Settings.from_env(
        {"PW_DIGEST_HMAC_KEY": "digest-secret", "PW_INGEST_HMAC_SECRET": "hmac-secret"}
    )
    for text in (repr(s), str(s), str(s.redacted())):
        assert "digest-secret" not in text and "hmac-secret" not in text
    assert s.digest_hmac_key == "digest-secret"


def test_topic_and_group_names_come_from_settings_only() -> None:
    s = Settings.from_env({"PW_TOPIC_PREFIX": "t1.", "PW_APP_ID": "app1"})
    assert s.pipeline_topics == [
        "t1.actions",
        "t1.ledger",
        "t1.alerts",
        "t1.deadletter",
        "t1.http-signatures",
        "t1.alerts.status",
        "t1.provider-state",
    ]
    assert s.parked_topic == "t1.alerts.parked"
    assert (s.provider_group, s.provider_transactional_id) == (
        "app1-provider",
        "app1-provider-stage",
    )
    assert (s.worker_group, s.warehouse_group, s.alert_feed_group, s.alert_redeliver_group) == (
        "app1",
        "app1-warehouse",
        "app1-alert-feed",
        "app1-alert-redeliver",
    )
    # nowhere else is a name built from the prefix or the application id
    built_elsewhere = []
    for package in ("pipeline", "detectors", "sources", "sinks", "streams", "partnerwatch"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            # config.py declares the fields, settings_derived.py builds every name from them
            if path in (
                REPO_ROOT / "pipeline" / "config.py",
                REPO_ROOT / "pipeline" / "settings_derived.py",
            ):
                continue
            text = path.read_text()
            if "topic_prefix" in text or "app_id}" in text or "app_id +" in text:
                built_elsewhere.append(str(path.relative_to(REPO_ROOT)))
    assert not built_elsewhere
