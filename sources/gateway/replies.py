"""The gateway's answers in the shapes its callers expect (SP-API errors, LWA errors), and JSON bodies."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

BAD_TOKEN = {
    "errors": [
        {
            "code": "Unauthorized",
            "message": "Access to requested resource is denied.",
            "details": "The access token you provided is revoked, malformed or invalid.",
        }
    ]
}


def json_reply(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def lwa_error(status: int, error: str, description: str) -> web.Response:
    return json_reply(status, {"error": error, "error_description": description})


def json_body(raw: bytes) -> Any:
    if not raw or raw[:1] not in (b"{", b"[", b" ", b"\n", b"\t", b"\r"):
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
