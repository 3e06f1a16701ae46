"""The worker's HTTP API (bound to 127.0.0.1 by default): health and read-only SQL.

The embedded warehouse is locked to the worker process, so `partnerwatch sql` sends its query
here while the worker runs.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.forensics.sql_guard import UnsafeQuery, read_only
from sinks.clickhouse import WarehouseError
from streams.app import app, settings
from streams.warehouse_loader import WarehouseLoaderService, health
from streams.web.ingest import producer_service

loader_service = WarehouseLoaderService(settings)
app.service(loader_service)  # type: ignore[arg-type]  # Faust accepts instances too


def _authorized(request: web.Request) -> bool:
    if not settings.api_token:
        return True
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given, f"Bearer {settings.api_token}")


@app.page("/v1/health")
class Health(web.View):
    async def get(self, request: web.Request) -> web.Response:
        status, body = health(loader_service.loader, producer_service.producer is not None)
        return self.json(body, status=status)


@app.page("/metrics")
class Metrics(web.View):
    async def get(self, request: web.Request) -> web.Response:
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/v1/sql")
class Sql(web.View):
    async def post(self, request: web.Request) -> web.Response:
        if not _authorized(request):
            return self.json({"error": "missing or wrong bearer token"}, status=401)
        try:
            body: Any = await request.json()
        except ValueError:
            return self.json({"error": "body must be JSON: {\"query\": ..., \"params\": {...}}"}, status=400)
        query = body.get("query") if isinstance(body, dict) else None
        params = body.get("params") or {} if isinstance(body, dict) else {}
        if not isinstance(query, str) or not isinstance(params, dict):
            return self.json({"error": "query must be a string and params an object"}, status=400)
        try:
            query = read_only(query)  # one statement, run with readonly=1 (pipeline/forensics/sql_guard.py)
        except UnsafeQuery as exc:
            return self.json({"error": str(exc)}, status=400)
        loader = loader_service.loader
        if loader is None:
            return self.json({"error": "the warehouse is not open yet"}, status=503)
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                None, loader.warehouse.query, query, params
            )
        except WarehouseError as exc:
            return self.json({"error": str(exc)}, status=400)
        return self.json({"columns": result.columns, "types": result.types, "rows": result.rows})
