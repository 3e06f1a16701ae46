"""The funds polls of one seller account: payment methods, payouts and transactions."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from pipeline.event import format_ms
from pipeline.marketplaces import marketplace_id, site_code
from sources.gateway.prices import decimal_text
from sources.polling.poll_events import MAX_PAGES, AccountPoll


class FundsPolls(AccountPoll):
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
