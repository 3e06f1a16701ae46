"""The gateway benchmark's upstream (bench/gateway.py): the sandbox SP-API, a process of its own.

`Upstream` starts `python -m bench.gateway --serve-upstream PORT --tls DIR`, which runs
`serve_upstream` until SIGTERM, over TLS on 127.0.0.1.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from partnerwatch.local_worker import free_port
from pipeline.config import checkout
from tests.gateway.harness import SELLER
from tests.gateway.pki import Pki

# -- the upstream, a process of its own ----------------------------------------------------------


def serve_upstream(port: int, tls: Path) -> None:
    """`python -m bench.gateway --serve-upstream PORT --tls DIR`: the sandbox until SIGTERM."""
    from aiohttp import web

    from tests.gateway.sandbox import Sandbox, fixture_files, load_definitions

    pki = Pki(tls / "ca.pem", tls / "server.pem", tls / "server.key")
    sandbox = Sandbox(load_definitions(fixture_files()), SELLER)
    sandbox.base_url = f"https://127.0.0.1:{port}"
    sandbox.requests = _Discard()  # the request log is for tests; here it would only grow
    web.run_app(
        sandbox.app(),
        host="127.0.0.1",
        port=port,
        ssl_context=pki.server_context(),
        access_log=None,
        print=None,
    )


class _Discard(list[Any]):
    def append(self, item: Any) -> None:
        pass


class Upstream:
    def __init__(self, tls: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.tls = tls
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, context: ssl.SSLContext, timeout: float = 60) -> Upstream:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.gateway",
                    "--serve-upstream",
                    str(self.port),
                    "--tls",
                    str(self.tls),
                ],
                cwd=checkout(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"the upstream exited: {self.log.read_text(errors='replace')[-2000:]}"
                )
            try:
                urllib.request.urlopen(
                    f"https://127.0.0.1:{self.port}/", timeout=2, context=context
                ).close()
                return self
            except urllib.error.HTTPError:
                return self  # it answers (403: no token)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise SystemExit("the upstream did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
