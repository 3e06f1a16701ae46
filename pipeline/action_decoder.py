"""The ingest service's validator (placeholder: today's `parse_action`)."""

from __future__ import annotations

from pipeline.event import parse_action as decode_action

__all__ = ["decode_action"]
