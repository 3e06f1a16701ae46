"""The SP-API proxy: any SP-API path, with a gateway token (or an RDT handle) as the access token.

The gateway classifies the call (classify.py), checks it in enforce mode (enforce.py), forwards
it to the SP-API endpoint with the seller's access token (lwa.py), and records its events with
the HTTP status and Amazon's submission id. A refusal is SP-API-shaped (`{"errors": [...]}`, 403
or 429) and recorded with outcome `denied`; Amazon never sees the call. What the answer teaches
(report types, prices, document URLs, RDTs) is kept, and what must not reach the provider is
replaced (`read_answer`).
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import structlog
from aiohttp import web
from yarl import URL

from pipeline.contract import needs_marketplace
from pipeline.marketplaces import marketplace_id
from sources.gateway import classify
from sources.gateway.calls import Call, Operation, Planned, site_codes
from sources.gateway.credentials import Principal, token_hash
from sources.gateway.documents import RDT_PREFIX, Rdt, document_url, expire_rdts
from sources.gateway.enforce import Denial, decide
from sources.gateway.lwa import LwaError
from sources.gateway.prices import our_price
from sources.gateway.provider_events import ADAPTER, base_event, now_ms
from sources.gateway.replies import BAD_TOKEN, json_body, json_reply

if TYPE_CHECKING:
    from sources.gateway.app import Gateway

log = structlog.get_logger("sources.gateway.app")

#: Request headers passed to Amazon (besides x-amz* ones other than the access token).
_FORWARD = frozenset({"content-type", "accept", "user-agent", "x-amz-date"})
_RESPONSE_HEADERS = (
    "content-type",
    "x-amzn-requestid",
    "x-amzn-ratelimit-limit",
    "x-amzn-requestid",
)


async def handle_call(gw: Gateway, request: web.Request) -> web.StreamResponse:
    received = now_ms()
    token = request.headers.get("x-amz-access-token", "")
    rdt: Rdt | None = None
    problem: str | None
    if token.startswith(RDT_PREFIX):
        rdt = gw.rdts.get(token_hash(token))
        if rdt is None:
            return json_reply(403, BAD_TOKEN)
        principal = rdt.principal
        problem = gw.store.credential_problem(principal.client_id)
        if problem is None and rdt.expires <= time.monotonic():
            problem = "the restricted data token has expired"
    else:
        holder = gw.store.token_holder(token) if token else None
        if holder is None:
            gw.tally("unknown_token")
            return json_reply(403, BAD_TOKEN)
        principal, problem = holder
    body = await request.read()
    call = Call(
        method=request.method,
        path=request.path,
        query={k: request.query.getall(k) for k in request.query},
        body=json_body(body),
        approval_id=request.headers.get("x-pw-approval-id") or None,
    )
    op = classify.plan(call, gw.memory)
    call_id = f"gw-{uuid.uuid4().hex}"
    events = [
        call_event(gw, principal, request, received, token, call, op, p, call_id)
        for p in op.planned
    ]

    denial: Denial | None = None
    if problem is not None:
        denial = Denial(403, "Unauthorized", problem)
    elif not gw.budget.take(principal.provider_id) and gw.config.enforce:
        denial = Denial(
            429, "QuotaExceeded", f"provider {principal.provider_id} is over its call budget"
        )
    elif gw.config.enforce:
        denial = await judge(gw, principal, call, op, events)
    if denial is not None:
        for event in events:
            event["outcome"] = "denied"
            event["origin"]["status"] = denial.status
            event["origin"]["reason"] = denial.reason[:1000]
        await gw.record(events, always=True)
        gw.tally(f"denied_{denial.status}")
        return json_reply(denial.status, denial.body())

    try:
        status, headers, raw = await forward(gw, request, body, op, rdt)
    except LwaError as exc:
        log.error("gateway.seller_token_failed", error=str(exc))
        status, headers, raw = (
            503,
            {},
            orjson.dumps(
                {
                    "errors": [
                        {
                            "code": "ServiceUnavailable",
                            "message": "The gateway could not get the seller's access token.",
                            "details": "",
                        }
                    ]
                }
            ),
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.error("gateway.upstream_failed", error=str(exc))
        status, headers, raw = (
            502,
            {},
            orjson.dumps(
                {
                    "errors": [
                        {
                            "code": "InternalFailure",
                            "message": "The gateway could not reach the SP-API endpoint.",
                            "details": "",
                        }
                    ]
                }
            ),
        )
    answer = json_body(raw)
    raw = read_answer(gw, principal, call, op, status, answer, raw)
    submission = classify.submission_id(op.name, answer)
    failed = classify.failed(op.name, status, answer)
    for event, planned in zip(events, op.planned, strict=True):
        event["outcome"] = "failure" if failed else "success"
        event["origin"]["status"] = status
        if submission:
            event["origin"]["submission_id"] = submission
        request_id = headers.get("x-amzn-requestid")
        if request_id:
            event["origin"]["request_id"] = request_id[:128]
        if (
            not failed
            and planned.new_price is not None
            and planned.sku
            and event.get("marketplace")
        ):
            gw.store.remember_price(planned.sku, event["marketplace"], planned.new_price)
    await gw.record(events)
    gw.tally(f"forwarded_{status // 100}xx")
    response = web.Response(status=status, body=raw)
    for name in _RESPONSE_HEADERS:
        if name in headers:
            response.headers[name] = headers[name]
    return response


def call_event(
    gw: Gateway,
    principal: Principal,
    request: web.Request,
    received: int,
    token: str,
    call: Call,
    op: Operation,
    planned: Planned,
    call_id: str,
) -> dict[str, Any]:
    event = base_event(gw, principal, request, received, token)
    event["event_id"] = call_id + planned.suffix
    event["action"] = planned.action
    event["operation"] = op.name[:128]
    known = [s for s in planned.marketplaces if s != "?"]
    site = known[0] if known else None
    if site is None and needs_marketplace(planned.action):
        site = gw.default_site
    if site is not None:
        event["marketplace"] = site
    if planned.resource:
        event["resource"] = {k: v[:1024] for k, v in planned.resource.items() if v}
    if planned.changes:
        event["changes"] = planned.changes
    if planned.amount:
        event["amount"] = planned.amount
    if call.approval_id:
        event["approval_id"] = call.approval_id[:128]
    origin: dict[str, Any] = {"adapter": ADAPTER, "method": call.method, "path": call.path[:512]}
    origin.update(planned.origin)
    if "?" in planned.marketplaces:
        origin["marketplace_ids"] = ",".join(call.marketplace_ids())[:256]
    event["origin"] = origin
    return event


async def judge(
    gw: Gateway, principal: Principal, call: Call, op: Operation, events: list[dict[str, Any]]
) -> Denial | None:
    if gw.view is None:
        return Denial(403, "Unauthorized", "enforce mode without the ledger: no grant is known")
    auth = gw.view.state
    for event, planned in zip(events, op.planned, strict=True):
        old = planned.old_price
        if (
            planned.action == "listing.price_change"
            and old is None
            and planned.new_price is not None
        ):
            old = await lookup_price(gw, call, planned)
            if old is not None:
                planned.old_price = old
                for change in event.get("changes", []):
                    if change["field"] == "price":
                        change["old"] = old
                event["origin"]["old_price_from"] = "amazon"
        denial = decide(
            auth,
            event,
            sites=planned.marketplaces,
            sku=planned.sku,
            old_price=planned.old_price,
            new_price=planned.new_price,
            default_max_pct=gw.config.max_price_change_pct,
        )
        if denial is not None:
            return denial
    return None


async def lookup_price(gw: Gateway, call: Call, planned: Planned) -> str | None:
    """The listing's current price, read from Amazon with the seller's token (enforce mode)."""
    if not gw.config.price_lookup or not planned.sku or not planned.marketplaces:
        return None
    site = planned.marketplaces[0]
    seller_id = call.path.split("/")[4] if call.path.startswith("/listings/") else None
    if site == "?" or seller_id is None:
        return None
    url = URL(f"{gw.config.upstream}/listings/2021-08-01/items/{seller_id}/") / planned.sku
    url = url.with_query(marketplaceIds=marketplace_id(site), includedData="attributes")
    try:
        token = await gw.seller.get()
        async with gw.session.get(url, headers={"x-amz-access-token": token}) as response:
            if response.status != 200:
                return None
            doc = orjson.loads(await response.read())
    except (aiohttp.ClientError, TimeoutError, LwaError, orjson.JSONDecodeError):
        return None
    attributes = doc.get("attributes") if isinstance(doc, dict) else None
    if not isinstance(attributes, dict):
        return None
    price = our_price(attributes.get("purchasable_offer"), site)
    if price is not None:
        gw.store.remember_price(planned.sku, site, price)
    return price


async def forward(
    gw: Gateway, request: web.Request, body: bytes, op: Operation, rdt: Rdt | None
) -> tuple[int, dict[str, str], bytes]:
    headers = {
        k: v
        for k, v in request.headers.items()
        if k.lower() in _FORWARD
        or (k.lower().startswith("x-amz") and k.lower() != "x-amz-access-token")
    }
    headers.update(
        {k: v for k, v in request.headers.items() if k.lower().endswith("digitalsignature")}
    )
    url = URL(gw.config.upstream + request.raw_path, encoded=True)
    for attempt in (1, 2):
        headers["x-amz-access-token"] = rdt.token if rdt else await gw.seller.get(op.upstream_scope)
        async with gw.session.request(
            request.method,
            url,
            data=body or None,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=60),
        ) as response:
            raw = await response.read()
            status = response.status
            out = {k.lower(): v for k, v in response.headers.items()}
        if status in (401, 403) and rdt is None and attempt == 1 and b"expired" in raw.lower():
            gw.seller.forget(op.upstream_scope)  # Amazon says the cached token expired early
            continue
        break
    return status, out, raw


def read_answer(
    gw: Gateway,
    principal: Principal,
    call: Call,
    op: Operation,
    status: int,
    answer: Any,
    raw: bytes,
) -> bytes:
    if status >= 400 or not isinstance(answer, dict):
        return raw
    name = op.name
    changed = False
    if name == "createReport" and isinstance(answer.get("reportId"), str):
        body = call.body if isinstance(call.body, dict) else {}
        if isinstance(body.get("reportType"), str):
            gw.store.remember_report(answer["reportId"], body["reportType"])
    elif name == "getReport":
        remember_report(gw, answer)
    elif name == "getReports" and isinstance(answer.get("reports"), list):
        for report in answer["reports"]:
            remember_report(gw, report)
    elif name in ("createFeedDocument", "getFeedDocument", "getReportDocument"):
        url = answer.get("url")
        ident = answer.get("feedDocumentId") or answer.get("reportDocumentId")
        if isinstance(url, str) and isinstance(ident, str):
            kind = {
                "createFeedDocument": "feed",
                "getFeedDocument": "feed_result",
                "getReportDocument": "report",
            }[name]
            answer["url"] = document_url(gw, kind, url, ident)
            changed = True
    elif name == "createRestrictedDataToken" and isinstance(answer.get("restrictedDataToken"), str):
        expires_in = answer.get("expiresIn", 3600)
        seconds = float(expires_in) if isinstance(expires_in, (int, float)) else 3600.0
        handle = RDT_PREFIX + secrets.token_urlsafe(32)
        gw.rdts[token_hash(handle)] = Rdt(
            answer["restrictedDataToken"], principal, time.monotonic() + seconds
        )
        expire_rdts(gw)
        answer["restrictedDataToken"] = handle
        changed = True
    elif name == "getListingsItem":
        attributes = answer.get("attributes")
        sku = answer.get("sku")
        sites = [s for s in site_codes(call.marketplace_ids()) if s != "?"]
        if isinstance(attributes, dict) and isinstance(sku, str) and sites:
            price = our_price(attributes.get("purchasable_offer"), sites[0])
            if price is not None:
                gw.store.remember_price(sku, sites[0], price)
    return orjson.dumps(answer) if changed else raw


def remember_report(gw: Gateway, report: Any) -> None:
    if not isinstance(report, dict) or not isinstance(report.get("reportType"), str):
        return
    for key in ("reportId", "reportDocumentId"):
        if isinstance(report.get(key), str):
            gw.store.remember_report(report[key], report["reportType"])
