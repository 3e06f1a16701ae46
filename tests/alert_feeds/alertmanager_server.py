"""A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`) on 127.0.0.1 for the tests.

It notifies a webhook receiver of ours, resolved alerts included (`send_resolved`), with the
shortest grouping times, so a test sees what a team's pager would see. Clustering is off.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from partnerwatch.local_worker import free_port, wait_for

BINARIES = ("prometheus-alertmanager", "alertmanager")


def binary() -> str | None:
    for name in BINARIES:
        found = shutil.which(name) or (
            f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None
        )
        if found:
            return found
    return None


SKIP_REASON = "Alertmanager is not installed (Debian: apt-get install prometheus-alertmanager; .ci/run installs it)"


class Alertmanager:
    def __init__(self, workdir: Path, webhook_url: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.webhook_url = webhook_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "alertmanager.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Alertmanager:
        exe = binary()
        assert exe is not None, SKIP_REASON
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "alertmanager.yml"
        config.write_text(
            json.dumps(  # YAML is a superset of JSON
                {
                    "route": {
                        "receiver": "pager",
                        "group_by": ["alert_id"],
                        "group_wait": "0s",
                        "group_interval": "1s",
                        "repeat_interval": "1h",
                    },
                    "receivers": [
                        {
                            "name": "pager",
                            "webhook_configs": [{"url": self.webhook_url, "send_resolved": True}],
                        }
                    ],
                }
            )
        )
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    exe,
                    f"--config.file={config}",
                    f"--storage.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                    "--log.level=info",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, 30, f"Alertmanager to answer: {self.log_tail()}", interval=0.2)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, (
            f"alertmanager exited: {self.log_tail()}"
        )
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts (Alertmanager lists firing alerts; a resolved one is gone)."""
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=5) as r:
            found: list[dict[str, Any]] = json.loads(r.read())
        return found

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
