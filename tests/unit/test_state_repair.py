"""Which recovered account states do not match the ledger (streams/state_repair.py)."""

from __future__ import annotations

from pipeline.ledger import ChainHead
from streams.state_repair import Stale, stale_accounts


def test_each_account_state_is_compared_with_its_ledger_head() -> None:
    heads = {
        "in-order": ChainHead(7, "h"),
        "missing": ChainHead(3, "h"),
        "empty": ChainHead(2, "h"),
        "behind": ChainHead(9, "h"),
        "ahead": ChainHead(4, "h"),
    }
    states = {
        "in-order": {"seq": 7, "auth": {}, "det": {}},
        "empty": {},
        "behind": {"seq": 5, "auth": {}, "det": {}},
        "ahead": {"seq": 6, "auth": {}, "det": {}},
        "not-in-the-ledger": {"seq": 1, "auth": {}, "det": {}},
    }
    assert stale_accounts(heads, states.get) == [
        Stale("missing", "missing", 0, 3),
        Stale("empty", "missing", 0, 2),
        Stale("behind", "behind", 5, 9),
        Stale("ahead", "ahead", 0, 4),
    ]


def test_states_at_their_heads_need_nothing() -> None:
    heads = {f"a{n}": ChainHead(n, "h") for n in range(1, 50)}
    assert stale_accounts(heads, lambda account: {"seq": heads[account].seq}) == []
