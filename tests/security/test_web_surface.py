"""Issue 15, findings 6-10: the worker's HTTP surface against a client that holds no token, a wrong
one, a malformed one or a stolen one, on a real worker and broker.

- 6: Faust's built-in pages (/router, /table/<name>/<key>, ...) are not served, token or not;
  every route but /v1/health, /metrics and the static /alerts page needs the token.
- 7: listening beyond loopback without PW_API_TOKEN exits 2 naming the setting; the Dockerfile and
  compose never do it.
- 8: a non-ASCII Authorization header is 401 (not 500) and counted as a failed authentication.
- 9: on loopback, a Host that is not a loopback name or a configured one is refused (421), with
  the right token too (a page on evil.example re-pointed to 127.0.0.1: DNS rebinding).
- 10: an HMAC-signed request is accepted once by any worker sharing the broker, across restarts;
  failed authentication is throttled per client address (429 with Retry-After).

Clients come from different loopback addresses (127.0.0.x) so that each test's failures fill a
bucket of its own, and to show that the throttle is per address and not global.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from standardwebhooks import Webhook

from partnerwatch.local_worker import Namespace, Worker, wait_for
from pipeline.config import REPO_ROOT, Settings
from pipeline.simulation.traffic import generate

pytestmark = pytest.mark.integration

TOKEN = "sec-" + "5" * 28
SECRET = "sec-hmac-" + "3" * 24
ALLOWED = "pw.internal.example"
BURST = 12  # PW_WEB_AUTH_FAILURE_BURST of these workers

#: every route that needs a credential: (route pattern, method, path, body) with a path that exists
PROTECTED = [
    ("/v1/sql", "POST", "/v1/sql", b'{"query": "SELECT count() FROM audit.events"}'),
    ("/v1/alerts/stream", "GET", "/v1/alerts/stream", None),
    ("/v1/alerts/recent", "GET", "/v1/alerts/recent", None),
    (
        "/v1/alerts/{alert_id}/{action}",
        "POST",
        "/v1/alerts/no-such-alert/ack",
        b'{"by": "mallory"}',
    ),
    ("/v1/events", "POST", "/v1/events", b"[]"),
]


def test_the_protected_list_is_every_route_that_is_not_open() -> None:
    """PROTECTED above covers the guard's whole route table (a new route must be added to both)."""
    from streams.web.guard import OPEN, ROUTES

    assert {route for route, *_ in PROTECTED} == {
        route for route, access in ROUTES.items() if access != OPEN
    }
    assert {route for route, access in ROUTES.items() if access == OPEN} == {
        "/v1/health",
        "/metrics",
        "/alerts",
    }


def request(
    ns: Namespace,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, Any] | None = None,
    source: str = "127.0.0.1",
    token: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection from `source`; a streaming answer is cut after its status."""
    hdrs: dict[str, Any] = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", ns.port, timeout=60, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=hdrs)
        response = conn.getresponse()
        if response.getheader("Content-Type", "").startswith("text/event-stream"):
            data = b""
        else:
            data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def signed(
    body: bytes, ts: int | None = None, secret: str = SECRET, msg_id: str | None = None
) -> dict[str, str]:
    """Standard Webhooks headers, made by the standard's own library (the `standardwebhooks` package)."""
    when = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    signature = Webhook(secret.encode()).sign(msg_id, when, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }


def auth_failures(ns: Namespace, reason: str | None = None, route: str | None = None) -> float:
    """The sum of pw_http_auth_failures_total over the labels that match."""
    _, _, data = request(ns, "GET", "/metrics")
    total = 0.0
    for line in data.decode().splitlines():
        found = re.fullmatch(r"pw_http_auth_failures_total\{(.*)\} (\S+)", line)
        if not found:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found[1]))
        if (reason is None or labels.get("reason") == reason) and (
            route is None or labels.get("route") == route
        ):
            total += float(found[2])
    return total


def env(**extra: str) -> dict[str, str]:
    return {
        "PW_API_TOKEN": TOKEN,
        "PW_INGEST_HMAC_SECRET": SECRET,
        "PW_WEB_ALLOWED_HOSTS": ALLOWED,
        "PW_WEB_AUTH_FAILURE_BURST": str(BURST),
        **extra,
    }


