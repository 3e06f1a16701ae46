"""Running the gateway for tests: in a thread (events into a list) or as `partnerwatch gateway run`.

And the providers' real clients pointed at it: python-amazon-sp-api (saleweaver) and Amazon's
official SDK (amzn-sp-api), each with its LWA endpoint and SP-API endpoint overridden.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from partnerwatch.gateway import ledger_kafka
from partnerwatch.local_worker import free_port
from pipeline.config import Settings, checkout
from pipeline.event import Rejected, normalize
from sources.gateway.config import GatewayConfig
from sources.gateway.credentials import Issued
from sources.gateway.store import Store
from tests.gateway.pki import Pki

ACCOUNT = "A0001SELLER"
SELLER_ID = "A1PWSELLERID"
SELLER = {
    "client_id": "amzn1.application-oa2-client.pw-test-seller-app",
    "client_secret": "amzn1.oa2-cs.v1.pw-test-seller-secret",
    "refresh_token": "Atzr|pw-test-seller-refresh-token",
}
DE = "A1PA6795UKMFR9"


def gateway_env(
    pki: Pki, upstream: str, secret_file: Path, store: Path, port: int, **extra: str
) -> dict[str, str]:
    env = {
        "PW_GATEWAY_ACCOUNT_ID": ACCOUNT,
        "PW_GATEWAY_PORT": str(port),
        "PW_GATEWAY_TLS_CERT": str(pki.cert_file),
        "PW_GATEWAY_TLS_KEY": str(pki.key_file),
        "PW_GATEWAY_UPSTREAM_URL": upstream,
        "PW_GATEWAY_LWA_URL": f"{upstream}/auth/o2/token",
        "PW_GATEWAY_UPSTREAM_CA_FILE": str(pki.ca_file),
        "PW_GATEWAY_SELLER_SECRET_FILE": str(secret_file),
        "PW_GATEWAY_STORE": str(store),
        "PW_GATEWAY_DEFAULT_MARKETPLACE": "DE",
    }
    env.update(extra)
    return env


@dataclass
class InThreadGateway:
    """`sources.gateway.service.serve` in a thread of its own; events go to `events` (checked)."""

    config: GatewayConfig
    settings: Settings
    events: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    gateway: Any = None
    fail_emit: bool = False

    def start(self) -> InThreadGateway:
        from sources.gateway.service import serve

        started = threading.Event()
        self._stop: asyncio.Event | None = None

        async def emit(events: list[dict[str, Any]]) -> None:
            if self.fail_emit:
                raise ConnectionError("the broker is away (test)")
            for event in events:
                try:
                    normalize(orjson.loads(orjson.dumps(event)))
                except Rejected as exc:
                    self.rejected.append((event, str(exc)))
            self.events.extend(events)

        def on_start(gateway: Any) -> None:
            self.gateway = gateway
            started.set()

        async def main() -> None:
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            await serve(
                self.config,
                self.settings,
                emit,
                stop=self._stop,
                started=on_start,
                ledger_kafka=ledger_kafka(self.settings),
            )

        self._thread = threading.Thread(
            target=lambda: asyncio.run(main()), daemon=True, name="gateway"
        )
        self._thread.start()
        assert started.wait(60), "the gateway did not start"
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    @property
    def url(self) -> str:
        return self.config.base_url

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("operation") == operation]


def in_thread_config(env: dict[str, str], **overrides: Any) -> GatewayConfig:
    return GatewayConfig.from_env(env, **overrides)


class GatewayProcess:
    """`python -m partnerwatch gateway run` as a child process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ca_file: Path, timeout: float = 90) -> GatewayProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "partnerwatch", "gateway", "run"],
                env=self.env,
                cwd=checkout(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"https://127.0.0.1:{self.env['PW_GATEWAY_PORT']}/_pw/health"
        import ssl

        context = ssl.create_default_context(cafile=str(ca_file))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"gateway exited: {self.log_tail()}"
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as response:
                    if orjson.loads(response.read())["ledger_caught_up"]:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"gateway not ready: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def issue(store_path: Path, provider: str, principal: str) -> Issued:
    store = Store(store_path)
    try:
        return store.issue(provider, principal)
    finally:
        store.close()


# -- the providers' clients ---------------------------------------------------------------------


def saleweaver(api: Any, gateway_url: str, creds: Issued, ca_file: Path, **kwargs: Any) -> Any:
    """A python-amazon-sp-api client that talks to the gateway (LWA and SP-API)."""
    import ssl

    from sp_api.auth import AccessTokenClient
    from sp_api.base import Marketplaces

    token_client = type(
        "GatewayTokenClient",
        (AccessTokenClient,),
        {"host": gateway_url.split("://", 1)[1], "scheme": "https://", "path": "/auth/o2/token"},
    )
    client = api(
        marketplace=Marketplaces.DE,
        credentials={
            "lwa_app_id": creds.client_id,
            "lwa_client_secret": creds.client_secret,
            "refresh_token": creds.refresh_token,
        },
        verify=ssl.create_default_context(cafile=str(ca_file)),
        auth_token_client_class=token_client,
        **kwargs,
    )
    client.endpoint = gateway_url
    return client


def official(api: Any, gateway_url: str, creds: Issued, ca_file: Path) -> Any:
    """An amzn-sp-api (official SDK) API object that talks to the gateway."""
    from spapi import ApiClient, SPAPIClient, SPAPIConfig

    config = SPAPIConfig(
        client_id=creds.client_id,
        client_secret=creds.client_secret,
        refresh_token=creds.refresh_token,
        region="EU",
    )
    client = SPAPIClient(
        config, oauth_endpoint=f"{gateway_url}/auth/o2/token", endpoint=gateway_url
    )
    configuration = client.api_client.configuration
    configuration.ssl_ca_cert = str(ca_file)
    return api(ApiClient(configuration=configuration))


@contextmanager
def trust(ca_file: Path) -> Iterator[None]:
    """Clients that open their own HTTP sessions (LWA in the official SDK, feed uploads) read these."""
    saved = {k: os.environ.get(k) for k in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
    os.environ["REQUESTS_CA_BUNDLE"] = os.environ["SSL_CERT_FILE"] = str(ca_file)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def settings_for(data_dir: Path, prefix: str = "pw.") -> Settings:
    return Settings.from_env({}, data_dir=data_dir, topic_prefix=prefix)


__all__ = ["DE", "free_port"]
