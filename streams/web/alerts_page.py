"""The live alerts page (`GET /alerts`): one self-contained HTML document, no build step, no assets.

On load it shows the latest stored alerts (`GET /v1/alerts/recent`, the warehouse, with each
one's status), once the live stream is connected, so nothing raised in between is missed; then it
follows the stream. Each row shows the event time of the alert's latest evidence (UTC).
It reads `GET /v1/alerts/stream` with `fetch()` and parses the event stream itself rather than
using `EventSource`, because EventSource cannot send an `Authorization` header: the token would
have to travel in the URL, where server logs, proxies, browser history and Referer headers keep
it. With fetch the token stays in a header (and in this tab's sessionStorage); the page resumes
after a dropped connection by sending `Last-Event-ID` itself. Alert text is attacker-influenced
(principal ids, titles), so it is only ever set with `textContent`, and the Content-Security-
Policy allows exactly this page's inline script and style (by hash) and requests to its origin.
"""

from __future__ import annotations

import base64
import hashlib

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d232b; }
header { background: #1d232b; color: #fff; padding: 10px 16px; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
header h1 { font-size: 16px; margin: 0 12px 0 0; }
header label { font-size: 12px; display: flex; gap: 4px; align-items: center; }
header input, header select { font: inherit; padding: 2px 4px; }
#conn { margin-left: auto; font-size: 12px; padding: 2px 8px; border-radius: 8px; background: #555; }
#conn.live { background: #1e7b34; } #conn.down { background: #a33; }
#msg { padding: 6px 16px; font-size: 13px; min-height: 18px; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e3e6ea; vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; color: #5a6572; }
.sev { font-weight: 600; padding: 1px 6px; border-radius: 4px; font-size: 12px; }
.sev-info { background: #eceff3; color: #5a6572; } .sev-low { background: #dff3f8; color: #116a80; }
.sev-medium { background: #fff3cd; color: #7a5b00; } .sev-high { background: #fbd9d9; color: #a11; }
.sev-critical { background: #a11; color: #fff; }
tr.new { animation: flash 1.5s ease-out; } @keyframes flash { from { background: #fff6bf; } to { background: #fff; } }
td.title small { display: block; color: #5a6572; }
button { font: inherit; font-size: 12px; margin-right: 4px; cursor: pointer; }
.status-acknowledged { color: #7a5b00; } .status-resolved { color: #1e7b34; }
"""

SCRIPT = r"""
(() => {
  const TOKEN_REQUIRED = document.body.dataset.tokenRequired === "true";
  const $ = (id) => document.getElementById(id);
  const rows = new Map();
  let lastId = null, controller = null, retryTimer = null;

  $("token-field").hidden = !TOKEN_REQUIRED;
  $("token").value = sessionStorage.getItem("pw-token") || "";
  $("by").value = localStorage.getItem("pw-by") || "";

  function say(text) { $("msg").textContent = text; }
  function conn(state, text) { $("conn").className = state; $("conn").textContent = text; }
  function headers() {
    const h = {};
    const token = $("token").value.trim();
    if (token) h["Authorization"] = "Bearer " + token;
    return h;
  }

  function streamUrl() {
    const q = new URLSearchParams();
    q.set("severity", $("severity").value);
    for (const a of $("accounts").value.split(",").map((s) => s.trim()).filter(Boolean)) q.append("account", a);
    return "/v1/alerts/stream?" + q.toString();
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function eventTime(text) {
    // "2026-11-02T09:00:00.000Z" -> "2026-11-02 09:00:00" (UTC, as stored)
    return typeof text === "string" && text.length >= 19 ? text.slice(0, 10) + " " + text.slice(11, 19) : String(text || "");
  }

  function show(alert) {
    const fresh = !rows.has(alert.alert_id);
    const tr = row(alert);
    tr.classList.toggle("new", fresh);
    $("alerts").prepend(tr);
  }

  function showStored(alert) {
    // an older alert from the warehouse: below what the stream already showed, never over it
    if (rows.has(alert.alert_id)) return;
    const status = alert.status === "open" ? "open" : alert.status + (alert.status_by ? " by " + alert.status_by : "");
    const tr = row(alert, [status, "status status-" + alert.status]);
    tr.dataset.stored = "true";
    $("alerts").appendChild(tr);
  }

  function row(alert, initial) {
    let tr = rows.get(alert.alert_id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.alertId = alert.alert_id;
      tr.dataset.receivedAt = String(Date.now());  // when it reached this screen (bench/alert_feed_latency.py)
      rows.set(alert.alert_id, tr);
    }
    const status = tr.querySelector("td.status");
    const keep = status ? [status.textContent, status.className] : (initial || ["open", "status status-open"]);
    tr.replaceChildren();
    cell(tr, eventTime(alert.last_seen), "time");
    const sev = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = "sev sev-" + alert.severity;
    badge.textContent = alert.severity;
    sev.appendChild(badge);
    tr.appendChild(sev);
    cell(tr, alert.detector, "detector");
    cell(tr, alert.account_id, "account");
    cell(tr, alert.provider_id || "", "provider");
    const title = cell(tr, alert.title, "title");
    const summary = document.createElement("small");
    summary.textContent = alert.summary;
    title.appendChild(summary);
    cell(tr, String(alert.count), "count");
    const st = cell(tr, keep[0], keep[1]);
    st.classList.add("status");
    const actions = document.createElement("td");
    for (const [action, label] of [["ack", "Ack"], ["resolve", "Resolve"]]) {
      const b = document.createElement("button");
      b.className = action;
      b.textContent = label;
      b.addEventListener("click", () => act(alert.alert_id, action));
      actions.appendChild(b);
    }
    tr.appendChild(actions);
    tr.dataset.severity = alert.severity;
    return tr;
  }

  async function loadStored() {
    const q = new URLSearchParams(streamUrl().split("?")[1]);
    q.set("limit", "200");
    try {
      const resp = await fetch("/v1/alerts/recent?" + q.toString(), {headers: headers(), cache: "no-store"});
      if (!resp.ok) { say("Stored alerts: HTTP " + resp.status); return; }
      const doc = await resp.json();
      for (const alert of doc.alerts || []) showStored(alert);
    } catch (e) {
      say("Stored alerts could not be loaded (" + e.message + ")");
    }
  }

  async function act(alertId, action) {
    const by = $("by").value.trim();
    if (!by) { say("Enter your name in 'by' first."); $("by").focus(); return; }
    localStorage.setItem("pw-by", by);
    const resp = await fetch("/v1/alerts/" + encodeURIComponent(alertId) + "/" + action, {
      method: "POST",
      headers: Object.assign({"Content-Type": "application/json"}, headers()),
      body: JSON.stringify({by: by, note: $("note").value}),
    });
    let doc = {};
    try { doc = await resp.json(); } catch (e) { doc = {error: "HTTP " + resp.status}; }
    const row = rows.get(alertId);
    const current = resp.ok ? doc : doc.current;
    if (row && current) {
      const st = row.querySelector("td.status");
      st.textContent = current.status + (current.actor ? " by " + current.actor : "");
      st.className = "status status-" + current.status;
    }
    say(resp.ok ? alertId + ": " + doc.status + " by " + doc.actor : (doc.error || "HTTP " + resp.status));
  }

  function handle(block) {
    let event = "message", data = "", id = null;
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data += (data ? "\n" : "") + value;
      else if (field === "id") id = value;
    }
    if (id !== null) lastId = id;
    if (event === "alert" && data) show(JSON.parse(data));
    else if (event === "error" && data) say(JSON.parse(data).error);
  }

  async function connect() {
    clearTimeout(retryTimer);
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = controller;
    const h = Object.assign({"Accept": "text/event-stream"}, headers());
    const resumed = lastId !== null;
    if (lastId) h["Last-Event-ID"] = lastId;
    conn("", "connecting");
    try {
      const resp = await fetch(streamUrl(), {headers: h, signal: mine.signal, cache: "no-store"});
      if (resp.status === 401) { conn("down", "token needed"); say("The API token is missing or wrong."); return; }
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      conn("live", "live");
      if (!resumed) loadStored();  // subscribed first: what is raised from now on comes live
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) { handle(buf.slice(0, i)); buf = buf.slice(i + 2); }
      }
    } catch (e) {
      if (mine.signal.aborted) return;
      say("Connection lost (" + e.message + "); retrying.");
    }
    if (mine !== controller || mine.signal.aborted) return;
    conn("down", "reconnecting");
    retryTimer = setTimeout(connect, 2000);
  }

  $("apply").addEventListener("click", () => {
    sessionStorage.setItem("pw-token", $("token").value.trim());
    rows.clear();
    $("alerts").replaceChildren();
    lastId = null;
    connect();
  });
  connect();
})();
"""

BODY = """<header>
  <h1>PartnerWatch alerts</h1>
  <label>min severity <select id="severity">
    <option>info</option><option>low</option><option>medium</option><option>high</option><option>critical</option>
  </select></label>
  <label>accounts <input id="accounts" placeholder="all (or A1, A2)" size="16"></label>
  <label id="token-field">token <input id="token" type="password" size="14" autocomplete="off"></label>
  <button id="apply">Apply</button>
  <label>by <input id="by" size="10" placeholder="your name"></label>
  <label>note <input id="note" size="18"></label>
  <span id="conn">connecting</span>
</header>
<div id="msg" role="status"></div>
<table>
  <thead><tr><th>event time (UTC)</th><th>severity</th><th>detector</th><th>account</th><th>provider</th><th>what happened</th>
  <th>events</th><th>status</th><th></th></tr></thead>
  <tbody id="alerts"></tbody>
</table>"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    f"<title>PartnerWatch alerts</title><style>{STYLE}</style></head>"
    f'<body data-token-required="__TOKEN_REQUIRED__">{BODY}<script>{SCRIPT}</script></body></html>\n'
)
CSP = (
    f"default-src 'none'; script-src {_hash(SCRIPT)}; style-src {_hash(STYLE)}; connect-src 'self';"
    " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
