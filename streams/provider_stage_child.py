"""`PW_PROVIDER_STAGE=process`: the worker runs the provider stage as a child process.

The same stage as `PW_PROVIDER_STAGE=worker` (streams/provider_stage.py), run by `partnerwatch
provider-stage` in a process the worker starts, watches and stops (streams/child_process.py), so
that one command still runs the whole job while the stage's folding no longer takes turns with
the ingest service for the worker's interpreter lock (docs/performance.md, "The provider stage as
a child process").

- `pw_provider_stage_process_restarts_total` counts the restarts. The stage resumes from its last
  checkpoint, as after a crash of a worker in `worker` mode.
- The worker's /metrics shows the stage's own figures (`STAGE_METRICS` in sinks/metrics.py) read
  from the child at each scrape, in place of the worker's (which stay at zero in this mode).
- Stopping the worker stops the child with SIGTERM (it checkpoints and exits), SIGKILL after
  `STOP_SECONDS`.
"""

from __future__ import annotations

from sinks import metrics
from streams.child_process import ChildMetrics, ChildProcess

__all__ = ["ChildMetrics", "StageProcess"]


class StageProcess(ChildProcess):
    """One `partnerwatch provider-stage` child at a time, restarted when it exits."""

    name = "provider_stage"
    label = "the provider stage process"
    SHOWN = metrics.STAGE_METRICS
    RESTARTS = metrics.PROVIDER_PROCESS_RESTARTS

    def arguments(self) -> list[str]:
        return ["provider-stage"]
