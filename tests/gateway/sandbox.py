"""A local SP-API upstream that answers the way Amazon's sandbox does, for the gateway's tests.

Amazon's API models carry, on each operation's responses, static sandbox pairs
(`x-amzn-api-sandbox: {"static": [{"request": {"parameters": {...}}, "response": {...}}]}`): a
request whose parameters match gets that response with that status. This server loads such
definitions (the project's own fixtures in tests/gateway/fixtures/, written in the same form;
or Amazon's models from ../shared/amazon-models when a test asks) and answers from them, the
most specific match first (the entry constraining the most parameters; an entry without
constraints matches everything). It also plays the parts around the API that tests need:
- `POST /auth/o2/token`: LWA for the seller app only (its client id, secret, refresh token);
- every API call must carry an access token it issued, or an RDT it handed out;
- document URLs (`url` in answers) point at its own `/_s3/...`, a stand-in for pre-signed S3
  URLs: PUT stores a body, GET returns it (or the report content a test put there);
- every request is logged (`requests`), so a test can tell what reached "Amazon".
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from pipeline.config import REPO_ROOT

FIXTURES = Path(__file__).parent / "fixtures"
#: Amazon's models: ../shared/amazon-models beside the repository (PW_AMAZON_MODELS overrides,
#: e.g. for a git worktree that lives elsewhere).
MODELS = (
    Path(os.environ.get("PW_AMAZON_MODELS") or REPO_ROOT.parent / "shared" / "amazon-models")
    / "models"
)
NO_MATCH = {
    "errors": [
        {"code": "InvalidInput", "message": "Could not match input arguments", "details": ""}
    ]
}


@dataclass
class Entry:
    status: int
    parameters: dict[str, Any]
    response: Any

    @property
    def specificity(self) -> int:
        return sum(1 for p in self.parameters.values() if isinstance(p, dict) and "value" in p)


@dataclass
class Operation:
    name: str
    method: str
    template: str
    regex: re.Pattern[str]
    where: dict[str, str]  # parameter name -> in (path, query, body, header)
    entries: list[Entry] = field(default_factory=list)


def load_definitions(paths: list[Path]) -> list[Operation]:
    """Operations with their sandbox entries, from swagger-2 documents (models or fixtures)."""
    operations = []
    for path in paths:
        doc = orjson.loads(path.read_bytes())
        for template, item in doc["paths"].items():
            shared = [p for p in item.get("parameters", []) if isinstance(p, dict)]
            for method, op in item.items():
                if method not in ("get", "put", "post", "patch", "delete") or not isinstance(
                    op, dict
                ):
                    continue
                params = shared + [p for p in op.get("parameters", []) if isinstance(p, dict)]
                where = {p["name"]: p["in"] for p in params if "name" in p and "in" in p}
                regex = re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "/?")
                operation = Operation(
                    op.get("operationId", template), method.upper(), template, regex, where
                )
                for code, response in op.get("responses", {}).items():
                    for pair in response.get("x-amzn-api-sandbox", {}).get("static", []):
                        operation.entries.append(
                            Entry(
                                int(code),
                                pair.get("request", {}).get("parameters", {}),
                                pair.get("response"),
                            )
                        )
                operations.append(operation)
    return operations


def _same(expected: Any, given: Any) -> bool:
    if isinstance(expected, list):
        if not isinstance(given, list):
            given = [given]
        return [str(x) for x in expected] == [str(x) for x in given]
    if isinstance(expected, dict):
        return expected == given
    if isinstance(expected, bool):
        return str(expected).lower() == str(given).lower()
    return str(expected) == str(given)


def match(operation: Operation, values: dict[str, Any]) -> Entry | None:
    """The most specific entry whose constrained parameters all equal the request's."""
    best: Entry | None = None
    for entry in operation.entries:
        ok = True
        for name, rule in entry.parameters.items():
            if not isinstance(rule, dict) or "value" not in rule:
                continue
            if name not in values or not _same(rule["value"], values[name]):
                ok = False
                break
        if ok and (best is None or entry.specificity > best.specificity):
            best = entry
    return best


@dataclass
class Logged:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    token: str


