"""`partnerwatch gateway ...` and `partnerwatch provider ...`: the SP-API gateway's commands.

- `gateway run`: serve the gateway (sources/gateway/service.py), its events produced to pw.actions
  with the project's Kafka producer (sinks/kafka_io.py), built here, the composition root;
- `gateway credentials issue|list|revoke`: a provider principal's own gateway credentials;
- `gateway config`: the PW_GATEWAY_* settings in force (`--markdown`: the docs table);
- `provider suspend|resume`: the kill switch. It acts on the gateway's store at once (the next
  call of any of the provider's principals gets 403), and records `permission.suspend` /
  `permission.resume` in the ledger.
"""

from __future__ import annotations

import getpass
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from partnerwatch.common import console, err, load_settings
from pipeline.event import format_ms

gateway_cli = typer.Typer(
    help="The SP-API recording gateway: providers call Amazon through it.", no_args_is_help=True
)
credentials_cli = typer.Typer(
    help="Provider principals' gateway credentials.", no_args_is_help=True
)
provider_cli = typer.Typer(
    help="The kill switch: suspend or resume all of a provider's gateway access.",
    no_args_is_help=True,
)
gateway_cli.add_typer(credentials_cli, name="credentials")


def _config() -> Any:
    from sources.gateway.config import GatewayConfig

    try:
        return GatewayConfig.from_env()
    except ValueError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None


def _store() -> Any:
    from sources.gateway.store import Store

    return Store(_config().store_path(load_settings().data_dir))


@gateway_cli.command("config")
def show_config(
    markdown: Annotated[bool, typer.Option(help="print the settings table for the docs")] = False,
) -> None:
    """Show the gateway settings in force (PW_GATEWAY_* environment variables)."""
    from sources.gateway.config import markdown_table

    if markdown:
        print(markdown_table())
        return
    for name, value in vars(_config()).items():
        console.print(f"{name} = {value!r}")


