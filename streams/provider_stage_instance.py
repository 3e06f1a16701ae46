"""The worker's provider stage service (streams/provider_stage_service.py), one per worker,
registered with the app when imported (by streams/worker.py, and by the HTTP views in
streams/web/sql.py, whose /v1/health reports it)."""

from __future__ import annotations

from streams.app import app, settings
from streams.provider_stage_service import ProviderStageService

provider_stage = ProviderStageService(settings)
app.service(provider_stage)  # type: ignore[arg-type]  # Faust accepts instances too
