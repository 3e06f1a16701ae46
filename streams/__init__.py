"""The Faust application: topics, tables, agents and web views that wire the pipeline together.

Agents stay thin: validation lives in `pipeline.event`, sequencing in `pipeline.ledger`, decisions
in `detectors/`, and writes in `sinks/`.
"""
