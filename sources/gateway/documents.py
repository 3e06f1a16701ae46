"""Documents and Restricted Data Tokens, handed out by the gateway in Amazon's place.

Feed and report documents move through pre-signed URLs, not the SP-API host: the gateway hands
out its own URL (`/_pw/documents/{handle}`) in their place, so a feed's content passes through
it (classify.py expands each JSON listings feed message) and a report download is seen. Handles
are random, single-purpose and live 5 minutes, like Amazon's URLs. A Restricted Data Token stays
here too: the principal gets a gateway handle (`RDT_PREFIX`) that works only through the gateway,
for that principal, while the RDT lives.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from yarl import URL

from sources.gateway.credentials import Principal

if TYPE_CHECKING:
    from sources.gateway.app import Gateway

RDT_PREFIX = "Atz.sprdt|pw."
DOCUMENT_SECONDS = 300.0


@dataclass
class Document:
    kind: str  # "feed" (upload) or "report" / "feed_result" (download)
    url: str
    document_id: str
    expires: float


@dataclass
class Rdt:
    token: str
    principal: Principal
    expires: float


def document_url(gw: Gateway, kind: str, url: str, document_id: str) -> str:
    now = time.monotonic()
    for key in [k for k, d in gw.documents.items() if d.expires <= now]:
        del gw.documents[key]
    handle = secrets.token_urlsafe(32)
    gw.documents[handle] = Document(kind, url, document_id, now + DOCUMENT_SECONDS)
    return f"{gw.config.base_url}/_pw/documents/{handle}"


def expire_rdts(gw: Gateway) -> None:
    now = time.monotonic()
    for key in [k for k, r in gw.rdts.items() if r.expires <= now]:
        del gw.rdts[key]


async def serve_document(gw: Gateway, request: web.Request) -> web.StreamResponse:
    document = gw.documents.get(request.match_info["handle"])
    if document is None or document.expires <= time.monotonic():
        return web.Response(
            status=403,
            text="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
            content_type="application/xml",
        )
    target = URL(document.url, encoded=True)
    if request.method == "PUT" and document.kind == "feed":
        content = await request.read()
        gw.memory.keep_feed(document.document_id, content)
        headers = {
            k: v for k, v in request.headers.items() if k.lower() in ("content-type", "content-md5")
        }
        async with gw.session.put(target, data=content, headers=headers) as uploaded:
            return web.Response(status=uploaded.status, body=await uploaded.read())
    if request.method == "GET" and document.kind in ("report", "feed_result"):
        async with gw.session.get(target) as upstream:
            streamed = web.StreamResponse(status=upstream.status)
            for name in ("content-type", "content-encoding", "content-length"):
                if name in upstream.headers:
                    streamed.headers[name] = upstream.headers[name]
            await streamed.prepare(request)
            async for chunk in upstream.content.iter_chunked(65536):
                await streamed.write(chunk)
            await streamed.write_eof()
            return streamed
    return web.Response(status=405)
