"""A real HTTP receiver on 127.0.0.1 for the feed tests, that can be down, failing or up.

Modes: `down` (nothing listens: connection refused), `503` or any status (answers it and
records nothing), `up` (records the request and answers 200 with `answer`). The port is chosen
once, so a receiver that comes back is reached at the same URL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from partnerwatch.local_worker import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(
        self, answer: bytes = b"ok", check: Callable[[Received], bool] | None = None
    ) -> None:
        self.port = free_port()
        self.answer = answer
        self.check = check
        self.mode = "down"
        self.received: list[Received] = []
        self.refused = 0  # requests answered with an error status
        self.rejected: list[Received] = []  # requests that failed `check` (e.g. a bad signature)
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        """`down`, `up` or an HTTP status such as `503`."""
        self.mode = mode
        if mode == "down":
            self.close()
        elif self._server is None:
            self._serve()

    def _serve(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                item = Received(
                    self.path, {k: v for k, v in self.headers.items()}, self.rfile.read(length)
                )
                status, body = receiver._answer(item)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        deadline = time.monotonic() + 10
        while True:
            try:
                self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # the port in TIME_WAIT after a close
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _answer(self, item: Received) -> tuple[int, bytes]:
        with self._lock:
            if self.mode != "up":
                self.refused += 1
                return int(self.mode), b'{"error": "unavailable"}'
            if self.check is not None and not self.check(item):
                self.rejected.append(item)
                return 401, b'{"error": "bad signature"}'
            self.received.append(item)
            return 200, self.answer

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
