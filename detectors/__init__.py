"""Pure detection logic: each module decides on one kind of abuse, with no Kafka or warehouse.

A detector is a function `(event, grants) -> Finding | None` over the ledger's events in `seq`
order, deciding on event time only. `ALL` lists the detectors the detect agent runs.
"""

from __future__ import annotations

from collections.abc import Callable

from detectors import ip_allowlist
from pipeline.alert import Finding
from pipeline.event import Event
from pipeline.grants import AccountGrants

Detector = Callable[[Event, AccountGrants], Finding | None]

ALL: tuple[Detector, ...] = (ip_allowlist.detect,)