@pytest.fixture(scope="module")
def worker(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    ns = Namespace(tmp_path_factory.mktemp("websurface"), extra_env=env())
    process = Worker(ns).start()
    try:
        yield ns
    finally:
        process.stop()


# -- 6: only PartnerWatch's routes ------------------------------------------------------------------


def test_faust_builtin_pages_are_not_served(worker: Namespace) -> None:
    events = [e for e, _ in generate(200, seed=15)]
    grant = next(e for e in events if e["action"] == "permission.grant")
    worker.send(events)
    wait_for(lambda: worker.scalar("SELECT count() FROM audit.events") >= 150, 120, "events stored")
    account = grant["account_id"]
    principal = grant["grant"]["principals"][0]
    paths = [
        "/",
        "/router/",
        f"/router/account_state/get/?q={account}",
        "/table/",
        "/table/account_state/",
        f"/table/account_state/{account}/",
        "/table/open_alerts/",
        "/graph/",
        "/stats/",
        "/assignments/",
        "/performance/",
        "/signal/",
    ]
    for path in paths:
        for token in (None, TOKEN):
            status, _, body = request(worker, "GET", path, token=token, source="127.0.0.2")
            assert status == 404, (path, token is not None, status, body[:200])
            assert account.encode() not in body and principal.encode() not in body, path
    # the open routes stay open, and carry no account data
    for path in ("/v1/health", "/metrics", "/alerts"):
        status, _, body = request(worker, "GET", path, source="127.0.0.2")
        assert status == 200, path
        assert account.encode() not in body and principal.encode() not in body, path


# -- 6, 8, 9: every protected route refuses a missing, wrong, malformed and stolen token --------------


@pytest.mark.parametrize(
    ("route", "method", "path", "body"), PROTECTED, ids=[p for _, _, p, _ in PROTECTED]
)
def test_every_route_refuses_missing_wrong_malformed_and_stolen_tokens(
    worker: Namespace, route: str, method: str, path: str, body: bytes | None
) -> None:
    source = f"127.0.0.{10 + [p for _, _, p, _ in PROTECTED].index(path)}"
    malformed_before = auth_failures(worker, "malformed", route)
    refused = {
        "missing": request(worker, method, path, body, source=source),
        "wrong": request(worker, method, path, body, token=TOKEN[:-1] + "6", source=source),
        "prefix of the right one": request(
            worker, method, path, body, token=TOKEN[:-4], source=source
        ),
        "no scheme": request(
            worker, method, path, body, headers={"Authorization": TOKEN}, source=source
        ),
        "utf-8": request(
            worker,
            method,
            path,
            body,
            headers={"Authorization": "Bearer été".encode()},
            source=source,
        ),
        "latin-1 byte": request(
            worker,
            method,
            path,
            body,
            headers={"Authorization": b"Bearer \xff" + TOKEN.encode()},
            source=source,
        ),
        "snowman": request(
            worker,
            method,
            path,
            body,
            headers={"Authorization": "Bearer ☃".encode()},
            source=source,
        ),
    }
    assert {name: r[0] for name, r in refused.items()} == dict.fromkeys(refused, 401), {
        name: (r[0], r[2][:120]) for name, r in refused.items()
    }
    for _, _, data in refused.values():
        assert TOKEN.encode() not in data
    # the three non-ASCII headers (and the one without a scheme) are counted as failed
    # authentications (issue 15, finding 8)
    assert auth_failures(worker, "malformed", route) == malformed_before + 4
    # a stolen token, used by a page whose name was re-pointed to 127.0.0.1 (DNS rebinding)
    for host in (
        "evil.example",
        f"evil.example:{worker.port}",
        "127.0.0.1.nip.io",
        f"localhost@evil.example:{worker.port}",
    ):
        status, _, _ = request(
            worker, method, path, body, headers={"Host": host}, token=TOKEN, source=source
        )
        assert status == 421, (host, status)
    # and the right token, from a name this worker answers for, gets through the guard
    status, _, data = request(worker, method, path, body, token=TOKEN, source=source)
    assert status not in (401, 421, 429), (status, data[:200])
    assert status == (404 if path.endswith("/ack") else 200), data[:200]


# -- 9: Host ------------------------------------------------------------------------------------------


def test_host_must_be_a_loopback_name_or_a_configured_one(worker: Namespace) -> None:
    port = worker.port
    accepted = [
        "localhost",
        f"localhost:{port}",
        "LOCALHOST.",
        f"127.0.0.1:{port}",
        "127.0.0.1",
        "127.1.2.3",
        f"[::1]:{port}",
        "[::1]",
        ALLOWED,
        f"{ALLOWED}:{port}",
        ALLOWED.upper(),
    ]
    refused = [
        "evil.example",
        f"evil.example:{port}",
        f"{ALLOWED}.evil.example",
        f"evil.{ALLOWED}",
        "10.0.0.5",
        "0.0.0.0",
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        f"localhost:{port}@evil.example",
        "::1",
        "[::1",
        "localhost:x",
        "",
    ]
    for host in accepted:
        status, _, _ = request(
            worker, "GET", "/v1/health", headers={"Host": host}, source="127.0.0.3"
        )
        assert status == 200, host
        status, _, _ = request(
            worker, "POST", "/v1/sql", b'{"query": "SELECT 1"}', headers={"Host": host}, token=TOKEN
        )
        assert status == 200, host
    before = auth_failures(worker, "bad_host")
    for host in refused:
        for path in ("/v1/health", "/metrics", "/alerts"):
            status, _, _ = request(worker, "GET", path, headers={"Host": host}, source="127.0.0.3")
            assert status == 421, (host, path, status)
    assert auth_failures(worker, "bad_host") == before + 3 * len(refused)


def test_host_names_parse() -> None:
    from streams.web.guard import client_key, host_name, is_loopback

    assert host_name("[::1]:6066") == "::1" and host_name("LocalHost.:80") == "localhost"
    assert host_name("a b") is None and host_name("x@y") is None and host_name("::1") is None
    assert host_name("h:") == "h" and host_name("h:8x") is None and host_name("[::1]x") is None
    assert [
        is_loopback(h)
        for h in ("127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost", "::ffff:127.0.0.1")
    ] == [True] * 6
    assert [
        is_loopback(h) for h in ("0.0.0.0", "::", "192.0.2.1", "10.0.0.1", "example.com", "")
    ] == [False] * 6
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7" and client_key("192.0.2.7") == "192.0.2.7"


# -- 10: failed authentication is throttled per client address ----------------------------------------


def test_wrong_token_guesses_are_throttled_per_client_address(worker: Namespace) -> None:
    burst = BURST
    throttled_before = auth_failures(worker, "throttled")
    conn = http.client.HTTPConnection(
        "127.0.0.1", worker.port, timeout=60, source_address=("127.0.0.20", 0)
    )
    statuses: list[int] = []
    retry_after: list[int] = []
    try:
        for guess in range(500):  # one keep-alive connection, as fast as the worker answers
            conn.request(
                "POST",
                "/v1/sql",
                body=b'{"query": "SELECT 1"}',
                headers={
                    "Authorization": f"Bearer guess-{guess:04d}",
                    "Content-Type": "application/json",
                },
            )
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
            if response.status == 429:
                retry_after.append(int(response.getheader("Retry-After", "0")))
    finally:
        conn.close()
    assert set(statuses) == {401, 429}
    assert statuses[:burst] == [401] * burst  # the burst is answered...
    assert (
        statuses.count(401) <= burst + 3
    )  # ...then only the refill (a few in the time 500 requests take)
    assert min(retry_after) >= 1
    assert auth_failures(worker, "throttled") == throttled_before + statuses.count(429)
    # while throttled, the right token is refused too: a right guess cannot be told from a wrong one
    status, headers, _ = request(
        worker, "POST", "/v1/sql", b'{"query": "SELECT 1"}', token=TOKEN, source="127.0.0.20"
    )
    assert status == 429 and int(headers["retry-after"]) >= 1
    # signed ingest from the throttled address: refused before the signature is even checked
    body = b"[]"
    assert (
        request(worker, "POST", "/v1/events", body, headers=signed(body), source="127.0.0.20")[0]
        == 429
    )
    # another address is not affected: per client, not global (the old bucket was per auth kind)
    assert (
        request(
            worker, "POST", "/v1/sql", b'{"query": "SELECT 1"}', token=TOKEN, source="127.0.0.21"
        )[0]
        == 200
    )
    assert (
        request(
            worker, "POST", "/v1/sql", b'{"query": "SELECT 1"}', token="wrong", source="127.0.0.21"
        )[0]
        == 401
    )
    # the open routes are never throttled
    assert request(worker, "GET", "/v1/health", source="127.0.0.20")[0] == 200
    # once the bucket refills, the right token works again from the throttled address
    wait_for(
        lambda: (
            request(
                worker,
                "POST",
                "/v1/sql",
                b'{"query": "SELECT 1"}',
                token=TOKEN,
                source="127.0.0.20",
            )[0]
            == 200
        ),
        30,
        "the throttled address to be let through again",
        interval=1.0,
    )


def test_bad_signatures_are_throttled_too(worker: Namespace) -> None:
    body = b"[]"
    statuses = [
        request(
            worker,
            "POST",
            "/v1/events",
            body,
            headers=signed(body, secret=f"guess-{i}"),
            source="127.0.0.22",
        )[0]
        for i in range(60)
    ]
    burst = BURST
    assert (
        statuses[:burst] == [401] * burst
        and statuses[-1] == 429
        and statuses.count(401) <= burst + 3
    )


# -- 10: a signed request is accepted once: across restarts, and by any worker on the broker -------------


def test_hmac_replay_is_refused_by_another_worker_and_after_a_restart(
    kafka_broker: str, tmp_path: Path
) -> None:
    first = Namespace(tmp_path, extra_env=env())
    # a second worker of the same deployment: same topics and app id, its own data folder and port
    second = Namespace(
        tmp_path,
        extra_env=env(
            PW_TOPIC_PREFIX=first.env["PW_TOPIC_PREFIX"], PW_APP_ID=first.env["PW_APP_ID"]
        ),
    )
    body = b"[]"  # no events: only the signature matters here
    one, two = Worker(first).start(), Worker(second).start()
    try:
        headers = signed(body)
        assert request(first, "POST", "/v1/events", body, headers=headers)[0] == 200
        # the exact request again, to the other worker
        status, _, answer = request(
            second, "POST", "/v1/events", body, headers=headers, source="127.0.0.30"
        )
        assert status == 401 and b"replay" in answer, answer
        # two copies of a new request, sent to both workers at once: exactly one is accepted
        race = signed(b"[ ]")
        results: list[int] = []
        threads = [
            threading.Thread(
                target=lambda ns=ns: results.append(
                    request(ns, "POST", "/v1/events", b"[ ]", headers=race, source="127.0.0.31")[0]
                )
            )
            for ns in (first, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(results) == [200, 401], results
        two.stop()
        # the first worker restarts: it still refuses both
        one.stop()
        one = Worker(first).start()
        for replay, data in ((headers, body), (race, b"[ ]")):
            status, _, answer = request(
                first, "POST", "/v1/events", data, headers=replay, source="127.0.0.32"
            )
            assert status == 401 and b"replay" in answer, answer
        # a fresh signature is still accepted (the refusals above are about replay, not the secret)
        assert request(first, "POST", "/v1/events", b"[  ]", headers=signed(b"[  ]"))[0] == 200
    finally:
        one.stop()
        two.stop()


# -- 7: never beyond loopback without a token ------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
@pytest.mark.parametrize(
    "entry",
    [["-m", "partnerwatch", "worker"], ["-m", "streams.worker", "worker"]],
    ids=["cli", "module"],
)
def test_listening_beyond_loopback_without_a_token_refuses_to_start(
    kafka_broker: str, tmp_path: Path, host: str, entry: list[str]
) -> None:
    ns = Namespace(tmp_path, extra_env={"PW_WEB_HOST": host})
    proc = subprocess.Popen(
        [sys.executable, *entry],
        env=ns.env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        output, _ = proc.communicate()
        pytest.fail(
            f"the worker started on {host} without a token: {output.decode(errors='replace')[-2000:]}"
        )
    text = output.decode(errors="replace")
    assert proc.returncode == 2, text[-2000:]
    assert "PW_WEB_HOST" in text and "PW_API_TOKEN" in text, text[-2000:]


def test_exposure_rule() -> None:
    from streams.web.guard import exposure_error

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.53"):
        assert exposure_error(Settings(web_host=host)) is None
    for host in ("0.0.0.0", "::", "192.0.2.1", "worker.internal", ""):
        problem = exposure_error(Settings(web_host=host))
        assert problem and "PW_WEB_HOST" in problem and "PW_API_TOKEN" in problem, host
        assert exposure_error(Settings(web_host=host, api_token=TOKEN)) is None
    with pytest.raises(ValueError, match="PW_API_TOKEN"):
        Settings.from_env({"PW_API_TOKEN": "été-token"})
    with pytest.raises(ValueError, match="PW_API_TOKEN"):
        Settings.from_env({"PW_API_TOKEN": "two words"})


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in (REPO_ROOT / "Dockerfile").read_text().splitlines():
        if line.strip().startswith("ENV "):
            for pair in line.strip()[4:].split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "[::1]")


def test_dockerfile_and_compose_never_listen_beyond_loopback_without_a_token() -> None:
    image = _dockerfile_env()
    assert _loopback(image.get("PW_WEB_HOST", "127.0.0.1")) or image.get("PW_API_TOKEN"), (
        "the image listens beyond loopback by default, and has no token"
    )
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    workers = 0
    for name, service in services.items():
        environment = {**image, **(service.get("environment") or {})}
        if service.get("command", ["worker"]) != ["worker"]:
            continue
        workers += 1
        if not _loopback(str(environment.get("PW_WEB_HOST", "127.0.0.1"))):
            assert re.fullmatch(
                r"\$\{PW_API_TOKEN:\?[^}]+\}", str(environment.get("PW_API_TOKEN", ""))
            ), (
                f"{name} listens beyond loopback: compose must require PW_API_TOKEN (${{PW_API_TOKEN:?...}})"
            )
    assert workers >= 1
