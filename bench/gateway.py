"""What the SP-API gateway costs: the latency it adds to a call (p50, p99) and calls/s per core.

Three processes on this machine, all on 127.0.0.1 and over TLS (a throwaway certificate
authority made for the run, tests/gateway/pki.py):
- the upstream: the tests' sandbox SP-API (tests/gateway/sandbox.py, answering from the
  project's fixtures in Amazon's sandbox form), in a process of its own;
- the gateway: `python -m partnerwatch gateway run` in observe mode, its events produced to a
  Kafka namespace of its own on the local broker (each call answers only once the broker has
  acknowledged its event, as in production);
- the client (this process): plain aiohttp with the SP-API shapes (the LWA token form,
  `x-amz-access-token`, Listings API paths and bodies), alternating `getListingsItem` (a read,
  recorded as `data.read`) and `patchListingsItem` (a price change).

Latency: `--calls` sequential calls, one at a time, alternating direct to the upstream and
through the gateway (so load from other processes falls on both alike); the added latency is
the gateway's quantile minus the direct one. Throughput: `--concurrency` clients through the
gateway for `--seconds`; calls/s per core is calls divided by the gateway process's CPU seconds
(user + system, /proc) over that window. Every call must answer 200, and the gateway's events
on the namespace's actions topic are counted (one per call, one per token exchange). Nothing is
asserted (shared machines are noisy); the load average at the start is in the results.

Figures go to bench/results/<date>-gateway.json and .md (`--results` for another folder).

    python -m bench.gateway [--calls 1000] [--seconds 8] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.gateway_report import markdown, write
from bench.gateway_upstream import Upstream, serve_upstream
from bench.procstats import cpu_seconds, rss_mib
from partnerwatch.local_worker import Namespace, free_port
from pipeline.config import REPO_ROOT, checkout
from tests.gateway.harness import ACCOUNT, DE, SELLER, SELLER_ID, GatewayProcess, gateway_env
from tests.gateway.pki import make_pki

RESULTS = REPO_ROOT / "bench" / "results"
PROVIDER, PRINCIPAL = "bench-agency", "bench-bot"
LISTINGS = f"/listings/2021-08-01/items/{SELLER_ID}"
USER_AGENT = "pw-bench/1.0 (Language=Python; aiohttp)"


# -- the client: SP-API shapes over aiohttp -----------------------------------------------------


def price_patch(price: float) -> dict[str, Any]:
    offer = {
        "marketplace_id": DE,
        "currency": "EUR",
        "audience": "ALL",
        "our_price": [{"schedule": [{"value_with_tax": price}]}],
    }
    return {
        "productType": "PRODUCT",
        "patches": [{"op": "replace", "path": "/attributes/purchasable_offer", "value": [offer]}],
    }


async def lwa_token(
    session: aiohttp.ClientSession, base: str, client_id: str, secret: str, refresh: str
) -> str:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh,
        "client_id": client_id,
        "client_secret": secret,
    }
    async with session.post(f"{base}/auth/o2/token", data=form) as response:
        body = await response.json(content_type=None)
        if response.status != 200:
            raise SystemExit(f"token exchange at {base} failed: {response.status} {body}")
        return str(body["access_token"])


async def call(session: aiohttp.ClientSession, base: str, token: str, i: int) -> tuple[str, float]:
    """One SP-API call (even i: getListingsItem, odd: patchListingsItem); (operation, seconds)."""
    sku = f"MUG-{i % 40}"
    headers = {
        "x-amz-access-token": token,
        "x-amz-date": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "user-agent": USER_AGENT,
        "content-type": "application/json",
    }
    if i % 2 == 0:
        operation, method, params, body = (
            "getListingsItem",
            "GET",
            {"marketplaceIds": DE, "includedData": "summaries,attributes"},
            None,
        )
    else:
        operation, method, params = "patchListingsItem", "PATCH", {"marketplaceIds": DE}
        body = orjson.dumps(price_patch(10 + (i % 17)))
    started = time.perf_counter()
    async with session.request(
        method, f"{base}{LISTINGS}/{sku}", params=params, data=body, headers=headers
    ) as response:
        await response.read()
        if response.status != 200:
            raise SystemExit(
                f"{operation} via {base} answered {response.status}: {(await response.text())[:500]}"
            )
    return operation, time.perf_counter() - started


def quantiles(seconds: list[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean in milliseconds."""
    ms = sorted(s * 1000 for s in seconds)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "n": len(ms),
        "p50": round(q[49], 2),
        "p90": round(q[89], 2),
        "p99": round(q[98], 2),
        "max": round(ms[-1], 2),
        "mean": round(statistics.fmean(ms), 2),
    }


async def latency(
    ca: ssl.SSLContext, direct: tuple[str, str], gateway: tuple[str, str], calls: int, warmup: int
) -> dict[str, Any]:
    """Sequential calls, alternating direct and through the gateway; both keep their connection."""
    times: dict[str, dict[str, list[float]]] = {"direct": {}, "gateway": {}}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ca, limit=1)) as a,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ca, limit=1)) as b,
    ):
        for i in range(warmup + calls):
            for path, session, (base, token) in (("direct", a, direct), ("gateway", b, gateway)):
                operation, took = await call(session, base, token, i)
                if i >= warmup:
                    times[path].setdefault(operation, []).append(took)
    out: dict[str, Any] = {"calls_each_path": calls, "warmup_calls": warmup}
    for path, by_op in times.items():
        out[path] = {"all": quantiles([t for ts in by_op.values() for t in ts])} | {
            op: quantiles(ts) for op, ts in by_op.items()
        }
    out["added_ms"] = {
        key: {
            q: round(out["gateway"][key][q] - out["direct"][key][q], 2)
            for q in ("p50", "p90", "p99", "mean")
        }
        for key in out["direct"]
    }
    return out


