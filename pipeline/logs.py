"""Logging, configured once per process: structlog and the standard library through one handler.

`configure_logging(settings)` is called by the command line (`partnerwatch.common.load_settings`,
which every command uses, the worker included). structlog's events go through the standard
library's logging, so Faust's, aiokafka's and our own lines share one handler on stderr, one
renderer (`PW_LOG_FORMAT`: console or json), one timestamp (UTC, ISO 8601) and one level filter
(`PW_LOG_LEVEL`). The worker tells Faust not to set up logging or redirect stdout
(streams/app.py `Worker`): Faust used to re-log every structlog line as a WARNING of its own, with
a second timestamp.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from pipeline.config import Settings

HANDLER_NAME = "partnerwatch"


def _renderer(fmt: str, stream: IO[str]) -> list[Any]:
    # Tracebacks as plain text, never with local variables (structlog's rich and dict tracebacks
    # show locals by default, and a local can hold a token or a key).
    if fmt == "json":
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    isatty = getattr(stream, "isatty", None)
    colors = bool(isatty and isatty())
    return [
        structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
    ]


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> None:
    """Route structlog and stdlib logging to one handler on `stream` (default stderr).

    Replaces the root logger's handlers rather than adding to them, so a second call (a command
    that loads the settings twice) changes nothing but what the settings changed.
    """
    out = stream if stream is not None else sys.stderr
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,  # records of Faust, aiokafka, ...: the same fields
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_renderer(settings.log_format, out),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kafka-python (the commands' producers and admin, the worker's topic check) logs every
    # connection step at INFO: below debug, only its warnings reach a command's stderr.
    logging.getLogger("kafka").setLevel(
        level if level <= logging.DEBUG else max(level, logging.WARNING)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Not cached: a module-level logger used before a second call follows the new settings
        # (no log call sits on the per-event path, so the lookup per call costs nothing measurable).
        cache_logger_on_first_use=False,
    )
