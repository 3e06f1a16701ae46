"""One seller account's poll: listings, payment methods, payouts and transactions, diffed into events.

The first poll of a site takes a baseline (every listing, payment method, payout and transaction
as it is) and reports nothing: there is nothing to compare with. Every later poll reports what
changed since. A poll's events are sent through `emit` (acknowledged by Kafka) before its
snapshots and cursors are saved: if the process dies in between, the next poll finds the same
differences and sends the same event ids again (the ledger stores them once).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from pipeline.event import Rejected, format_ms, timestamp, timestamp_ms
from pipeline.marketplaces import marketplace_id, site_code
from sources.gateway.prices import decimal_text, our_price
from sources.polling.client import SpApi, SpApiError
from sources.polling.config import PAYMENT_METHOD_SITES, PollConfig
from sources.polling.store import Snapshots

log = structlog.get_logger(__name__)

Emit = Callable[[list[dict[str, Any]]], Awaitable[None]]
ADAPTER = "sp-api-poller"
ACTOR = {"type": "amazon", "principal_id": "sp-api-poller"}
LISTINGS = "/listings/2021-08-01/items"
#: Attributes read as price and quantity, not compared as "other attributes".
OWN_FIELDS = frozenset({"purchasable_offer", "fulfillment_availability"})
MAX_PAGES = 500


@dataclass
class Account:
    account_id: str
    seller_id: str
    sites: list[str]


class Poller:
    def __init__(
        self, account: Account, api: SpApi, store: Snapshots, emit: Emit, config: PollConfig
    ) -> None:
        self.account = account
        self.api = api
        self.store = store
        self.emit = emit
        self.config = config
        self.counts: dict[str, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Amazon or Kafka away: the next poll tries again
                self.counts["errors"] = self.counts.get("errors", 0) + 1
                log.warning("polling.failed", account=self.account.account_id, error=str(exc)[:500])
            wait = max(1.0, self.config.interval_seconds - (time.monotonic() - started))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def poll_once(self) -> list[dict[str, Any]]:
        """Poll everything once; the events sent (after Kafka acknowledged them)."""
        now_ms = time.time_ns() // 1_000_000
        events: list[dict[str, Any]] = []
        saves: list[tuple[str, str, Any]] = []
        cursors: dict[str, str] = {}
        for site in self.account.sites:
            if self.config.listings:
                await self._listings(site, now_ms, events, saves, cursors)
            if self.config.payment_methods and site in PAYMENT_METHOD_SITES:
                await self._payment_methods(site, now_ms, events, saves)
            if self.config.funds:
                await self._payouts(site, now_ms, events, saves, cursors)
                await self._transactions(site, now_ms, events, saves, cursors)
        if events:
            await self.emit(events)
        self.store.save(self.account.account_id, saves, cursors)
        self.counts["polls"] = self.counts.get("polls", 0) + 1
        self.counts["events"] = self.counts.get("events", 0) + len(events)
        return events

    # -- events --------------------------------------------------------------------------------

    def _event(
        self,
        action: str,
        site: str | None,
        when: str | None,
        now_ms: int,
        operation: str,
        resource: dict[str, str],
        changes: list[dict[str, Any]] | None = None,
        **origin: Any,
    ) -> dict[str, Any]:
        occurred = format_ms(now_ms)
        if when:
            with contextlib.suppress(Rejected):
                occurred = timestamp(when, "lastUpdatedDate")
        basis = orjson.dumps(
            [self.account.account_id, action, site, resource, changes, origin.get("basis")],
            option=orjson.OPT_SORT_KEYS,
        )
        origin.pop("basis", None)
        event: dict[str, Any] = {
            "event_id": f"amzn-p-{hashlib.sha256(basis).hexdigest()[:40]}",
            "occurred_at": occurred,
            "account_id": self.account.account_id,
            "actor": dict(ACTOR),
            "action": action,
            "operation": operation,
            "resource": {k: v[:1024] for k, v in resource.items() if v},
            "origin": {
                "adapter": ADAPTER,
                "polled_at": format_ms(now_ms),
                **{k: v for k, v in origin.items() if v is not None},
            },
        }
        if site:
            event["marketplace"] = site
        if changes:
            event["changes"] = changes
        return event

    # -- listings ------------------------------------------------------------------------------

    async def _listings(
        self,
        site: str,
        now_ms: int,
        events: list[dict[str, Any]],
        saves: list[tuple[str, str, Any]],
        cursors: dict[str, str],
    ) -> None:
        account = self.account.account_id
        name = f"listings:{site}"
        last = self.store.cursor(account, name)
        baseline = last is None
        since = (
            None
            if baseline
            else format_ms(int(last or 0) - int(self.config.overlap_seconds * 1000))
        )
        skus = await self._search(site, since)
        known = set(self.store.keys(account, "listing"))
        for sku in skus:
            key = f"{sku}|{site}"
            item = await self.api.get(
                "getListingsItem",
                f"{LISTINGS}/{self.account.seller_id}/{_quote(sku)}",
                {
                    "marketplaceIds": marketplace_id(site),
                    "includedData": "summaries,attributes,offers,fulfillmentAvailability",
                },
                missing_ok=True,
            )
            old = self.store.get(account, "listing", key)
            if item is None:
                if old is not None and old.get("status") != "DELETED":
                    events.append(
                        self._listing_event(
                            "listing.status_change",
                            site,
                            sku,
                            old,
                            now_ms,
                            None,
                            [{"field": "status", "old": old.get("status"), "new": "DELETED"}],
                        )
                    )
                    saves.append(("listing", key, {**old, "status": "DELETED"}))
                continue
            snap = snapshot(item, site)
            saves.append(("listing", key, snap))
            if baseline:
                continue
            if old is None:
                if key not in known:
                    events.append(
                        self._listing_event(
                            "listing.status_change",
                            site,
                            sku,
                            snap,
                            now_ms,
                            snap.get("created"),
                            [{"field": "status", "old": None, "new": snap.get("status")}],
                            created=True,
                        )
                    )
                continue
            events.extend(self._diff(site, sku, old, snap, now_ms, int(last or 0)))
        cursors[name] = str(now_ms)

    async def _search(self, site: str, since: str | None) -> list[str]:
        skus: list[str] = []
        token = None
        for _ in range(MAX_PAGES):
            params = {
                "marketplaceIds": marketplace_id(site),
                "includedData": "summaries",
                "pageSize": 20,
                "lastUpdatedAfter": since,
                "pageToken": token,
            }
            page = await self.api.get(
                "searchListingsItems", f"{LISTINGS}/{self.account.seller_id}", params
            )
            for item in (page or {}).get("items") or []:
                if (
                    isinstance(item, dict)
                    and isinstance(item.get("sku"), str)
                    and item["sku"] not in skus
                ):
                    skus.append(item["sku"])
            token = ((page or {}).get("pagination") or {}).get("nextToken")
            if not token:
                break
        return skus

    def _diff(
        self,
        site: str,
        sku: str,
        old: dict[str, Any],
        new: dict[str, Any],
        now_ms: int,
        last_poll_ms: int,
    ) -> list[dict[str, Any]]:
        """The listing's differences, dated by its last update when that falls after the last
        poll (else by this poll: a change a stale date cannot have happened at)."""
        out = []
        when = new.get("updated")
        try:
            if (
                when is None
                or timestamp_ms(when, "lastUpdatedDate")
                <= last_poll_ms - self.config.overlap_seconds * 1000
            ):
                when = None
        except Rejected:
            when = None
        for field, action in (
            ("price", "listing.price_observed"),
            ("quantity", "inventory.quantity_observed"),
            ("status", "listing.status_change"),
        ):
            if old.get(field) != new.get(field):
                out.append(
                    self._listing_event(
                        action,
                        site,
                        sku,
                        new,
                        now_ms,
                        when,
                        [{"field": field, "old": old.get(field), "new": new.get(field)}],
                    )
                )
        before, after = old.get("attributes", {}), new.get("attributes", {})
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        if changed:
            changes = [
                {
                    "field": k[:128],
                    "old": None,
                    "new": "added"
                    if k not in before
                    else "removed"
                    if k not in after
                    else "changed",
                }
                for k in changed[:200]
            ]
            out.append(
                self._listing_event(
                    "listing.attributes_observed", site, sku, new, now_ms, when, changes
                )
            )
        return out

    def _listing_event(
        self,
        action: str,
        site: str,
        sku: str,
        snap: dict[str, Any],
        now_ms: int,
        when: str | None,
        changes: list[dict[str, Any]],
        created: bool | None = None,
    ) -> dict[str, Any]:
        return self._event(
            action,
            site,
            when,
            now_ms,
            "getListingsItem",
            {"type": "listing", "id": sku},
            changes,
            asin=snap.get("asin"),
            last_updated=snap.get("updated"),
            created=created,
            currency=snap.get("currency"),
            basis=[snap.get("updated"), snap.get("status")],
        )

    # -- payment methods -----------------------------------------------------------------------

    async def _payment_methods(
        self,
        site: str,
        now_ms: int,
        events: list[dict[str, Any]],
        saves: list[tuple[str, str, Any]],
    ) -> None:
        answer = await self.api.get(
            "getPaymentMethods",
            "/finances/transfers/2024-06-01/paymentMethods",
            {"marketplaceId": marketplace_id(site)},
        )
        methods: dict[str, dict[str, Any]] = {}
        for method in (answer or {}).get("paymentMethods") or []:
            if isinstance(method, dict) and isinstance(method.get("paymentMethodId"), str):
                methods[method["paymentMethodId"]] = {
                    "type": str(method.get("paymentMethodType", "?"))[:32],
                    "tail": str(method.get("tail", ""))[:8],
                    "default": method.get("assignmentType") == "DEFAULT_DEPOSIT_METHOD",
                    "country": str(method.get("countryCode", ""))[:4],
                }
        old = self.store.get(self.account.account_id, "payment_methods", site)
        saves.append(("payment_methods", site, methods))
        if old is None:
            return
        for ident in sorted(set(old) | set(methods)):
            before, after = old.get(ident), methods.get(ident)
            if before == after:
                continue
            change = "added" if before is None else "removed" if after is None else "changed"
            # masked by the ingest agent (funds.bank_account_change): the tails, never full numbers
            changes = [
                {
                    "field": "bank_account",
                    "old": f"***{before['tail']}" if before else None,
                    "new": f"***{after['tail']}" if after else None,
                }
            ]
            if before and after and before.get("default") != after.get("default"):
                changes.append(
                    {
                        "field": "default_deposit_method",
                        "old": before.get("default"),
                        "new": after.get("default"),
                    }
                )
            kind = (after or before or {}).get("type", "?")
            events.append(
                self._event(
                    "funds.bank_account_change",
                    site,
                    None,
                    now_ms,
                    "getPaymentMethods",
                    {"type": "payment_method", "id": ident},
                    changes,
                    payment_method_type=kind,
                    change=change,
                    basis=[before, after],
                )
            )

    # -- funds ---------------------------------------------------------------------------------

    async def _payouts(
        self,
        site: str,
        now_ms: int,
        events: list[dict[str, Any]],
        saves: list[tuple[str, str, Any]],
        cursors: dict[str, str],
    ) -> None:
        account, name = self.account.account_id, f"payouts:{site}"
        baseline = self.store.cursor(account, name) is None
        after = format_ms(now_ms - self.config.payouts_days * 86_400_000)
        token = None
        for _ in range(MAX_PAGES):
            page = await self.api.get(
                "listPayouts",
                "/finances/transfers/2024-06-01/payouts",
                {"marketplaceIds": marketplace_id(site), "createdAfter": after, "nextToken": token},
            )
            for payout in (page or {}).get("payouts") or []:
                if not isinstance(payout, dict) or not isinstance(payout.get("id"), str):
                    continue
                ident = payout["id"][:256]
                if self.store.get(account, "payout", ident) is not None or any(
                    s[1] == "payout" and s[2] == ident for s in saves
                ):
                    continue
                saves.append(("payout", ident, {"status": payout.get("currentStatus")}))
                if baseline:
                    continue
                event = self._event(
                    "funds.payout_observed",
                    site_code(payout.get("partnerMetadata", {}).get("marketplaceId")) or site,
                    payout.get("creationDate"),
                    now_ms,
                    "listPayouts",
                    {"type": "payout", "id": ident},
                    payout_type=payout.get("type"),
                    status=payout.get("currentStatus"),
                    account_tail=None,
                    basis=[ident],
                )
                amount = _amount(payout.get("amount"))
                if amount:
                    event["amount"] = amount
                events.append(event)
            token = (page or {}).get("nextToken")
            if not token:
                break
        cursors[name] = str(now_ms)

    async def _transactions(
        self,
        site: str,
        now_ms: int,
        events: list[dict[str, Any]],
        saves: list[tuple[str, str, Any]],
        cursors: dict[str, str],
    ) -> None:
        account, name = self.account.account_id, f"transactions:{site}"
        last = self.store.cursor(account, name)
        baseline = last is None
        since = (
            format_ms(now_ms - self.config.transactions_days * 86_400_000)
            if baseline
            else format_ms(int(last or 0) - int(self.config.overlap_seconds * 1000))
        )
        token = None
        for _ in range(MAX_PAGES):
            page = await self.api.get(
                "listTransactions",
                "/finances/2024-06-19/transactions",
                {"postedAfter": since, "marketplaceId": marketplace_id(site), "nextToken": token},
            )
            body = (page or {}).get("payload", page) or {}
            for tx in body.get("transactions") or []:
                if not isinstance(tx, dict):
                    continue
                ident = str(
                    tx.get("transactionId")
                    or hashlib.sha256(orjson.dumps(tx, option=orjson.OPT_SORT_KEYS)).hexdigest()[
                        :32
                    ]
                )[:256]
                if self.store.get(account, "transaction", ident) is not None or any(
                    s[1] == "transaction" and s[2] == ident for s in saves
                ):
                    continue
                saves.append(("transaction", ident, {"posted": tx.get("postedDate")}))
                if baseline:
                    continue
                tx_site = (
                    site_code((tx.get("sellingPartnerMetadata") or {}).get("marketplaceId")) or site
                )
                event = self._event(
                    "funds.transaction_posted",
                    tx_site,
                    tx.get("postedDate"),
                    now_ms,
                    "listTransactions",
                    {"type": "transaction", "id": ident},
                    transaction_type=str(tx.get("transactionType", ""))[:64] or None,
                    transaction_status=str(tx.get("transactionStatus", ""))[:32] or None,
                    basis=[ident],
                )
                amount = _amount(tx.get("totalAmount"))
                if amount:
                    event["amount"] = amount
                events.append(event)
            token = body.get("nextToken")
            if not token:
                break
        cursors[name] = str(now_ms)


def snapshot(item: dict[str, Any], site: str) -> dict[str, Any]:
    """What a listing looks like, for diffing: price, quantity, status, attribute digests."""
    found = item.get("attributes")
    attributes: dict[str, Any] = found if isinstance(found, dict) else {}
    price = our_price(attributes.get("purchasable_offer"), site)
    currency = None
    for offer in item.get("offers") or []:
        if (
            isinstance(offer, dict)
            and site_code(offer.get("marketplaceId")) == site
            and offer.get("offerType", "B2C") == "B2C"
        ):
            money = offer.get("price") or {}
            price = price or decimal_text(money.get("amount"))
            currency = (
                money.get("currencyCode") if isinstance(money.get("currencyCode"), str) else None
            )
    quantity = None
    for entry in (
        item.get("fulfillmentAvailability") or attributes.get("fulfillment_availability") or []
    ):
        if (
            isinstance(entry, dict)
            and entry.get("fulfillment_channel_code", entry.get("fulfillmentChannelCode"))
            == "DEFAULT"
        ):
            value = entry.get("quantity")
            quantity = value if isinstance(value, int) and not isinstance(value, bool) else None
    summary = next(
        (
            s
            for s in item.get("summaries") or []
            if isinstance(s, dict) and site_code(s.get("marketplaceId")) == site
        ),
        {},
    )
    status = summary.get("status")
    status_text = (
        ",".join(sorted(str(s) for s in status))
        if isinstance(status, list)
        else (str(status) if status else None)
    )
    digests = {
        str(name)[:128]: hashlib.sha256(
            orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        ).hexdigest()[:16]
        for name, value in attributes.items()
        if name not in OWN_FIELDS
    }
    return {
        "price": price,
        "quantity": quantity,
        "status": status_text,
        "attributes": digests,
        "currency": currency,
        "asin": summary.get("asin") if isinstance(summary.get("asin"), str) else None,
        "updated": summary.get("lastUpdatedDate")
        if isinstance(summary.get("lastUpdatedDate"), str)
        else None,
        "created": summary.get("createdDate")
        if isinstance(summary.get("createdDate"), str)
        else None,
    }


def _amount(money: Any) -> dict[str, str] | None:
    if not isinstance(money, dict):
        return None
    value = decimal_text(money.get("currencyAmount", money.get("amount")))
    currency = money.get("currencyCode")
    if (
        value is None
        or not isinstance(currency, str)
        or len(currency) != 3
        or not currency.isupper()
    ):
        return None
    return {"value": value, "currency": currency}


def _quote(sku: str) -> str:
    from urllib.parse import quote

    return quote(sku, safe="")


async def poll_account(
    api: SpApi, account: Account, store: Snapshots, emit: Emit, config: PollConfig
) -> list[dict[str, Any]]:
    try:
        return await Poller(account, api, store, emit, config).poll_once()
    except SpApiError as exc:
        log.warning(
            "polling.sp_api_error", account=account.account_id, status=exc.status, error=str(exc)
        )
        raise
