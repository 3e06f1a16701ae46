"""The ingest service's signal that an account's detection state is behind its ledger.

Its own module, left as Python by the optional mypyc build (tools/compile_detectors.py), which
compiles streams/ingest_batch.py: mypyc cannot compile a class derived from RuntimeError.
"""

from __future__ import annotations


class StateGap(RuntimeError):
    """An account's detection state lacks entries before the one to fold: the partition's state
    must be reloaded and checked against the ledger (streams/state_repair.py)."""

    def __init__(self, account: str, state_seq: int, seq: int) -> None:
        super().__init__(
            f"the detection state of {account} is at seq {state_seq}, the next entry is {seq}"
        )
        self.account = account
