"""A listings write (put, patch, delete; also a JSON listings feed message) as one planned event.

By attribute: `purchasable_offer` and `list_price` make it a price change
(`listing.price_change`, `changes: [{field: "price", old, new}]` when `our_price` is given),
`fulfillment_availability` an inventory update (`quantity`), anything else a listing update.
"""

from __future__ import annotations

from typing import Any

from sources.gateway.calls import Memory, Planned, summary
from sources.gateway.prices import our_price

PRICE_ATTRIBUTES = frozenset({"purchasable_offer", "list_price"})
QUANTITY_ATTRIBUTES = frozenset({"fulfillment_availability"})


def _quantity(values: Any) -> Any:
    if isinstance(values, list):
        for item in values:
            if isinstance(item, dict) and "quantity" in item:
                quantity = item["quantity"]
                if (
                    isinstance(quantity, int)
                    and not isinstance(quantity, bool)
                    and abs(quantity) < 2**53
                ):
                    return quantity
    return None


def listing_change(
    kind: str, sku: str, site: str | None, edits: list[tuple[str, str, Any]], memory: Memory
) -> Planned:
    """One listings write: `kind` put|patch|delete, `edits` (op, attribute, value) -> Planned."""
    resource = {"type": "listing", "id": sku}
    sites = [site] if site else []
    if kind == "delete":
        return Planned("listing.delete", "", sites, resource, sku=sku)
    changes: list[dict[str, Any]] = []
    action = "listing.update"
    old = new = None
    for op, attribute, value in edits:
        if attribute in PRICE_ATTRIBUTES and op != "delete":
            if attribute == "purchasable_offer":
                price = our_price(value, site)
                if price is not None:
                    old = memory.price(sku, site) if site else None
                    new = price
                    changes.insert(0, {"field": "price", "old": old, "new": new})
                    action = "listing.price_change"
                    continue
            elif action != "listing.price_change":
                action = "listing.price_change"
            changes.append({"field": attribute, "old": None, "new": summary(value)})
        elif attribute in QUANTITY_ATTRIBUTES and op != "delete":
            if action == "listing.update":
                action = "inventory.update"
            changes.append({"field": "quantity", "old": None, "new": _quantity(value)})
        else:
            changes.append(
                {
                    "field": attribute[:128] or "?",
                    "old": None,
                    "new": None if op == "delete" else summary(value),
                }
            )
    return Planned(
        action, "", sites, resource, changes[:1000], sku=sku, old_price=old, new_price=new
    )


def patch_edits(patches: Any) -> list[tuple[str, str, Any]]:
    edits = []
    if isinstance(patches, list):
        for patch in patches:
            if not isinstance(patch, dict):
                continue
            path = patch.get("path")
            attribute = (
                path.split("/")[2]
                if isinstance(path, str)
                and path.startswith("/attributes/")
                and path.count("/") >= 2
                else str(path)[:128]
            )
            edits.append((str(patch.get("op", "")), attribute, patch.get("value")))
    return edits


def put_edits(attributes: Any) -> list[tuple[str, str, Any]]:
    if not isinstance(attributes, dict):
        return []
    return [("replace", str(name), value) for name, value in attributes.items()]
