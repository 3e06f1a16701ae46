"""No secret in the worker's log, no raw bank number past ingest, no SQL beyond one read-only statement.

A worker runs at debug level with a bearer token, an HMAC secret and a masking key set, is sent
failing and succeeding requests (the wrong token contains the right one), events carrying IBANs
and e-mail addresses, and unsafe SQL; then its log, the ledger topic, the alerts and the warehouse
are searched for the secrets and the raw values. A second worker points at a ClickHouse server
URL with a password (a closed port): its log shows the failure, not the password.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from partnerwatch.local_worker import Namespace, Worker, free_port, wait_for
from pipeline.simulation.traffic import generate
from tests.integration.settle import read_to_end, wait_settled
from tests.integration.test_http_ingest import SECRET, TOKEN, post, signed

pytestmark = pytest.mark.integration

MASK_KEY = "mask-key-" + "5" * 24
IBAN = "DE44500105175407324931"
EMAIL = "victim.person@example.org"
DB_PASSWORD = "Ch-Pa55word-" + "3" * 12


def sql_status(ns: Namespace, query: str, token: str | None) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{ns.port}/v1/sql",
        data=orjson.dumps({"query": query}),
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_no_secret_in_logs_no_raw_bank_data_downstream(kafka_broker: str, tmp_path: Path) -> None:
    ns = Namespace(
        tmp_path,
        extra_env={
            "PW_API_TOKEN": TOKEN,
            "PW_INGEST_HMAC_SECRET": SECRET,
            "PW_MASK_KEY": MASK_KEY,
            "PW_LOG_LEVEL": "debug",
        },
    )
    worker = Worker(ns).start()
    try:
        base = [e for e, _ in generate(200, seed=8)]
        change = {
            **base[0],
            "event_id": "bank-1",
            "action": "funds.bank_account_change",
            "marketplace": "DE",
            "changes": [{"field": "bank_account", "old": IBAN, "new": "GB33BUKB20201555555555"}],
        }
        contact = {
            **base[1],
            "event_id": "contact-1",
            "action": "account.contact_change",
            "changes": [{"field": "email", "old": EMAIL, "new": "x@y.example"}],
        }
        body = orjson.dumps([*base, change, contact])
        # refused: each writes nothing, and none may echo the secret into the log
        assert post(ns, body, token=TOKEN + "x")[0] == 401
        assert post(ns, body, token=None, headers={"Authorization": f"Basic {TOKEN}"})[0] == 401
        assert post(ns, body, headers=signed(body, secret=SECRET + "x"), token=None)[0] == 401
        assert sql_status(ns, "SELECT 1", TOKEN + "x") == 401
        # accepted: signed and bearer
        assert post(ns, body, headers=signed(body), token=None)[0] == 200
        # unsafe SQL refused; the table is still there
        assert sql_status(ns, "SELECT 1; DROP TABLE audit.events", TOKEN) == 400
        assert sql_status(ns, "SELECT * FROM file('/etc/hostname', 'LineAsString')", TOKEN) == 400
        wait_for(
            lambda: ns.scalar("SELECT count() FROM audit.events") >= 202, 120, "202 stored events"
        )
        wait_settled(ns)
        assert ns.scalar("SELECT count() FROM audit.events") == 202

        stored = ns.sql(
            "SELECT changes, resource_id, payload FROM audit.events WHERE event_id IN ('bank-1', 'contact-1')"
        )
        assert len(stored) == 2
        masked = orjson.loads(next(r[0] for r in stored if "bank_account" in r[0]))[0]["old"]
        assert masked == {
            "sha256": hmac.new(MASK_KEY.encode(), IBAN.encode(), hashlib.sha256).hexdigest(),
            "last4": IBAN[-4:],
        }
        everything_downstream = (
            b"".join(
                r.value
                for t in (ns.settings.ledger_topic, ns.settings.alerts_topic)
                for r in read_to_end(ns, t)
            )
            + orjson.dumps(ns.sql("SELECT * FROM audit.events"))
            + orjson.dumps(ns.sql("SELECT * FROM audit.alerts"))
        )
        for raw in (IBAN, IBAN[4:], "20201555555555", EMAIL):
            assert raw.encode() not in everything_downstream, raw
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert "http.auth_refused" in log  # the refusals were logged (streams/web/guard.py)...
    for secret in (TOKEN, SECRET, MASK_KEY, IBAN, EMAIL):
        assert secret not in log, f"{secret[:6]}... in the worker log"  # ...without the secrets


def test_clickhouse_password_not_in_logs(kafka_broker: str, tmp_path: Path) -> None:
    url = f"clickhouse://pw:{DB_PASSWORD}@127.0.0.1:{free_port()}/audit?connect_timeout=1"
    ns = Namespace(tmp_path, extra_env={"PW_CLICKHOUSE_URL": url, "PW_LOG_LEVEL": "debug"})
    worker = Worker(ns)
    try:
        with contextlib.suppress(AssertionError):  # no warehouse: the worker may stop, or wait
            worker.start(timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "unreachable" not in worker.log_path.read_text(
            errors="replace"
        ):
            time.sleep(1)
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert "unreachable" in log, log[-2000:]  # the failure is reported...
    assert DB_PASSWORD not in log  # ...without the password
