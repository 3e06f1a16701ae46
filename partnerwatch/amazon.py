"""`partnerwatch notifications ...`, `partnerwatch poll ...`, `partnerwatch elasticmq ...`.

What Amazon itself reports, as ledger events (actor type `amazon`), for the reconciliation
against the gateway's calls (detector `change_outside_gateway`):
- `notifications run`: read SP-API notifications from an SQS queue (sources/notifications/sqs.py)
  and/or serve the EventBridge API destination endpoint (sources/notifications/eventbridge.py);
- `poll run` / `poll once`: poll what notifications do not tell (sources/polling/);
- `elasticmq start|stop|status`: the local SQS stand-in (partnerwatch/elasticmq_runner/).

The events leave through the gateway's Kafka emitter (acknowledged before `emit` returns): this
module is the composition root that hands it to the sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated, Any

import typer

from partnerwatch.common import console, elasticmq_runner, err, load_settings

notifications_cli = typer.Typer(
    help="SP-API notifications (SQS, EventBridge) into the ledger.", no_args_is_help=True
)
poll_cli = typer.Typer(
    help="Poll Amazon for what notifications do not tell (listings, bank accounts, payouts).",
    no_args_is_help=True,
)


def _notify_config() -> Any:
    from sources.notifications.config import NotifyConfig

    try:
        return NotifyConfig.from_env()
    except ValueError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None


@notifications_cli.command("config")
def notifications_config(
    markdown: Annotated[bool, typer.Option(help="print the settings table for the docs")] = False,
) -> None:
    """Show the notification settings in force (PW_NOTIFY_* environment variables)."""
    from sources.notifications.config import markdown_table

    if markdown:
        print(markdown_table())
        return
    for name, value in vars(_notify_config()).items():
        console.print(f"{name} = {value!r}")


@notifications_cli.command("run")
def notifications_run() -> None:
    """Read notifications from SQS (PW_NOTIFY_SQS_QUEUE_URL) and/or serve the EventBridge endpoint
    (PW_NOTIFY_EVENTBRIDGE_PORT) until interrupted."""
    from partnerwatch.gateway import KafkaEmitter

    settings = load_settings()
    config = _notify_config()
    if not config.account_id:
        err.print("[red]PW_NOTIFY_ACCOUNT_ID must be set[/]")
        raise typer.Exit(2)
    if not config.sqs_queue_url and not config.eventbridge_port:
        err.print("[red]set PW_NOTIFY_SQS_QUEUE_URL, PW_NOTIFY_EVENTBRIDGE_PORT or both[/]")
        raise typer.Exit(2)
    emitter = KafkaEmitter(settings)
    try:
        asyncio.run(serve_notifications(config, settings, emitter.emit))
    except KeyboardInterrupt:
        pass
    finally:
        emitter.close()


async def serve_notifications(
    config: Any, settings: Any, emit: Any, stop: asyncio.Event | None = None
) -> None:
    import ssl

    from aiohttp import web

    from sources.notifications.eventbridge import KEY_VARIABLE, EventBridgeEndpoint
    from sources.notifications.events import Target
    from sources.notifications.seen import Seen
    from sources.notifications.sqs import SqsReader, client, queue_url

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    seen = Seen(config.store_path(settings.data_dir), config.seen_days)
    tasks = []
    runner = None
    try:
        if config.sqs_queue_url:
            sqs = client(config)
            url = await asyncio.to_thread(queue_url, sqs, config)
            reader = SqsReader(
                sqs,
                url,
                emit,
                seen,
                Target(config.account_id, config.site, "sqs", config.accounts()),
                wait_seconds=config.sqs_wait_seconds,
                visibility_seconds=config.sqs_visibility_seconds,
                max_messages=config.sqs_max_messages,
            )
            tasks.append(asyncio.create_task(reader.run(stop)))
            err.print(f"reading notifications from {url}")
        if config.eventbridge_port:
            endpoint = EventBridgeEndpoint(
                emit,
                seen,
                Target(config.account_id, config.site, "eventbridge", config.accounts()),
                config.eventbridge_header,
            )
            if not endpoint.key:
                err.print(
                    f"[red]{KEY_VARIABLE} is not set: the EventBridge endpoint would refuse every request[/]"
                )
                raise typer.Exit(2)
            context = None
            if config.eventbridge_tls_cert:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(config.eventbridge_tls_cert, config.eventbridge_tls_key)
            runner = web.AppRunner(endpoint.app(), access_log=None)
            await runner.setup()
            await web.TCPSite(
                runner, config.eventbridge_host, config.eventbridge_port, ssl_context=context
            ).start()
            err.print(
                f"EventBridge endpoint on {config.eventbridge_host}:{config.eventbridge_port}/eventbridge"
            )
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if runner is not None:
            await runner.cleanup()
        seen.close()


def _poll_setup() -> tuple[Any, Any, Any]:
    from sources.gateway.config import GatewayConfig
    from sources.polling.config import PollConfig

    try:
        gateway, config = GatewayConfig.from_env(), PollConfig.from_env()
    except ValueError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None
    if (
        not gateway.account_id
        or not config.seller_id
        or not config.sites(gateway.default_marketplace)
    ):
        err.print(
            "[red]PW_GATEWAY_ACCOUNT_ID, PW_POLL_SELLER_ID and PW_POLL_MARKETPLACES (or PW_GATEWAY_DEFAULT_MARKETPLACE) must be set[/]"
        )
        raise typer.Exit(2)
    return load_settings(), gateway, config


async def serve_polling(
    settings: Any,
    gateway: Any,
    config: Any,
    emit: Any,
    once: bool = False,
    stop: asyncio.Event | None = None,
) -> list[dict[str, Any]]:
    """Poll the account (once, or every PW_POLL_INTERVAL_SECONDS until stopped)."""
    import aiohttp

    from sources.gateway.lwa import SellerCredentials, SellerTokens
    from sources.gateway.service import client_ssl
    from sources.polling.client import SpApi
    from sources.polling.poller import Account, Poller
    from sources.polling.store import Snapshots

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    credentials = SellerCredentials.load(gateway.seller_secret_file)
    store = Snapshots(config.store_path(settings.data_dir))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=client_ssl(gateway))
    ) as session:
        api = SpApi(gateway.upstream, SellerTokens(credentials, gateway.lwa_url, session), session)
        account = Account(
            gateway.account_id, config.seller_id, config.sites(gateway.default_marketplace)
        )
        poller = Poller(account, api, store, emit, config)
        try:
            if once:
                return await poller.poll_once()
            await poller.run(stop)
        finally:
            store.close()
    return []


@poll_cli.command("config")
def poll_config(
    markdown: Annotated[bool, typer.Option(help="print the settings table for the docs")] = False,
) -> None:
    """Show the poller's settings (PW_POLL_*; the seller app and upstream are the gateway's)."""
    from sources.polling.config import PollConfig, markdown_table

    if markdown:
        print(markdown_table())
        return
    for name, value in vars(PollConfig.from_env()).items():
        console.print(f"{name} = {value!r}")


@poll_cli.command("run")
def poll_run() -> None:
    """Poll the seller account every PW_POLL_INTERVAL_SECONDS until interrupted."""
    from partnerwatch.gateway import KafkaEmitter

    settings, gateway, config = _poll_setup()
    emitter = KafkaEmitter(settings)
    try:
        asyncio.run(serve_polling(settings, gateway, config, emitter.emit))
    except KeyboardInterrupt:
        pass
    finally:
        emitter.close()


@poll_cli.command("once")
def poll_once() -> None:
    """Poll once and print the events sent (the first poll of a site takes a baseline: none)."""
    import orjson

    from partnerwatch.gateway import KafkaEmitter

    settings, gateway, config = _poll_setup()
    emitter = KafkaEmitter(settings)
    try:
        events = asyncio.run(serve_polling(settings, gateway, config, emitter.emit, once=True))
    finally:
        emitter.close()
    for event in events:
        print(orjson.dumps(event).decode())
    err.print(f"{len(events)} events")


def register(cli: typer.Typer) -> None:
    cli.add_typer(notifications_cli, name="notifications")
    cli.add_typer(poll_cli, name="poll")

    @cli.command()
    def elasticmq(
        action: Annotated[str, typer.Argument(help="start | stop | status | fetch")],
    ) -> None:
        """Run the local ElasticMQ server (an SQS stand-in) on the port of PW_SQS_ENDPOINT_URL."""
        from sources.notifications.config import NotifyConfig

        raise typer.Exit(elasticmq_runner(action, NotifyConfig.from_env().sqs_endpoint_url))
