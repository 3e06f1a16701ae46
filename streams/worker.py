"""The worker: the Faust app with every agent, view and service registered.

Run with `partnerwatch worker` (or `python -m streams.worker worker -l info`).
"""

from __future__ import annotations

from streams import (
    consumer_lag,
    digest_service,
    heap_trim,
    ingest,
    ml_models,
    monitor,
)
from streams.app import app, settings
from streams.provider_stage_instance import provider_stage
from streams.web import alerts as alert_views
from streams.web import ingest as ingest_views
from streams.web import sql as views

__all__ = [
    "alert_views",
    "app",
    "consumer_lag",
    "digest_service",
    "heap_trim",
    "ingest",
    "ingest_views",
    "ml_models",
    "monitor",
    "provider_stage",
    "views",
]


def main() -> None:
    from pipeline.logs import configure_logging

    configure_logging(settings)
    app.main()


if __name__ == "__main__":
    main()
