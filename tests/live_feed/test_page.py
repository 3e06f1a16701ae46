"""The live page in headless Chromium (Debian's `chromium`): token, alert appearing, filters, ack."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from partnerwatch.local_worker import Namespace
from tests.live_feed.cdp import chromium, chromium_binary
from tests.live_feed.conftest import TOKEN, provider_event, unique

pytestmark = pytest.mark.integration

ROW_OF = """(() => {{
  const tr = [...document.querySelectorAll("#alerts tr")].find((r) => r.querySelector("td.account").textContent === {account});
  return tr ? {{id: tr.dataset.alertId, severity: tr.querySelector(".sev").className, status: tr.querySelector("td.status").textContent}} : null;
}})()"""


def row_of(account: str) -> str:
    return ROW_OF.format(account=json.dumps(account))


@pytest.mark.skipif(chromium_binary() is None, reason="no chromium (apt-get install chromium)")
def test_alert_appears_on_the_page_and_ack_is_recorded(
    live: Namespace, tmp_path_factory: pytest.TempPathFactory
) -> None:
    asyncio.run(_drive(live, tmp_path_factory.mktemp("chromium")))


async def _drive(live: Namespace, profile: Path) -> None:
    account, other = unique("PAGE"), unique("OTHER")
    async with chromium(profile) as page:
        await page.call("Page.navigate", url=f"http://127.0.0.1:{live.port}/alerts")
        await page.wait(
            'document.readyState === "complete" && document.getElementById("conn") !== null',
            30,
            "the page",
        )
        # the token is required here: without it the page says so
        await page.wait(
            'document.getElementById("conn").textContent === "token needed"', 30, "the 401"
        )
        assert await page.js('!document.getElementById("token-field").hidden')
        await page.js(
            f'document.getElementById("token").value = {json.dumps(TOKEN)};'
            f' document.getElementById("accounts").value = {json.dumps(account)};'
            ' document.getElementById("apply").click(); true'
        )
        await page.wait(
            'document.getElementById("conn").textContent === "live"', 30, "the stream connected"
        )

        await asyncio.to_thread(
            live.send,
            [
                provider_event(other, "auth.credentials_create"),
                provider_event(account, "auth.credentials_create"),
            ],
        )
        row = await page.wait(row_of(account), 60, "the alert on the page")
        assert row["severity"] == "sev sev-critical" and row["status"] == "open"
        assert await page.js(row_of(other)) is None  # filtered out by the accounts field

        await page.js(
            'document.getElementById("by").value = "carol"; document.getElementById("note").value = "from the page";'
            f" document.querySelector('tr[data-alert-id=\"{row['id']}\"] button.ack').click(); true"
        )
        await page.wait(
            f'document.querySelector(\'tr[data-alert-id="{row["id"]}"] td.status\').textContent === "acknowledged by carol"',
            30,
            "the acknowledged status on the page",
        )
    rows = live.sql(
        "SELECT status, actor, note, account_id FROM audit.alert_status WHERE alert_id = {id:String}",
        {"id": row["id"]},
    )
    assert rows == [["acknowledged", "carol", "from the page", account]]

    # A page opened later shows the stored alert (from the warehouse, with its status), then goes
    # live. It reads the stored alerts once, when it opens: first wait until the warehouse loader
    # has stored this one (on a busy machine it may lag the live feed by seconds).
    deadline = time.monotonic() + 60
    while not live.sql(
        "SELECT count() FROM audit.alerts WHERE alert_id = {id:String}", {"id": row["id"]}
    )[0][0]:
        assert time.monotonic() < deadline, "the alert was not stored in 60 s"
        await asyncio.sleep(0.5)
    (profile / "later").mkdir()
    async with chromium(profile / "later") as page:
        await page.call("Page.navigate", url=f"http://127.0.0.1:{live.port}/alerts")
        await page.wait(
            'document.readyState === "complete" && document.getElementById("conn") !== null',
            30,
            "the page",
        )
        await page.js(
            f'document.getElementById("token").value = {json.dumps(TOKEN)};'
            f' document.getElementById("accounts").value = {json.dumps(account)};'
            ' document.getElementById("apply").click(); true'
        )
        stored = await page.wait(row_of(account), 60, "the stored alert on a new page")
        assert stored["id"] == row["id"] and stored["status"] == "acknowledged by carol"
        assert (
            await page.js(
                f"document.querySelector('tr[data-alert-id=\"{row['id']}\"] td.time').textContent"
            )
            == "2026-11-26 10:00:00"
        )
