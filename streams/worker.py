"""The worker: the Faust app with every agent, view and service registered.

Run with `partnerwatch worker` (or `python -m streams.worker worker -l info`).
"""

from __future__ import annotations

from streams import (
    alert_views,
    consumer_lag,
    detect,
    digest_service,
    ingest,
    ingest_views,
    ml_models,
    monitor,
    views,
)
from streams.app import app

__all__ = ["alert_views", "app", "consumer_lag", "detect", "digest_service", "ingest", "ingest_views", "ml_models", "monitor", "views"]


def main() -> None:
    app.main()


if __name__ == "__main__":
    main()
