"""Secrets stay out of what is printed and logged: Settings repr, `config`, ClickHouse errors."""

from __future__ import annotations

from pipeline.config import Settings, redact_url
from sinks.clickhouse import ServerWarehouse


def test_settings_repr_and_redacted_hide_secrets() -> None:
    s = Settings.from_env(
        {
            "PW_API_TOKEN": "tok-secret-1",
            "PW_INGEST_HMAC_SECRET": "hmac-secret-2",
            "PW_MASK_KEY": "mask-secret-3",
            "PW_CLICKHOUSE_URL": "clickhouse://pw:db-secret-4@127.0.0.1:9000/audit",
        }
    )
    for text in (repr(s), str(s), str(s.redacted())):
        for secret in ("tok-secret-1", "hmac-secret-2", "mask-secret-3", "db-secret-4"):
            assert secret not in text
    assert s.redacted()["clickhouse_url"] == "clickhouse://pw:***@127.0.0.1:9000/audit"
    assert s.api_token == "tok-secret-1"  # the value itself is intact


def test_redact_url() -> None:
    assert redact_url("clickhouse://u:p@h:9000/db") == "clickhouse://u:***@h:9000/db"
    assert (
        redact_url("error talking to clickhouses://a:b%40c@host/db now")
        == "error talking to clickhouses://a:***@host/db now"
    )
    assert redact_url("clickhouse://u@h/db") == "clickhouse://u@h/db"


def test_clickhouse_errors_are_scrubbed() -> None:
    wh = ServerWarehouse("clickhouse://pw:s3cr%21t@127.0.0.1:1/audit?connect_timeout=1", retries=0)
    assert wh._scrub("auth failed for pw:s3cr!t at clickhouse://pw:s3cr%21t@127.0.0.1:1") == (
        "auth failed for pw:*** at clickhouse://pw:***@127.0.0.1:1"
    )
