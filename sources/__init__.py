"""Adapters that bring events in: HTTP ingest today; Amazon's SP-API gateway and notifications next."""
