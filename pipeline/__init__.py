"""PartnerWatch core: the event contract, grants, the hash-chained ledger and configuration.

Nothing in this package imports `streams`, `sinks` or `detectors`, except the command line
(`partnerwatch.main`), which is the composition root.
"""
