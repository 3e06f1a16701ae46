"""docs/gateway.md, "Connect your seller account", followed step by step against the local stand-ins.

Steps 1 and 5 happen in Seller Central. Amazon is the tests' sandbox upstream (its LWA plays the
seller app's self-authorization of step 1); the seller's Kafka and PartnerWatch worker are the
local broker and a real worker in a namespace of their own; the certificate is the test's own.
- Step 2: the seller secret file (JSON, mode 0600) and the documented PW_GATEWAY_* settings
  (`gateway config --markdown` lists them), then `python -m partnerwatch gateway run`, a child
  process. The only settings beyond the documented ones point it at the stand-ins instead of
  Amazon's endpoints, and give it a free port.
- Step 3: `partnerwatch gateway credentials issue --provider P --principal U`, its printed
  client id, secret and refresh token; the store keeps only hashes.
- Step 4: python-amazon-sp-api pointed at the gateway's LWA URL and endpoint as the docs show;
  a listings patch reaches Amazon with the seller's token, and becomes a `listing.price_change`
  of that principal in the ledger topic and in `audit.events`, through the worker.
- The kill switch: `partnerwatch provider suspend P`; the next call gets 403 and never reaches
  Amazon.

Each command the test runs must be written in the docs as the test runs it: the docs and the
test cannot drift apart silently.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from partnerwatch.local_worker import Namespace, Worker, free_port, wait_for
from pipeline.config import REPO_ROOT, checkout
from tests.gateway.harness import ACCOUNT, DE, SELLER, SELLER_ID, GatewayProcess
from tests.gateway.pki import Pki
from tests.gateway.sandbox import Sandbox
from tests.gateway.test_enforce import price_patch

pytestmark = pytest.mark.integration

DOCS = REPO_ROOT / "docs" / "gateway.md"


def quickstart() -> str:
    text = DOCS.read_text()
    start = text.index("## Connect your seller account")
    return text[start : text.index("\n## ", start + 1)]


def documented(command: str, where: str | None = None) -> list[str]:
    """`command` as the docs write it (in backquotes), as arguments for `python -m partnerwatch`."""
    text = where if where is not None else DOCS.read_text()
    assert f"`{command}`" in text, f"docs/gateway.md no longer says `{command}`"
    args = command.split()
    assert args[0] == "partnerwatch"
    return args[1:]


def cli(env: dict[str, str], args: list[str], *substitute: tuple[str, str]) -> str:
    args = [dict(substitute).get(a, a) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "partnerwatch", *args],
        env=env,
        cwd=checkout(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def gateway_client(api: Any, gateway: str, creds: dict[str, str], ca_file: Path) -> Any:
    """python-amazon-sp-api pointed at the gateway, written as docs/gateway.md step 4 shows it."""
    from sp_api.auth import AccessTokenClient
    from sp_api.base import Marketplaces

    gateway_host = gateway.removeprefix("https://")

    class GatewayLwa(AccessTokenClient):  # Login with Amazon, at the gateway
        scheme, host, path = "https://", gateway_host, "/auth/o2/token"

    client = api(
        marketplace=Marketplaces.DE,
        credentials={
            "lwa_app_id": creds["client_id"],
            "lwa_client_secret": creds["client_secret"],
            "refresh_token": creds["refresh_token"],
        },
        auth_token_client_class=GatewayLwa,
        verify=ssl.create_default_context(cafile=str(ca_file)),
    )
    client.endpoint = gateway  # SP-API calls, at the gateway
    return client


def test_connect_your_seller_account(
    kafka_broker: str, tmp_path: Path, pki: Pki, sandbox: Sandbox
) -> None:
    from sp_api.api import ListingsItems
    from sp_api.base import SellingApiException

    steps = quickstart()
    ns = Namespace(tmp_path)
    worker = Worker(ns).start()
    gateway: GatewayProcess | None = None
    try:
        # Step 2: the seller app's credentials in a secret file, mode 0600, and the settings.
        secret_file = tmp_path / "secrets" / "seller-app.json"
        secret_file.parent.mkdir()
        secret_file.write_bytes(
            orjson.dumps({k: SELLER[k] for k in ("client_id", "client_secret", "refresh_token")})
        )
        secret_file.chmod(0o600)
        port = free_port()
        documented_settings = {
            "PW_GATEWAY_SELLER_SECRET_FILE": str(secret_file),
            "PW_GATEWAY_ACCOUNT_ID": ACCOUNT,
            "PW_GATEWAY_REGION": "eu",
            "PW_GATEWAY_DEFAULT_MARKETPLACE": "DE",
            "PW_GATEWAY_TLS_CERT": str(pki.cert_file),
            "PW_GATEWAY_TLS_KEY": str(pki.key_file),
            "PW_GATEWAY_MODE": "observe",
            "PW_GATEWAY_HOST": "127.0.0.1",
            "PW_GATEWAY_PORT": str(port),
            "PW_GATEWAY_PUBLIC_URL": f"https://127.0.0.1:{port}",
        }
        for name in documented_settings:
            assert f"`{name}`" in steps, f"step 2 does not name {name}"
        stand_ins = {  # Amazon's endpoints are the defaults; here, the sandbox upstream
            "PW_GATEWAY_UPSTREAM_URL": sandbox.base_url,
            "PW_GATEWAY_LWA_URL": f"{sandbox.base_url}/auth/o2/token",
            "PW_GATEWAY_UPSTREAM_CA_FILE": str(pki.ca_file),
        }
        env = {**ns.env, **documented_settings, **stand_ins}
        table = cli(env, documented("partnerwatch gateway config --markdown", steps))
        for name in {**documented_settings, **stand_ins}:
            assert f"| `{name}` |" in table, name
        gateway = GatewayProcess(env, tmp_path / "gateway.log")
        documented("partnerwatch gateway run", steps)
        gateway.start(
            pki.ca_file
        )  # runs `python -m partnerwatch gateway run`, waits for /_pw/health

        # Step 3: credentials of the provider's principal, printed once, stored hashed.
        printed = cli(
            env,
            documented("partnerwatch gateway credentials issue --provider P --principal U", steps),
            ("P", "agency-a"),
            ("U", "repricer-bot"),
        )
        creds = dict(
            re.findall(r"^(client_id|client_secret|refresh_token): (\S+)$", printed, re.MULTILINE)
        )
        assert set(creds) == {"client_id", "client_secret", "refresh_token"}, printed
        listed = cli(env, ["gateway", "credentials", "list", "--json"])
        assert [
            (r["client_id"], r["provider_id"], r["principal_id"])
            for r in map(orjson.loads, listed.splitlines())
        ] == [(creds["client_id"], "agency-a", "repricer-bot")]
        stored = b"".join(p.read_bytes() for p in Path(env["PW_DATA_DIR"]).rglob("gateway.sqlite*"))
        assert creds["client_id"].encode() in stored  # the store is where the docs say
        assert (
            creds["client_secret"].encode() not in stored
            and creds["refresh_token"].encode() not in stored
        )

        # Step 4: the provider's tool, pointed at the gateway's LWA URL and SP-API endpoint.
        assert "https://<gateway>/auth/o2/token" in steps and "auth_token_client_class" in steps
        url = f"https://127.0.0.1:{port}"
        listings = gateway_client(ListingsItems, url, creds, pki.ca_file)
        answer = listings.patch_listings_item(
            SELLER_ID, "MUG-1", body=price_patch(15.25), marketplaceIds=[DE]
        )
        assert answer.payload["status"] == "ACCEPTED"
        reached = sandbox.calls("patchListingsItem")
        assert (
            len(reached) == 1 and reached[0].token in sandbox.tokens
        )  # the seller's token, not the provider's
        assert reached[0].body == price_patch(15.25)

        query = (
            "SELECT event_id, action, provider_id, principal_id, marketplace, outcome FROM audit.events"
            " WHERE account_id = {account:String} AND operation = 'patchListingsItem'"
        )
        wait_for(
            lambda: len(ns.sql(query, {"account": ACCOUNT})) >= 1, 120, "the patch in audit.events"
        )
        rows = ns.sql(query, {"account": ACCOUNT})
        assert [r[1:] for r in rows] == [
            ["listing.price_change", "agency-a", "repricer-bot", "DE", "success"]
        ]
        ledger = [
            orjson.loads(r.value)
            for r in ns.read_topic(ns.settings.ledger_topic, expect=2, timeout=60)
        ]
        entry = [e for e in ledger if e.get("event_id") == rows[0][0]]
        assert len(entry) == 1 and entry[0]["actor"]["principal_id"] == "repricer-bot", ledger
        assert entry[0]["changes"][0]["field"] == "price" and Decimal(
            entry[0]["changes"][0]["new"]
        ) == Decimal("15.25")

        # The kill switch (docs: "Enforcement and the kill switch").
        cli(env, documented("partnerwatch provider suspend P"), ("P", "agency-a"))
        with pytest.raises(SellingApiException) as refused:
            listings.patch_listings_item(
                SELLER_ID, "MUG-1", body=price_patch(16.0), marketplaceIds=[DE]
            )
        assert refused.value.code == 403
        assert len(sandbox.calls("patchListingsItem")) == 1  # Amazon never saw it
        suspended = (
            "SELECT actor_type, resource_id FROM audit.events WHERE action = 'permission.suspend'"
        )
        wait_for(lambda: len(ns.sql(suspended)) >= 1, 60, "the suspension in the ledger")
        assert ns.sql(suspended) == [["seller", "agency-a"]]
        assert worker.alive()
    finally:
        if gateway is not None:
            gateway.stop()
        worker.stop()
