"""A simulated week in which every change goes through the gateway: no false reconciliation alert.

A seeded simulation of one seller account: a provider changes prices, quantities, titles,
deletes listings and submits feeds and reports, all through the gateway (its events as the
gateway makes them). Amazon applies each change up to three minutes later, sells stock, and moves
listings between BUYABLE and DISCOVERABLE by itself. It reports all of it the way it does:
notifications (built as Amazon's JSON, turned into events by sources/notifications) arrive late
(up to hours), repeated (the same notification again, or published again), out of order, and
some still show the old price because the patch was not applied yet; a poll every five minutes
reports what changed since the last one, dated by the listing's last update. Every event reaches
the detectors in arrival order, through the ledger's dedup, exactly as the worker runs them.

Measured: the false alert rate of `change_outside_gateway` (alerts per observed change), which
must be 0, and no other detector fires on Amazon's events either. A control week with a few
changes made around the gateway shows the same run finding each of them.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from detectors.run import new_state, observe
from pipeline.config import DetectionConfig
from pipeline.event import format_ms, normalize
from sources.notifications.events import Target, to_events
from sources.notifications.parse import parse

ACCOUNT = "A0001SELLER"
SELLER = "A1PWSELLERID"
START = 1_772_409_600_000  # 2026-03-02T00:00:00Z, a Monday
WEEK = 7 * 86_400_000
MIN = 60_000
SITES = {"DE": "A1PA6795UKMFR9", "FR": "A13V1IB3VIYZZH"}
PROVIDER = {"type": "provider", "provider_id": "prov-agency", "principal_id": "agency-bot"}
POLLER = {"type": "amazon", "principal_id": "sp-api-poller"}
GRANT = {
    "event_id": "seller-grant-1",
    "occurred_at": "2026-01-01T00:00:00Z",
    "account_id": ACCOUNT,
    "action": "permission.grant",
    "actor": {"type": "seller", "principal_id": "owner"},
    "grant": {
        "grant_id": "g-1",
        "provider_id": "prov-agency",
        "scopes": ["listing.*", "inventory.*", "report.request", "data.read"],
        "marketplaces": ["DE", "FR"],
        "max_price_change_pct": 60,
    },
}


#: MFN stock is the SKU's, shared by its listings in every site of the region.
STOCK: dict[str, int] = {}


@dataclass
class Listing:
    sku: str
    site: str
    asin: str
    price: float

    @property
    def quantity(self) -> int:
        return STOCK[self.sku]

    @quantity.setter
    def quantity(self, value: int) -> None:
        STOCK[self.sku] = value

    status: str = "BUYABLE,DISCOVERABLE"
    title: str = "item"
    updated: int = START
    polled: dict[str, Any] = field(default_factory=dict)


@dataclass
class Week:
    rng: random.Random
    arrivals: list[tuple[int, int, dict[str, Any]]] = field(
        default_factory=list
    )  # (arrival, order, event)
    observations: int = 0
    outside: list[str] = field(default_factory=list)  # SKU|site of changes made around the gateway
    order: int = 0

    def arrive(self, at: int, event: dict[str, Any]) -> None:
        self.order += 1
        self.arrivals.append((at, self.order, event))

    def notify(self, kind: str, at: int, payload: dict[str, Any], camel: bool = False) -> None:
        """Amazon sends a notification about `at`: late, sometimes twice, sometimes republished."""
        nid = str(uuid.UUID(int=self.rng.getrandbits(128)))
        if camel:
            doc = {
                "notificationVersion": "1.0",
                "notificationType": kind,
                "payloadVersion": "2020-09-04",
                "eventTime": format_ms(at),
                "payload": payload,
                "notificationMetadata": {
                    "applicationId": "amzn1.sellerapps.app.pw",
                    "subscriptionId": "s",
                    "publishTime": format_ms(at),
                    "notificationId": nid,
                },
            }
        else:
            doc = {
                "NotificationVersion": "1.0",
                "NotificationType": kind,
                "PayloadVersion": "1.0",
                "EventTime": format_ms(at),
                "Payload": payload,
                "NotificationMetadata": {
                    "ApplicationId": "amzn1.sellerapps.app.pw",
                    "SubscriptionId": "s",
                    "PublishTime": format_ms(at),
                    "NotificationId": nid,
                },
            }
        copies = 1 + (self.rng.random() < 0.15) + (self.rng.random() < 0.05)
        for copy in range(copies):
            delay = int(
                self.rng.choice(
                    [
                        self.rng.uniform(0.5, 90) * 1000,
                        self.rng.uniform(2, 60) * MIN,
                        self.rng.uniform(1, 8) * 60 * MIN,
                    ]
                )
            )
            sent = orjson.loads(orjson.dumps(doc))
            if copy:  # published again later: same notification, same id and content
                meta = sent.get("NotificationMetadata") or sent["notificationMetadata"]
                meta["PublishTime" if "PublishTime" in meta else "publishTime"] = format_ms(
                    at + delay
                )
            for event in to_events(parse(sent), Target(ACCOUNT, "DE"), at + delay):
                self.arrive(at + delay, event)
        self.observations += 1


def gateway_event(
    at: int,
    action: str,
    listing: Listing,
    changes: list[dict[str, Any]] | None,
    operation: str,
    submission: str,
    **origin: Any,
) -> dict[str, Any]:
    event = {
        "event_id": f"gw-{uuid.uuid4().hex}",
        "occurred_at": format_ms(at),
        "account_id": ACCOUNT,
        "actor": PROVIDER,
        "source": {"ip": "198.51.100.7", "user_agent": "python-sp-api"},
        "action": action,
        "operation": operation,
        "marketplace": listing.site,
        "resource": {"type": "listing", "id": listing.sku},
        "outcome": "success",
        "origin": {
            "adapter": "sp-api-gateway",
            "method": "PATCH",
            "status": 200,
            "submission_id": submission,
            **origin,
        },
    }
    if changes:
        event["changes"] = changes
    return event


def simulate(seed: int, outside_changes: int = 0) -> Week:
    rng = random.Random(seed)
    week = Week(rng)
    STOCK.clear()
    STOCK.update({f"SKU-{i:03d}": rng.randint(5, 80) for i in range(30)})
    listings = [
        Listing(f"SKU-{i:03d}", site, f"B0PW{i:06d}", round(rng.uniform(8, 80), 2))
        for i in range(30)
        for site in SITES
    ]
    live = {(x.sku, x.site): x for x in listings}
    pending: list[tuple[int, Any]] = []  # Amazon applies ACCEPTED changes a little later
    outside_at = sorted(rng.uniform(0.1, 0.9) * WEEK for _ in range(outside_changes))
    t = START
    next_poll = START + 5 * MIN
    polls_started = False
    while t < START + WEEK:
        t += int(rng.expovariate(1 / (12 * MIN)))
        # Amazon: apply what is due, sell, and report in a poll every five minutes
        for due, apply in [p for p in pending if p[0] <= t]:
            apply(due)
        pending = [p for p in pending if p[0] > t]
        while next_poll <= t:
            poll(week, list(live.values()), next_poll, baseline=not polls_started)
            polls_started = True
            next_poll += 5 * MIN
        alive = [x for x in live.values() if x.status != "DELETED"]
        if not alive:
            break
        listing = rng.choice(alive)
        if rng.random() < 0.2:  # a sale: Amazon lowers the MFN quantity
            if listing.quantity > 0:
                listing.quantity -= 1
                listing.updated = t
                week.notify(
                    "LISTINGS_ITEM_MFN_QUANTITY_CHANGE",
                    t,
                    {
                        "SellerId": SELLER,
                        "FulfillmentChannelCode": "DEFAULT",
                        "Sku": listing.sku,
                        "Quantity": listing.quantity,
                    },
                )
            continue
        if rng.random() < 0.03:  # Amazon moves a listing between BUYABLE and DISCOVERABLE by itself
            listing.status = (
                "DISCOVERABLE" if listing.status != "DISCOVERABLE" else "BUYABLE,DISCOVERABLE"
            )
            listing.updated = t
            week.notify(
                "LISTINGS_ITEM_STATUS_CHANGE",
                t,
                {
                    "SellerId": SELLER,
                    "MarketplaceId": SITES[listing.site],
                    "Asin": listing.asin,
                    "Sku": listing.sku,
                    "Status": listing.status.split(","),
                },
            )
            continue
        if outside_at and t >= outside_at[0]:  # someone in Seller Central, around the gateway
            outside_at.pop(0)
            week.outside.append(f"{listing.sku}|{listing.site}")
            new_price = round(listing.price * 0.3, 2)
            pending.append((t + 1000, _price_applier(week, listing, new_price, rng)))
            continue
        submission = uuid.uuid4().hex
        kind = rng.choices(
            ["price", "quantity", "title", "feed", "report", "delete"], [50, 25, 12, 6, 5, 2]
        )[0]
        if kind == "price":
            new_price = round(listing.price * rng.uniform(0.85, 1.15), 2)
            week.arrive(
                t,
                gateway_event(
                    t,
                    "listing.price_change",
                    listing,
                    [{"field": "price", "old": str(listing.price), "new": str(new_price)}],
                    "patchListingsItem",
                    submission,
                ),
            )
            if (
                rng.random() < 0.25
            ):  # Amazon reports the offer before the patch is applied: the old price
                week.notify(
                    "ANY_OFFER_CHANGED",
                    t + rng.randint(1000, 60_000),
                    _offer(listing, listing.price, rng),
                )
            pending.append(
                (t + rng.randint(5_000, 180_000), _price_applier(week, listing, new_price, rng))
            )
        elif kind == "quantity":
            quantity = rng.randint(0, 120)
            week.arrive(
                t,
                gateway_event(
                    t,
                    "inventory.update",
                    listing,
                    [{"field": "quantity", "old": None, "new": quantity}],
                    "patchListingsItem",
                    submission,
                ),
            )
            pending.append(
                (t + rng.randint(5_000, 180_000), _quantity_applier(week, listing, quantity))
            )
        elif kind == "title":
            week.arrive(
                t,
                gateway_event(
                    t,
                    "listing.update",
                    listing,
                    [{"field": "item_name", "old": None, "new": "new title"}],
                    "patchListingsItem",
                    submission,
                ),
            )
            pending.append((t + rng.randint(5_000, 180_000), _title_applier(listing)))
        elif kind == "feed":
            week.arrive(
                t,
                gateway_event(
                    t,
                    "listing.update",
                    listing,
                    [{"field": "item_name", "old": None, "new": "feed title"}],
                    "createFeed",
                    submission,
                    feed_type="JSON_LISTINGS_FEED",
                    message_id=1,
                ),
            )
            pending.append((t + rng.randint(5_000, 180_000), _title_applier(listing)))
            done = t + rng.randint(60_000, 6 * 60 * MIN)
            week.notify(
                "FEED_PROCESSING_FINISHED",
                done,
                {
                    "feedProcessingFinishedNotification": {
                        "sellerId": SELLER,
                        "feedId": submission,
                        "feedType": "JSON_LISTINGS_FEED",
                        "processingStatus": "DONE",
                    }
                },
                camel=True,
            )
        elif kind == "report":
            report = gateway_event(
                t, "report.request", listing, None, "createReport", submission, sensitivity="normal"
            )
            report["resource"] = {"type": "report", "id": "GET_MERCHANT_LISTINGS_ALL_DATA"}
            week.arrive(t, report)
            week.notify(
                "REPORT_PROCESSING_FINISHED",
                t + rng.randint(60_000, 60 * MIN),
                {
                    "reportProcessingFinishedNotification": {
                        "sellerId": SELLER,
                        "reportId": submission,
                        "reportType": "GET_MERCHANT_LISTINGS_ALL_DATA",
                        "processingStatus": "DONE",
                    }
                },
                camel=True,
            )
        else:
            week.arrive(
                t,
                gateway_event(t, "listing.delete", listing, None, "deleteListingsItem", submission),
            )
            pending.append((t + rng.randint(5_000, 180_000), _delete_applier(week, listing)))
    return week


def _offer(listing: Listing, price: float, rng: random.Random) -> dict[str, Any]:
    return {
        "AnyOfferChangedNotification": {
            "SellerId": SELLER,
            "OfferChangeTrigger": {
                "MarketplaceId": SITES[listing.site],
                "ASIN": listing.asin,
                "ItemCondition": "new",
                "OfferChangeType": "Internal",
            },
            "Offers": [
                {
                    "SellerId": "A2COMPETITOR",
                    "ListingPrice": {
                        "Amount": round(price * rng.uniform(0.9, 1.1), 2),
                        "CurrencyCode": "EUR",
                    },
                },
                {
                    "SellerId": SELLER,
                    "SubCondition": "new",
                    "ListingPrice": {"Amount": price, "CurrencyCode": "EUR"},
                },
            ],
        }
    }


def _price_applier(week: Week, listing: Listing, price: float, rng: random.Random) -> Any:
    def apply(at: int) -> None:
        listing.price, listing.updated = price, at
        week.notify("ANY_OFFER_CHANGED", at, _offer(listing, price, rng))

    return apply


def _quantity_applier(week: Week, listing: Listing, quantity: int) -> Any:
    def apply(at: int) -> None:
        listing.quantity, listing.updated = quantity, at
        week.notify(
            "LISTINGS_ITEM_MFN_QUANTITY_CHANGE",
            at,
            {
                "SellerId": SELLER,
                "FulfillmentChannelCode": "DEFAULT",
                "Sku": listing.sku,
                "Quantity": quantity,
            },
        )

    return apply


def _title_applier(listing: Listing) -> Any:
    def apply(at: int) -> None:
        listing.title, listing.updated = f"title {at}", at

    return apply


def _delete_applier(week: Week, listing: Listing) -> Any:
    def apply(at: int) -> None:
        listing.status, listing.updated = "DELETED", at
        week.notify(
            "LISTINGS_ITEM_STATUS_CHANGE",
            at,
            {
                "SellerId": SELLER,
                "MarketplaceId": SITES[listing.site],
                "Asin": listing.asin,
                "Sku": listing.sku,
                "Status": ["DELETED"],
            },
        )

    return apply


def poll(week: Week, listings: list[Listing], at: int, baseline: bool) -> None:
    """What sources/polling reports: the differences from the last poll, dated by the listing's
    last update when that is after the last poll, else by the poll (as the poller does)."""
    for listing in listings:
        now = {
            "price": str(listing.price),
            "quantity": listing.quantity,
            "status": listing.status,
            "item_name": listing.title,
        }
        before, listing.polled = listing.polled, now
        if baseline or not before or before == now:
            continue
        for name, action in (
            ("price", "listing.price_observed"),
            ("quantity", "inventory.quantity_observed"),
            ("status", "listing.status_change"),
            ("item_name", "listing.attributes_observed"),
        ):
            if before[name] == now[name]:
                continue
            change = (
                {"field": name, "old": before[name], "new": now[name]}
                if name != "item_name"
                else {"field": name, "old": None, "new": "changed"}
            )
            week.arrive(
                at,
                {
                    "event_id": f"amzn-p-{uuid.uuid4().hex}",
                    "occurred_at": format_ms(
                        listing.updated if listing.updated > at - 5 * MIN else at
                    ),
                    "account_id": ACCOUNT,
                    "actor": POLLER,
                    "action": action,
                    "operation": "getListingsItem",
                    "marketplace": listing.site,
                    "resource": {"type": "listing", "id": listing.sku},
                    "changes": [change],
                    "origin": {
                        "adapter": "sp-api-poller",
                        "polled_at": format_ms(at),
                        "asin": listing.asin,
                    },
                },
            )
            week.observations += 1


def run(week: Week) -> tuple[list[Any], int]:
    """Every event in arrival order through the ledger's dedup and the detectors."""
    state = new_state()
    findings = []
    stored: set[str] = set()
    config = DetectionConfig()
    observe(state, normalize(GRANT), config)
    for _, _, raw in sorted(week.arrivals, key=lambda a: (a[0], a[1])):
        event = normalize(orjson.loads(orjson.dumps(raw)))
        if event["event_id"] in stored:
            continue
        stored.add(event["event_id"])
        findings.extend((f, event) for f in observe(state, event, config))
    return findings, len(stored)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_week_through_the_gateway_raises_no_false_reconciliation_alert(seed: int) -> None:
    week = simulate(seed)
    findings, stored = run(week)
    assert stored < len(week.arrivals)  # repeats were delivered, and stored once
    late = sum(
        1
        for at, _, e in week.arrivals
        if e["actor"]["type"] == "amazon" and at - _ms(e["occurred_at"]) > 60 * MIN
    )
    assert week.observations > 1000 and late > 100, (week.observations, late)
    outside = [f for f, _ in findings if f.detector == "change_outside_gateway"]
    rate = len(outside) / week.observations
    assert rate == 0, (
        f"{len(outside)} false alerts in {week.observations} observed changes: {[f.summary for f in outside[:3]]}"
    )
    on_amazon = [(f.detector, e["action"]) for f, e in findings if e["actor"]["type"] == "amazon"]
    assert on_amazon == [], on_amazon[:5]


def test_the_same_week_with_changes_around_the_gateway_finds_each_one() -> None:
    week = simulate(4, outside_changes=5)
    findings, _ = run(week)
    outside = {
        f.key.split("|", 1)[1].rsplit("|", 1)[0]
        for f, _ in findings
        if f.detector == "change_outside_gateway"
    }
    assert set(week.outside) <= outside and len(week.outside) == 5, (week.outside, outside)
    assert outside == set(week.outside)  # and nothing else


def _ms(text: str) -> int:
    from pipeline.event import timestamp_ms

    return timestamp_ms(text, "t")
