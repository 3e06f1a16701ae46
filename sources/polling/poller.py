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
from typing import Any

import orjson
import structlog

from pipeline.event import Rejected, format_ms, timestamp_ms
from pipeline.marketplaces import marketplace_id, site_code
from sources.gateway.prices import decimal_text, our_price
from sources.polling.client import SpApi, SpApiError
from sources.polling.config import PAYMENT_METHOD_SITES, PollConfig
from sources.polling.funds import FundsPolls
from sources.polling.poll_events import ACTOR, ADAPTER, MAX_PAGES, Account, Emit
from sources.polling.store import Snapshots

log = structlog.get_logger(__name__)

__all__ = ["ACTOR", "ADAPTER", "Account", "Emit", "Poller", "poll_account", "snapshot"]

LISTINGS = "/listings/2021-08-01/items"
#: Attributes read as price and quantity, not compared as "other attributes".
OWN_FIELDS = frozenset({"purchasable_offer", "fulfillment_availability"})


class Poller(FundsPolls):
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
