"""Running the gateway: TLS contexts, the aiohttp server, the ledger follower and the outbox drain."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Callable

import aiohttp
import structlog
from aiohttp import web

from pipeline.config import Settings
from sources.gateway.app import Emit, Gateway
from sources.gateway.config import GatewayConfig
from sources.gateway.ledger import AuthorizationView, LedgerKafka
from sources.gateway.lwa import SellerCredentials, SellerTokens
from sources.gateway.store import Store

log = structlog.get_logger("sources.gateway.app")


def client_ssl(config: GatewayConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=config.upstream_ca_file or None)
    return context


def server_ssl(config: GatewayConfig) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


async def serve(
    config: GatewayConfig,
    settings: Settings,
    emit: Emit,
    stop: asyncio.Event | None = None,
    started: Callable[[Gateway], None] | None = None,
    ledger_kafka: LedgerKafka | None = None,
) -> None:
    """Run the gateway until `stop` is set (or SIGINT/SIGTERM). With `config.ledger_follow`,
    `ledger_kafka` (`partnerwatch.gateway.ledger_kafka(settings)`) is how it reads the ledger."""
    if config.ledger_follow and ledger_kafka is None:
        raise ValueError(
            "following the ledger needs ledger_kafka (partnerwatch.gateway.ledger_kafka)"
        )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    credentials = SellerCredentials.load(config.seller_secret_file)
    store = Store(config.store_path(settings.data_dir))
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=client_ssl(config), limit=200)
    )
    view = (
        AuthorizationView(store, config.account_id, settings.ledger_topic)
        if config.ledger_follow
        else None
    )
    gateway = Gateway(
        config, store, emit, SellerTokens(credentials, config.lwa_url, session), session, view
    )
    tasks = [asyncio.create_task(gateway.drain(stop))]
    if view is not None and ledger_kafka is not None:
        tasks.append(asyncio.create_task(view.follow(ledger_kafka, stop)))
        if config.enforce:
            # Enforcing on an empty view would refuse every call: read the ledger first.
            waiter = asyncio.create_task(view.caught_up.wait())
            await asyncio.wait(
                [waiter, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
            )
    runner = web.AppRunner(gateway.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=server_ssl(config))
    await site.start()
    log.info("gateway.started", url=config.base_url, mode=config.mode, upstream=config.upstream)
    if started is not None:
        started(gateway)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if view is not None:
            view.save()
        await session.close()
        store.close()
