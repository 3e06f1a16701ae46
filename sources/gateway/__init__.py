"""The SP-API recording gateway: providers call Amazon's Selling Partner API through it.

Amazon never says which provider did what, so the seller puts this gateway on the path: each
provider principal gets its own gateway credentials (`credentials.py`, kept by `store.py`),
exchanges them at the gateway's LWA-compatible token endpoint (`token_exchange.py`), and calls
SP-API paths on the gateway (`proxy.py`), which forwards them with the seller's own LWA access
token (`lwa.py`). Every call becomes a ProviderAction (`classify.py`, over `calls.py`,
`operations.py`, `listing_changes.py`, `prices.py`); in enforce mode a call outside the
principal's grant is refused before it reaches Amazon (`enforce.py`, grants folded from the
ledger by `ledger.py`); a suspended provider's tokens stop working at once (`kill_switch.py`).
`app.py` is the aiohttp service (documents and RDTs: `documents.py`), `service.py` runs it.

This package imports only `pipeline` and third-party libraries: events leave through an
`emit` callable that the composition root (partnerwatch/gateway.py) builds on sinks/kafka_io.py.
"""
