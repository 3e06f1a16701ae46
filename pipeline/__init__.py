"""PartnerWatch core: the event contract, grants, the hash-chained ledger and configuration.

Nothing in this package imports `streams`, `sinks` or `detectors`, except the command line
(`pipeline.cli`), which is the composition root.
"""
