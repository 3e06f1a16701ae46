"""The worker's warehouse loader service, one per worker, registered with the app when imported
(by the HTTP views in streams/web/sql.py, which answer SQL through its engine, and by
streams/state_repair.py, which reads history the ledger no longer holds from it)."""

from __future__ import annotations

from streams.app import app, settings
from streams.warehouse_service import WarehouseLoaderService

loader_service = WarehouseLoaderService(settings)
app.service(loader_service)  # type: ignore[arg-type]  # Faust accepts instances too
