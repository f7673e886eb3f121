"""State memory per account: every event of a simulated book applied, measured by tracemalloc.

The figure is what the dict of states holds once the simulator is gone: the states, their
history arrays and lists, installments, the account-id keys and the dict itself. Interned
merchant, device and city names are shared by all accounts and counted once. The baseline
is the same number of fresh accounts with no history: the fixed cost of an account.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from duoli.account import AccountState, apply_event
from duoli.events import parse_event
from duoli.simulate import SimulationConfig, simulate

__all__ = ["book_lines", "build_states", "fresh_states", "memory_section", "traced_bytes"]

DEFAULT_LIMIT, DEFAULT_APR = 5000.0, 0.18


def book_lines(config: SimulationConfig) -> list[bytes]:
    """The book as the worker receives it, one JSON message per event.

    Generated before tracing starts: tracemalloc makes the simulator about four times
    slower, and none of its objects survive into the states.
    """
    return [json.dumps(event).encode() for event in simulate(config)]


def build_states(lines: Iterable[bytes]) -> dict[str, AccountState]:
    """Each message validated as the worker does, then applied to its account's state."""
    states: dict[str, AccountState] = {}
    for raw in lines:
        event = parse_event(raw)
        state = states.get(event.account_id)
        if state is None:
            state = AccountState.fresh(event.account_id, DEFAULT_LIMIT, DEFAULT_APR)
            states[event.account_id] = state
        apply_event(state, event)
    return states


def fresh_states(count: int) -> dict[str, AccountState]:
    """``count`` accounts as they are before their first event."""
    ids = (f"acct-{index:06d}" for index in range(count))
    return {key: AccountState.fresh(key, DEFAULT_LIMIT, DEFAULT_APR) for key in ids}


def traced_bytes(
    build: Callable[[], dict[str, AccountState]],
) -> tuple[int, dict[str, AccountState]]:
    """Bytes still allocated after ``build`` returns, i.e. what its result holds."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        states = build()
        gc.collect()  # the simulator's heap and the parsed events must be gone
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return held, states


def _tx_held(states: dict[str, AccountState]) -> float:
    return sum(len(state.tx_times) for state in states.values()) / max(len(states), 1)


def memory_section(accounts: int, days: int = 30) -> dict[str, Any]:
    """Bytes per account after ``days`` of a simulated book, and for fresh accounts."""
    lines = book_lines(SimulationConfig(accounts=accounts, days=days))
    held, states = traced_bytes(partial(build_states, lines))
    events = len(lines)
    del lines
    count, tx_mean = len(states), _tx_held(states)
    installments = sum(len(s.installments) for s in states.values()) / max(count, 1)
    del states
    fresh_held, fresh = traced_bytes(partial(fresh_states, count))
    del fresh
    return {
        "accounts_requested": accounts,
        "accounts": count,  # the simulator adds a few strangers who never opened a line
        "days": days,
        "events": events,
        "bytes_per_account": held / count,
        "baseline_bytes_per_account": fresh_held / count,
        "mean_transactions_held": round(tx_mean, 2),
        "mean_installments_held": round(installments, 3),
        "total_mib": round(held / 2**20, 1),
    }
