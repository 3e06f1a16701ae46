"""Test hygiene for the one shared broker: the topics of the namespaces a test module made are
deleted when the module ends (tests/conftest.py), so a whole run does not leave the broker with
thousands of topics (it slowed down metadata requests, group joins and restarts over a run).

A namespace that outlives its module (a session-scoped worker) is registered in `SHARED`; its
topics go when the session ends."""

from __future__ import annotations

SHARED: set[str] = set()
