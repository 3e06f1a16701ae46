"""A small Server-Sent Events reader (stdlib only), for `partnerwatch alerts tail` and the tests."""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None


class SseError(RuntimeError):
    """The server answered the stream request with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def open_stream(
    url: str, headers: dict[str, str] | None = None, timeout: float = 60.0
) -> http.client.HTTPResponse:
    """GET `url` as an event stream; SseError for a non-200 answer."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout
    )
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    conn.request("GET", path, headers={"Accept": "text/event-stream", **(headers or {})})
    response = conn.getresponse()
    if response.status != 200:
        body = response.read().decode(errors="replace")
        conn.close()
        raise SseError(response.status, body)
    return response


def events(response: http.client.HTTPResponse) -> Iterator[SseEvent]:
    """The events of an open stream until the server closes it (comments are skipped)."""
    event, ident = "message", None
    data: list[str] = []
    while True:
        raw = response.readline()
        if not raw:
            return
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data or event != "message":
                yield SseEvent(event, "\n".join(data), ident)
            event, data, ident = "message", [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            ident = value
