"""Polling Amazon for what notifications do not tell, per seller account, with the seller's credentials.

- listings: `searchListingsItems?lastUpdatedAfter=` finds the SKUs that changed since the last
  poll, `getListingsItem` reads each; the difference from the last snapshot (price, quantity,
  status, other attributes by name, a new or vanished listing) becomes events;
- bank accounts: `getPaymentMethods` per EU store, diffed (no SP-API call can change one, so
  every change found is reported);
- funds: `listPayouts` (payouts, scheduled or on demand) and `listTransactions`, new entries.

Each difference is one event with actor type `amazon` (`origin.adapter` `sp-api-poller`), its
event id derived from the change itself, so a poll repeated after a crash repeats the same ids
(stored once). Snapshots are saved only after Kafka acknowledged the events. Calls stay within
Amazon's rate limits (a token bucket per operation, and a pause on 429). The seller's LWA token
comes from the gateway's token handling (sources/gateway/lwa.py).
"""