async def throughput(
    ca: ssl.SSLContext, gateway: tuple[str, str], pid: int, seconds: float, concurrency: int
) -> dict[str, Any]:
    """`concurrency` clients through the gateway for `seconds`; the gateway process's CPU over it."""
    took: list[float] = []
    base, token = gateway
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ca, limit=concurrency)
    ) as session:
        await asyncio.gather(
            *(call(session, base, token, i) for i in range(concurrency))
        )  # connections open
        deadline = time.monotonic() + seconds

        async def client(n: int) -> None:
            i = n
            while time.monotonic() < deadline:
                took.append((await call(session, base, token, i))[1])
                i += concurrency

        cpu0, started = cpu_seconds(pid), time.monotonic()
        await asyncio.gather(*(client(n) for n in range(concurrency)))
        wall, cpu = time.monotonic() - started, cpu_seconds(pid) - cpu0
    return {
        "concurrency": concurrency,
        "seconds": round(wall, 2),
        "calls": len(took),
        "calls_per_second": round(len(took) / wall, 1),
        "gateway_cpu_seconds": round(cpu, 2),
        "gateway_cores_busy": round(cpu / wall, 2),
        "calls_per_second_per_core": round(len(took) / cpu, 1) if cpu else None,
        "latency_ms_under_load": quantiles(took),
        "warmup_calls": concurrency,
    }


# -- the run ---------------------------------------------------------------------------------------


def issue(env: dict[str, str]) -> dict[str, str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "partnerwatch",
            "gateway",
            "credentials",
            "issue",
            "--provider",
            PROVIDER,
            "--principal",
            PRINCIPAL,
            "--json",
        ],
        env=env,
        cwd=checkout(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise SystemExit(f"credentials issue failed: {done.stderr}{done.stdout}")
    return dict(orjson.loads(done.stdout))


def run(
    calls: int = 1000, seconds: float = 8.0, concurrency: int = 16, warmup: int = 20
) -> dict[str, Any]:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pw-bench-gateway-") as tmp:
        root = Path(tmp)
        pki = make_pki(root / "tls")
        ca = pki.client_context()
        secret = root / "seller-app.json"
        secret.write_bytes(orjson.dumps(SELLER))
        secret.chmod(0o600)
        ns = Namespace(root)
        upstream = Upstream(root / "tls", root / "upstream.log").start(ca)
        env = {
            **ns.env,
            **gateway_env(
                pki,
                upstream.url,
                secret,
                root / "gateway.sqlite",
                free_port(),
                PW_GATEWAY_MODE="observe",
            ),
        }
        gateway = GatewayProcess(env, root / "gateway.log")
        try:
            gateway.start(pki.ca_file)
            assert gateway.proc is not None
            pid = gateway.proc.pid
            creds = issue(env)
            url = f"https://127.0.0.1:{env['PW_GATEWAY_PORT']}"

            async def measure() -> tuple[dict[str, Any], dict[str, Any], int]:
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ca)) as session:
                    seller = await lwa_token(
                        session,
                        upstream.url,
                        SELLER["client_id"],
                        SELLER["client_secret"],
                        SELLER["refresh_token"],
                    )
                    mine = await lwa_token(
                        session,
                        url,
                        creds["client_id"],
                        creds["client_secret"],
                        creds["refresh_token"],
                    )
                lat = await latency(ca, (upstream.url, seller), (url, mine), calls, warmup)
                thr = await throughput(ca, (url, mine), pid, seconds, concurrency)
                return lat, thr, 1

            lat, thr, logins = asyncio.run(measure())
            rss = rss_mib(pid, "VmHWM")
            expected = warmup + calls + thr["calls"] + thr["warmup_calls"] + logins
            topic = ns.settings.actions_topic
            events = sum(
                1
                for r in ns.read_topic(topic, expected, timeout=60)
                if orjson.loads(r.value).get("account_id") == ACCOUNT
            )
        finally:
            gateway.stop()
            upstream.stop()
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python -m bench.gateway --calls {calls} --seconds {seconds:g} --concurrency {concurrency}",
        "setup": "client (aiohttp), gateway (`partnerwatch gateway run`, observe, events acknowledged by the local Kafka broker)"
        " and sandbox upstream: three processes on 127.0.0.1, TLS everywhere, keep-alive connections",
        "calls": "alternating getListingsItem (recorded as data.read) and patchListingsItem (listing.price_change)",
        "latency": lat,
        "throughput": thr,
        "gateway_peak_rss_mib": round(rss, 1),
        "events_expected": expected,
        "events_on_topic": events,
        "load_average_at_start": [round(x, 2) for x in load],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--calls", type=int, default=1000, help="sequential calls on each path (latency)"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the throughput run")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="concurrent clients in the throughput run"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tls", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.tls)
        return None
    figures = run(args.calls, args.seconds, args.concurrency)
    text = markdown(figures)
    write(figures, args.results, "gateway", text)
    print(text)
    return figures


if __name__ == "__main__":
    main()