class Sandbox:
    """The upstream: an aiohttp app; `start()` serves it over TLS on 127.0.0.1 in a thread."""

    def __init__(self, operations: list[Operation], seller: dict[str, str]) -> None:
        self.operations = operations
        self.seller = seller
        self.tokens: set[str] = set()
        self.token_requests = 0
        self.requests: list[Logged] = []
        self.documents: dict[str, bytes] = {}
        self.base_url = ""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    # -- serving -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/auth/o2/token", self.lwa)
        app.router.add_route("*", "/_s3/{key}", self.s3)
        app.router.add_route("*", "/{tail:.*}", self.api)
        return app

    def start(self, ssl_context: Any, port: int) -> Sandbox:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            runner = web.AppRunner(self.app(), access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(
                web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
            )
            self._runner = runner
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self.base_url = f"https://127.0.0.1:{port}"
        self._thread = threading.Thread(target=run, daemon=True, name="sandbox")
        self._thread.start()
        assert ready.wait(30), "the sandbox did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def calls(self, operation: str | None = None) -> list[Logged]:
        """Logged API requests (of one operation name)."""
        if operation is None:
            return list(self.requests)
        out = []
        for logged in self.requests:
            found = self._operation(logged.method, logged.path)
            if found is not None and found[0].name == operation:
                out.append(logged)
        return out

    # -- handlers ------------------------------------------------------------------------------

    async def lwa(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.token_requests += 1
        if (
            form.get("client_id") != self.seller["client_id"]
            or form.get("client_secret") != self.seller["client_secret"]
        ):
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client authentication failed"},
                status=401,
            )
        if (
            form.get("grant_type") == "refresh_token"
            and form.get("refresh_token") != self.seller["refresh_token"]
        ):
            return web.json_response(
                {
                    "error": "invalid_grant",
                    "error_description": "The request has an invalid grant parameter : refresh_token",
                },
                status=400,
            )
        token = f"Atza|sandbox-seller-{secrets.token_hex(16)}"
        self.tokens.add(token)
        return web.json_response(
            {
                "access_token": token,
                "refresh_token": form.get("refresh_token"),
                "token_type": "bearer",
                "expires_in": 3600,
            }
        )

    async def s3(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if request.method == "PUT":
            self.documents[key] = await request.read()
            return web.Response(status=200)
        if request.method == "GET":
            content = self.documents.get(key)
            if content is None:
                return web.Response(status=404)
            return web.Response(body=content, content_type="text/plain")
        return web.Response(status=405)

    def _operation(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        candidates = []
        for operation in self.operations:
            if operation.method == method:
                found = operation.regex.fullmatch(path)
                if found:
                    # a literal path wins over a template (.../schedules vs .../{reportId})
                    candidates.append((operation.template.count("{"), operation, found.groupdict()))
        if not candidates:
            return None
        candidates.sort(key=lambda c: c[0])
        return candidates[0][1], candidates[0][2]

    async def api(self, request: web.Request) -> web.Response:
        body_raw = await request.read()
        try:
            body = orjson.loads(body_raw) if body_raw else None
        except orjson.JSONDecodeError:
            body = None
        token = request.headers.get("x-amz-access-token", "")
        query = {k: request.query.getall(k) for k in request.query}
        self.requests.append(Logged(request.method, request.path, query, body, token))
        if token not in self.tokens:
            return web.json_response(
                {
                    "errors": [
                        {
                            "code": "Unauthorized",
                            "message": "Access to requested resource is denied.",
                            "details": "The access token you provided is revoked, malformed or invalid.",
                        }
                    ]
                },
                status=403,
            )
        found = self._operation(request.method, request.path)
        if found is None:
            return web.json_response(
                {"errors": [{"code": "NotFound", "message": "Resource not found", "details": ""}]},
                status=404,
            )
        operation, values = found
        given: dict[str, Any] = dict(values)
        for name, items in query.items():
            given[name] = (
                [v for item in items for v in item.split(",")]
                if len(items) > 1 or "," in items[0]
                else items[0]
            )
        if body is not None:
            given["body"] = body
        for name, place in operation.where.items():
            if place == "header" and name in request.headers:
                given[name] = request.headers[name]
        entry = match(operation, given)
        if entry is None:
            return web.json_response(NO_MATCH, status=400)
        response = self._rewrite_urls(entry.response)
        if isinstance(response, dict) and isinstance(response.get("restrictedDataToken"), str):
            self.tokens.add(response["restrictedDataToken"])
        return web.Response(
            status=entry.status, body=orjson.dumps(response), content_type="application/json"
        )

    def _rewrite_urls(self, value: Any) -> Any:
        """`url` fields of answers: pre-signed URLs, here pointing at this server's S3 stand-in."""
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key == "url" and isinstance(item, str) and item.startswith("https://"):
                    name = re.sub(r"[^A-Za-z0-9._-]", "_", item.rsplit("/", 1)[-1]) or "document"
                    out[key] = f"{self.base_url}/_s3/{name}"
                else:
                    out[key] = self._rewrite_urls(item)
            return out
        if isinstance(value, list):
            return [self._rewrite_urls(v) for v in value]
        return value


def fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


def model_files() -> list[Path]:
    return sorted(MODELS.glob("*.json")) if MODELS.is_dir() else []
