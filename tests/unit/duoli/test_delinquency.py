from __future__ import annotations

from duoli.account import DAY, AccountState, apply_event
from duoli.delinquency import next_crossing, take_crossings


def billed(parsed, grace_days: float = 0.0) -> AccountState:
    state = AccountState.fresh("acc-1", 5000.0, 0.18)
    apply_event(state, parsed("transaction", amount=1000.0))
    apply_event(
        state,
        parsed(
            "installment_due", installment_id="i-1", amount_due=200.0, due_at="2026-04-01T00:00:00Z"
        ),
    )
    return state


DUE = 1775001600.0  # 2026-04-01T00:00:00Z


def test_thresholds_fire_once_each_at_their_exact_moment(parsed):
    state = billed(parsed)
    assert take_crossings(state, DUE + DAY - 1, (1, 7, 30), 0.0) == []
    first = take_crossings(state, DUE + DAY, (1, 7, 30), 0.0)
    assert [(c.threshold, c.at) for c in first] == [(1, DUE + DAY)]
    assert take_crossings(state, DUE + 2 * DAY, (1, 7, 30), 0.0) == []
    later = take_crossings(state, DUE + 40 * DAY, (1, 7, 30), 0.0)
    assert [c.threshold for c in later] == [7, 30]


def test_grace_delays_every_threshold(parsed):
    state = billed(parsed)
    assert take_crossings(state, DUE + 2.9 * DAY, (1,), 2 * DAY) == []
    assert [c.threshold for c in take_crossings(state, DUE + 3 * DAY, (1,), 2 * DAY)] == [1]


def test_repaid_installment_never_goes_overdue(parsed):
    state = billed(parsed)
    apply_event(state, parsed("repayment", days=20, installment_id="i-1", amount=200.0))
    assert take_crossings(state, DUE + 60 * DAY, (1, 7, 30), 0.0) == []
    assert next_crossing(state, (1, 7, 30), 0.0) is None


def test_partial_repayment_still_goes_overdue_with_what_is_owed(parsed):
    state = billed(parsed)
    apply_event(state, parsed("repayment", days=20, installment_id="i-1", amount=20.0))
    [crossing] = take_crossings(state, DUE + DAY, (1,), 0.0)
    assert crossing.amount_owed == 180.0
    assert crossing.event_id.startswith("installment_due")
