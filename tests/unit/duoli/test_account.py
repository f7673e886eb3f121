from __future__ import annotations

import json
import math

import pytest

from duoli.account import (
    EWMA_ALPHA,
    HISTORY_SECONDS,
    NORM_CLIP,
    PEAK_SCORE_FADE,
    SPREAD_FLOOR,
    AccountState,
    apply_event,
)


def test_never_opened_account_gets_default_terms_and_is_kept(parsed):
    state = AccountState.fresh("ghost", credit_limit=5000.0, apr=0.18)
    apply_event(state, parsed("transaction", account_id="ghost", amount=50.0))
    assert (state.credit_limit, state.balance, state.opened) == (5000.0, 50.0, False)


def test_remembers_ids_for_dedup(parsed):
    state = AccountState.fresh("acc-1", 5000.0, 0.18)
    event = parsed("transaction")
    apply_event(state, event)
    assert state.has_seen(event.event_id) and not state.has_seen("other")


def test_history_and_dedup_memory_are_bounded_in_time(parsed):
    state = AccountState.fresh("acc-1", 5000.0, 0.18)
    old, label = parsed("transaction", days=0), parsed("fraud_label", days=1)
    recent = parsed("transaction", days=HISTORY_SECONDS / 86400 + 2)
    for event in (old, label, recent):
        apply_event(state, event)
    assert len(state.tx_times) == 1 and len(state.seen_ids) == 0
    assert state.has_seen(recent.event_id)
    assert not state.has_seen(old.event_id) and not state.has_seen(label.event_id)


def _spend(parsed, state, amounts):
    for hour, amount in enumerate(amounts):
        apply_event(
            state, parsed("transaction", account_id=state.account_id, amount=amount, hours=hour)
        )


def test_one_outsized_transaction_moves_the_amount_norm_by_a_clipped_step(parsed):
    state = AccountState.fresh("acc-1", 50_000.0, 0.18)
    _spend(parsed, state, [100.0, 80.0, 120.0, 100.0, 90.0, 110.0])
    before, spread = state.log_mean, max(math.sqrt(state.log_var), SPREAD_FLOOR)
    _spend(parsed, state, [500.0])
    assert state.log_mean - before == pytest.approx(EWMA_ALPHA * NORM_CLIP * spread)


def test_the_first_transactions_are_learned_in_full(parsed):
    state = AccountState.fresh("acc-1", 50_000.0, 0.18)
    _spend(parsed, state, [100.0, 1000.0])
    delta = math.log1p(1000.0) - math.log1p(100.0)
    assert state.log_mean == pytest.approx(math.log1p(100.0) + EWMA_ALPHA * delta)


def test_a_lasting_change_in_spending_still_becomes_the_norm(parsed):
    state = AccountState.fresh("acc-1", 50_000.0, 0.18)
    _spend(parsed, state, [100.0] * 6 + [300.0] * 60)
    assert 250.0 < math.expm1(state.log_mean) <= 300.0


def test_repayment_waterfall_settles_oldest_first(parsed):
    state = AccountState.fresh("acc-1", 5000.0, 0.18)
    for event in [
        parsed("transaction", amount=1000.0),
        parsed(
            "installment_due", installment_id="i-1", amount_due=100.0, due_at="2026-03-10T00:00:00Z"
        ),
        parsed(
            "installment_due", installment_id="i-2", amount_due=100.0, due_at="2026-04-10T00:00:00Z"
        ),
        parsed("repayment", days=20, installment_id=None, amount=150.0),
    ]:
        apply_event(state, event)
    assert list(state.installments) == ["i-2"]
    assert state.installments["i-2"].paid == 50.0
    assert state.on_time_streak == 0  # i-1 was paid after its due date
    assert (state.settled, state.settled_late) == (1, 1)  # the repayment history pd reads
    assert state.balance == 850.0


def test_state_survives_its_changelog_form(parsed):
    state = AccountState.fresh("acc-1", 5000.0, 0.18)
    for event in [parsed("credit_line_opened"), parsed("transaction"), parsed("installment_due")]:
        apply_event(state, event)
    assert AccountState.from_json(json.loads(json.dumps(state.to_json()))) == state


def test_the_peak_fraud_score_fades_and_a_higher_score_replaces_it():
    state = AccountState.fresh("acc-1", 5000.0, 0.18)
    assert state.peak_score(1000.0) == 0.0
    state.remember_score(0.8, 1000.0)
    assert state.peak_score(1000.0 + PEAK_SCORE_FADE) == 0.8 * math.exp(-1)
    state.remember_score(0.1, 1000.0 + PEAK_SCORE_FADE)  # lower: the faded peak stays
    assert state.last_fraud_score == 0.1
    assert state.peak_score(1000.0 + PEAK_SCORE_FADE) == 0.8 * math.exp(-1)
    state.remember_score(0.9, 1000.0 + 2 * PEAK_SCORE_FADE)
    assert state.peak_score(1000.0 + 2 * PEAK_SCORE_FADE) == 0.9


def test_a_late_transaction_can_raise_the_peak_but_never_moves_it_back_in_time():
    state = AccountState.fresh("acc-1", 5000.0, 0.18)
    state.remember_score(0.2, 5000.0)
    state.remember_score(0.7, 4000.0)  # an event within the allowed lateness
    assert (state.peak_fraud_score, state.peak_score_at) == (0.7, 5000.0)
    assert state.peak_score(3000.0) == 0.7  # before the peak's time: unfaded


def test_an_older_state_without_a_peak_reads_none():
    data = AccountState.fresh("acc-1", 5000.0, 0.18).to_json()
    del data["peak_fraud_score"], data["peak_score_at"]
    assert AccountState.from_json(data).peak_score(1e9) == 0.0
