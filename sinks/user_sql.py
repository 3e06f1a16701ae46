"""User SQL: the limits one query may use, the user query interface, and the guarded run."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Protocol

from pipeline.config import Settings
from sinks.warehouse import QueryResult, WarehouseError

#: The header that marks a worker's busy answer to POST /v1/sql (429, streams/web/sql.py), so
#: that a client waits out that 429 and no other (partnerwatch/common.py `post_sql`; the web
#: guard answers 429 too, to a client address that failed to authenticate too often).
BUSY_HEADER = "PartnerWatch-Busy"


@dataclass(frozen=True)
class SqlLimits:
    """What one user query may use (PW_SQL_* settings); the engine enforces each one."""

    max_execution_time: float
    max_memory_usage: int
    max_result_rows: int
    max_result_bytes: int
    max_rows_to_read: int

    def __post_init__(self) -> None:
        # Each value goes into the engine's settings (for chDB, its connection string): only a
        # number of the field's kind, not below zero, so nothing else can ride along with it.
        for field in fields(self):
            name, value = field.name, getattr(self, field.name)
            kind = (
                (int, float) if field.type in ("float", float) else (int,)
            )  # a float field takes an int
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ValueError(f"the SQL limit {name} must be a number, not {value!r}"[:200])
            if not 0 <= value < math.inf:  # NaN and infinity too
                raise ValueError(
                    f"the SQL limit {name} must be finite and not below zero, not {value!r}"
                )

    @classmethod
    def from_settings(cls, settings: Settings) -> SqlLimits:
        return cls(
            max_execution_time=settings.sql_max_execution_time,
            max_memory_usage=settings.sql_max_memory_usage,
            max_result_rows=settings.sql_max_result_rows,
            max_result_bytes=settings.sql_max_result_bytes,
            max_rows_to_read=settings.sql_max_rows_to_read,
        )

    def engine_settings(self) -> dict[str, int | float]:
        return {
            "max_execution_time": self.max_execution_time,
            "max_memory_usage": self.max_memory_usage,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "max_rows_to_read": self.max_rows_to_read,
            # The outermost SELECT stops one row past the limit, so max_result_rows fires even where
            # the engine would check it only after building one huge block (arrayJoin(range(...))).
            "limit": self.max_result_rows + 1,
        }

    def explain(self, error: WarehouseError) -> WarehouseError:
        """The engine's error for a limit, led by which setting stopped the query."""
        hint = {
            159: f"the query ran longer than PW_SQL_MAX_EXECUTION_TIME ({self.max_execution_time:g} s)",
            241: f"the query needed more memory than PW_SQL_MAX_MEMORY_USAGE ({self.max_memory_usage} bytes)",
            158: f"the query reads more rows than PW_SQL_MAX_ROWS_TO_READ ({self.max_rows_to_read})",
            396: f"the result is larger than PW_SQL_MAX_RESULT_ROWS ({self.max_result_rows} rows) or "
            f"PW_SQL_MAX_RESULT_BYTES ({self.max_result_bytes} bytes): aggregate, or add a LIMIT",
            394: "the query was cancelled",
        }.get(error.code or 0)
        return WarehouseError(f"{hint}. {error}", error.code) if hint else error


class UserQuery(Protocol):
    """One user query on its own read-only connection: the guard's parser, then the run.

    `cancel()` may be called from another thread (the client went away); `close()` always.
    """

    def format_query(self, sql: str) -> str: ...

    def parse_json(self, sql: str) -> str: ...

    def run(self, sql: str) -> QueryResult: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


def run_user_sql(job: UserQuery, query: str) -> QueryResult:
    """Admit `query` with the engine's own parser (pipeline/forensics/sql_guard.py), then run the
    canonical text it returns, never the text as sent; `UnsafeQuery` when refused."""
    from pipeline.forensics.sql_guard import admit

    try:
        return job.run(admit(query, job))
    finally:
        job.close()


_CODE = re.compile(r"Code: (\d+)\.")


def _engine_error(exc: BaseException) -> WarehouseError:
    text = str(exc).strip()
    match = _CODE.search(text)
    return WarehouseError(text, int(match.group(1)) if match else None)
