"""The seller's Login with Amazon access tokens: the only credential the gateway sends to Amazon.

The seller's app (a private developer app the seller self-authorized) has a client id, a client
secret and a refresh token. They come from a JSON secret file (`PW_GATEWAY_SELLER_SECRET_FILE`:
`{"client_id": ..., "client_secret": ..., "refresh_token": ...}`, readable by the gateway only)
or from the environment (`PW_GATEWAY_LWA_CLIENT_ID`, `PW_GATEWAY_LWA_CLIENT_SECRET`,
`PW_GATEWAY_LWA_REFRESH_TOKEN`). An access token is cached until 30 seconds before it expires
(as Amazon's own SDK does) and refreshed by one request at a time; grantless tokens
(`client_credentials` with a scope, for notifications and secret rotation) are cached per scope.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

REFRESH_EARLY_SECONDS = 30.0


class LwaError(RuntimeError):
    """The seller's token could not be had; `status` is LWA's HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SellerCredentials:
    client_id: str
    client_secret: str
    refresh_token: str

    def __repr__(self) -> str:
        return (
            f"SellerCredentials(client_id={self.client_id!r}, client_secret=***, refresh_token=***)"
        )

    @classmethod
    def load(cls, secret_file: str, environ: dict[str, str] | None = None) -> SellerCredentials:
        env = os.environ if environ is None else environ
        if secret_file:
            doc = orjson.loads(Path(secret_file).read_bytes())
            if not isinstance(doc, dict):
                raise ValueError(f"{secret_file} must hold a JSON object")
            values = {k: doc.get(k) for k in ("client_id", "client_secret", "refresh_token")}
        else:
            values = {
                "client_id": env.get("PW_GATEWAY_LWA_CLIENT_ID"),
                "client_secret": env.get("PW_GATEWAY_LWA_CLIENT_SECRET"),
                "refresh_token": env.get("PW_GATEWAY_LWA_REFRESH_TOKEN"),
            }
        missing = [k for k, v in values.items() if not isinstance(v, str) or not v]
        if missing:
            where = secret_file or "PW_GATEWAY_LWA_* variables"
            raise ValueError(f"seller credentials incomplete in {where}: {', '.join(missing)}")
        return cls(**values)  # type: ignore[arg-type]


class SellerTokens:
    """Cached seller access tokens: `await tokens.get()` (seller-authorized) or `get(scope)`."""

    def __init__(
        self, credentials: SellerCredentials, lwa_url: str, session: aiohttp.ClientSession
    ) -> None:
        self.credentials = credentials
        self.lwa_url = lwa_url
        self.session = session
        self._cache: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.refreshes = 0

    async def get(self, scope: str = "") -> str:
        cached = self._cache.get(scope)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        lock = self._locks.setdefault(scope, asyncio.Lock())
        async with lock:
            cached = self._cache.get(scope)
            if cached is not None and time.monotonic() < cached[1]:
                return cached[0]
            token, expires_in = await self._request(scope)
            self._cache[scope] = (
                token,
                time.monotonic() + max(0.0, expires_in - REFRESH_EARLY_SECONDS),
            )
            self.refreshes += 1
            return token

    def forget(self, scope: str = "") -> None:
        """Drop a cached token Amazon refused (it is fetched again on next use)."""
        self._cache.pop(scope, None)

    async def _request(self, scope: str) -> tuple[str, float]:
        creds = self.credentials
        form: dict[str, str] = {"client_id": creds.client_id, "client_secret": creds.client_secret}
        if scope:
            form.update(grant_type="client_credentials", scope=scope)
        else:
            form.update(grant_type="refresh_token", refresh_token=creds.refresh_token)
        try:
            async with self.session.post(
                self.lwa_url, data=form, timeout=aiohttp.ClientTimeout(total=30)
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LwaError(0, f"LWA did not answer: {exc}") from None
        try:
            doc: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = {}
        if (
            status != 200
            or not isinstance(doc, dict)
            or not isinstance(doc.get("access_token"), str)
        ):
            error = doc.get("error") if isinstance(doc, dict) else None
            raise LwaError(
                status, f"LWA refused the seller's token request: {status} {error or ''}".strip()
            )
        expires_in = doc.get("expires_in", 3600)
        if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
            expires_in = 3600
        return doc["access_token"], float(expires_in)
