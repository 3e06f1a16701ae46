"""SP-API reads with the seller's access token, within Amazon's rate limits.

Each operation has a token bucket with Amazon's usage plan (rate per second, burst), kept per
client (one client per seller account and app: Amazon's limits are per seller-and-application
pair). A 429 answer waits for the bucket (at least a second) and tries again, three times at
most; a 401/403 saying the token expired drops the cached token and tries once more.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
from yarl import URL

from sources.gateway.lwa import SellerTokens

#: Amazon's usage plans (requests per second, burst), from the operations' models; where a model
#: names none, a conservative guess.
RATES: dict[str, tuple[float, int]] = {
    "searchListingsItems": (5.0, 5),
    "getListingsItem": (5.0, 10),
    "getPaymentMethods": (0.5, 5),
    "listPayouts": (0.5, 5),
    "listTransactions": (0.5, 10),
}
DEFAULT_RATE = (0.5, 2)


class SpApiError(RuntimeError):
    def __init__(self, status: int, operation: str, body: Any) -> None:
        super().__init__(f"{operation}: HTTP {status}")
        self.status = status
        self.body = body


class Bucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
                self.at = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)

    def empty(self) -> None:
        self.tokens = 0.0
        self.at = time.monotonic()


class SpApi:
    def __init__(self, base_url: str, tokens: SellerTokens, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.session = session
        self.buckets: dict[str, Bucket] = {}
        self.calls: dict[str, int] = {}
        self.throttled = 0

    async def get(
        self,
        operation: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        missing_ok: bool = False,
    ) -> Any:
        """The JSON answer of a GET; None for a 404 when `missing_ok`; SpApiError otherwise."""
        bucket = self.buckets.setdefault(operation, Bucket(*RATES.get(operation, DEFAULT_RATE)))
        url = URL(self.base_url + path)
        query = {
            k: ",".join(v) if isinstance(v, list) else str(v)
            for k, v in (params or {}).items()
            if v is not None
        }
        if query:
            url = url.with_query(query)
        refreshed = False
        for attempt in range(4):
            await bucket.take()
            token = await self.tokens.get()
            self.calls[operation] = self.calls.get(operation, 0) + 1
            async with self.session.get(
                url,
                headers={"x-amz-access-token": token, "accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response:
                status, raw = response.status, await response.read()
            body = _json(raw)
            if status == 429 and attempt < 3:
                self.throttled += 1
                bucket.empty()
                await asyncio.sleep(1.0)
                continue
            if status in (401, 403) and not refreshed and b"expired" in raw.lower():
                self.tokens.forget()
                refreshed = True
                continue
            if status == 404 and missing_ok:
                return None
            if status >= 400:
                raise SpApiError(status, operation, body)
            return body
        raise SpApiError(429, operation, None)


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
