"""Adapters to the outside: the ClickHouse warehouse (and, later, alert feeds and metrics).

Nothing here imports `streams`; the Faust app drives these adapters.
"""