@credentials_cli.command("issue")
def issue(
    provider: Annotated[
        str,
        typer.Option("--provider", help="the provider (agency, tool vendor) id, as grants name it"),
    ],
    principal: Annotated[
        str, typer.Option("--principal", help="the user or API client of that provider")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Give a provider principal its own client id, client secret and refresh token (shown once)."""
    for name, value in (("--provider", provider), ("--principal", principal)):
        if not 1 <= len(value) <= 128:
            raise typer.BadParameter(f"{name} must be 1-128 characters")
    store = _store()
    try:
        issued = store.issue(provider, principal)
    finally:
        store.close()
    doc = {
        "client_id": issued.client_id,
        "client_secret": issued.client_secret,
        "refresh_token": issued.refresh_token,
        "provider_id": provider,
        "principal_id": principal,
    }
    if as_json:
        print(orjson.dumps(doc).decode())
        return
    for key, value in doc.items():
        console.print(f"{key}: {value}", highlight=False, soft_wrap=True)
    err.print(
        "Hand these to the principal over a safe channel: the secrets are stored only as hashes."
    )


@credentials_cli.command("list")
def list_credentials(
    provider: Annotated[str | None, typer.Option("--provider", help="only this provider's")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List issued credentials (no secrets: they are not stored)."""
    store = _store()
    try:
        rows = store.credentials(provider)
    finally:
        store.close()
    if as_json:
        for row in rows:
            print(orjson.dumps(row).decode())
        return
    table = Table("client_id", "provider", "principal", "created", "revoked", "provider suspended")
    for row in rows:
        table.add_row(
            row["client_id"],
            row["provider_id"],
            row["principal_id"],
            row["created_at"],
            row["revoked_at"] or "",
            row["suspended_at"] or "",
        )
    console.print(table)


@credentials_cli.command("revoke")
def revoke(client_id: Annotated[str, typer.Argument(help="the client id to revoke")]) -> None:
    """Revoke one credential and every access token it was exchanged for."""
    store = _store()
    try:
        done = store.revoke(client_id)
    finally:
        store.close()
    if not done:
        err.print(f"[red]no live credential {client_id}[/]")
        raise typer.Exit(1)
    console.print(f"revoked {client_id}")


def _ledger_event(action: str, provider: str, by: str, reason: str) -> dict[str, Any]:
    config = _config()
    if not config.account_id:
        err.print("[red]PW_GATEWAY_ACCOUNT_ID is not set: the event needs the seller account[/]")
        raise typer.Exit(2)
    return {
        "event_id": f"gw-{action.split('.')[1]}-{uuid.uuid4().hex}",
        "occurred_at": format_ms(time.time_ns() // 1_000_000),
        "account_id": config.account_id,
        "action": action,
        "actor": {"type": "seller", "principal_id": by},
        "operation": f"partnerwatch provider {action.split('.')[1]}",
        "resource": {"type": "provider", "id": provider},
        "origin": {"adapter": "partnerwatch-cli", "reason": reason[:512]},
    }


def _record(event: dict[str, Any]) -> None:
    from sinks.kafka_io import action_key, ensure_topics, producer

    settings = load_settings()
    ensure_topics(settings)
    prod = producer(settings, linger_ms=0)
    try:
        prod.send(settings.actions_topic, key=action_key(event), value=orjson.dumps(event)).get(
            timeout=30
        )
    finally:
        prod.close()


@provider_cli.command("suspend")
def suspend(
    provider: Annotated[str, typer.Argument(help="the provider id")],
    reason: Annotated[
        str, typer.Option(help="why (kept in the ledger event)")
    ] = "suspended by the seller",
    by: Annotated[str, typer.Option(help="who suspends it (default: the OS user)")] = "",
) -> None:
    """Revoke every gateway token of a provider now; its calls get 403 until `provider resume`."""
    store = _store()
    try:
        dropped = store.suspend(provider, by or getpass.getuser(), reason)
    finally:
        store.close()
    console.print(f"suspended {provider}: {dropped} live token(s) revoked")
    try:
        _record(_ledger_event("permission.suspend", provider, by or getpass.getuser(), reason))
    except Exception as exc:  # the suspension holds; say loudly that the ledger misses it
        err.print(f"[red]suspended, but the ledger event could not be produced: {exc}[/]")
        raise typer.Exit(1) from None


@provider_cli.command("resume")
def resume(
    provider: Annotated[str, typer.Argument(help="the provider id")],
    reason: Annotated[
        str, typer.Option(help="why (kept in the ledger event)")
    ] = "resumed by the seller",
    by: Annotated[str, typer.Option(help="who resumes it (default: the OS user)")] = "",
) -> None:
    """Lift a suspension: the provider's principals may exchange their credentials again."""
    store = _store()
    try:
        was = store.resume(provider)
    finally:
        store.close()
    if not was:
        err.print(f"{provider} was not suspended")
    console.print(f"resumed {provider}")
    try:
        _record(_ledger_event("permission.resume", provider, by or getpass.getuser(), reason))
    except Exception as exc:
        err.print(f"[red]resumed, but the ledger event could not be produced: {exc}[/]")
        raise typer.Exit(1) from None


@gateway_cli.command("run")
def run(
    data_dir: Annotated[
        Path | None, typer.Option(help="overrides PW_DATA_DIR for the store")
    ] = None,
) -> None:
    """Serve the gateway until interrupted."""
    import asyncio

    from sources.gateway.service import serve

    settings = load_settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    config = _config()
    if not config.account_id or not config.default_marketplace:
        err.print("[red]PW_GATEWAY_ACCOUNT_ID and PW_GATEWAY_DEFAULT_MARKETPLACE must be set[/]")
        raise typer.Exit(2)
    emitter = KafkaEmitter(settings)
    try:
        asyncio.run(serve(config, settings, emitter.emit, ledger_kafka=ledger_kafka(settings)))
    except KeyboardInterrupt:
        pass
    finally:
        emitter.close()


def ledger_kafka(settings: Any) -> Any:
    """The gateway's ledger reader's Kafka clients (sources/gateway/ledger.py `LedgerKafka`)."""
    from sinks.kafka_io import aio_consumer
    from sources.gateway.ledger import LedgerKafka
    from streams.faust_internals import fetch_cluster_metadata

    return LedgerKafka(
        lambda: aio_consumer(settings, role="gateway-ledger"), fetch_cluster_metadata
    )


class KafkaEmitter:
    """Events to pw.actions, keyed by account, acknowledged by the broker before `emit` returns."""

    def __init__(self, settings: Any) -> None:
        from sinks.kafka_io import ensure_topics, producer

        self.topic = settings.actions_topic
        ensure_topics(settings)
        self.producer = producer(settings, role="gateway", linger_ms=0)

    async def emit(self, events: list[dict[str, Any]]) -> None:
        import asyncio

        from sinks.kafka_io import action_key

        loop = asyncio.get_running_loop()
        waiting = []
        for event in events:
            future: asyncio.Future[Any] = loop.create_future()
            record = self.producer.send(
                self.topic, key=action_key(event), value=orjson.dumps(event)
            )
            record.add_callback(lambda meta, f=future: loop.call_soon_threadsafe(_settle, f, None))
            record.add_errback(lambda exc, f=future: loop.call_soon_threadsafe(_settle, f, exc))
            waiting.append(future)
        await asyncio.gather(*waiting)

    def close(self) -> None:
        self.producer.flush(30)
        self.producer.close()


def _settle(future: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
