from __future__ import annotations

import math

from duoli.account import AccountState, apply_event
from duoli.catalog import KNOWN_NAMES
from duoli.features import repayment_features, transaction_features


def fresh() -> AccountState:
    return AccountState.fresh("acc-1", credit_limit=10_000.0, apr=0.18)


def replay(state: AccountState, events) -> AccountState:
    for event in events:
        apply_event(state, event)
    return state


def test_both_feature_sets_provide_exactly_the_catalog(parsed):
    state = fresh()
    assert set(transaction_features(state, parsed("transaction"))) == KNOWN_NAMES
    assert set(repayment_features(state, parsed("repayment"))) == KNOWN_NAMES


def test_window_edges_are_exact(parsed):
    state = replay(
        fresh(),
        [
            parsed("transaction", minutes=0, amount=10.0),
            parsed("transaction", minutes=30, amount=20.0),
        ],
    )
    at_89 = transaction_features(state, parsed("transaction", minutes=89, amount=5.0))
    at_90 = transaction_features(state, parsed("transaction", minutes=90, amount=5.0))
    assert (at_89["tx_count_1h"], at_89["tx_sum_1h"]) == (2, 25.0)
    assert (at_90["tx_count_1h"], at_90["tx_sum_1h"]) == (1, 5.0)
    assert at_90["tx_count_24h"] == 3 and at_90["tx_sum_24h"] == 35.0


def test_windows_cover_one_hour_to_thirty_days(parsed):
    history = [parsed("transaction", days=day, amount=100.0) for day in (0, 20, 26, 29.5)]
    state = replay(fresh(), history)
    facts = transaction_features(state, parsed("transaction", days=30, amount=100.0))
    assert [facts[f"tx_count_{w}"] for w in ("1h", "24h", "7d", "30d")] == [1, 2, 3, 4]


def test_out_of_order_event_lands_in_its_own_window(parsed):
    """A late event sees only what happened before it, not the events that overtook it."""
    state = replay(
        fresh(),
        [
            parsed("transaction", minutes=0),
            parsed("transaction", minutes=50),
            parsed("transaction", minutes=120),
        ],
    )
    late = transaction_features(state, parsed("transaction", minutes=55))
    assert late["tx_count_1h"] == 3  # minutes 0, 50 and itself; not minute 120
    assert late["seconds_since_prev_tx"] == 5 * 60


def test_distinct_entities_and_novelty(parsed):
    state = replay(
        fresh(),
        [
            parsed("transaction", minutes=0, merchant_id="m-1", device_id="d-1", city="Shenzhen"),
            parsed("transaction", minutes=10, merchant_id="m-2", device_id="d-1", city="Shenzhen"),
        ],
    )
    facts = transaction_features(
        state, parsed("transaction", minutes=20, merchant_id="m-3", device_id="d-9", city="Lhasa")
    )
    assert facts["distinct_merchants_1h"] == 3
    assert facts["distinct_devices_1h"] == 2
    assert facts["distinct_cities_24h"] == 2
    assert facts["is_new_device"] and facts["is_new_city"] and facts["is_new_merchant"]
    again = transaction_features(state, parsed("transaction", minutes=20, merchant_id="m-1"))
    assert not again["is_new_device"] and not again["is_new_merchant"]


def test_first_transaction_has_no_history(parsed):
    facts = transaction_features(fresh(), parsed("transaction", device_id="d-7"))
    assert facts["seconds_since_prev_tx"] == math.inf
    assert not facts["is_new_device"]
    assert facts["amount_ratio"] == 1.0 and facts["amount_zscore"] == 0.0


def test_amount_far_above_the_norm(parsed):
    habits = [
        parsed("transaction", hours=h, amount=amount)
        for h, amount in enumerate([80, 120, 95, 110, 100, 90])
    ]
    state = replay(fresh(), habits)
    usual = transaction_features(state, parsed("transaction", hours=10, amount=105.0))
    spike = transaction_features(state, parsed("transaction", hours=10, amount=3000.0))
    assert abs(usual["amount_zscore"]) < 1.5
    assert spike["amount_zscore"] > 5 and spike["amount_ratio"] > 20


def test_card_testing_and_cash_counters(parsed):
    small = [parsed("transaction", minutes=m, amount=2.0) for m in (0, 2, 4)]
    cash = [
        parsed("transaction", minutes=m, amount=500.0, kind="cash_withdrawal") for m in (10, 20)
    ]
    state = replay(fresh(), small + cash)
    facts = transaction_features(
        state, parsed("transaction", minutes=30, amount=900.0, kind="cash_withdrawal")
    )
    assert facts["small_tx_count_1h"] == 3
    assert (facts["cash_withdrawal_count_24h"], facts["cash_withdrawal_sum_24h"]) == (3, 1900.0)


def test_cash_out_counts_cash_and_draw_downs_of_seven_days(parsed):
    history = [
        parsed("transaction", days=0, amount=700.0, kind="loan_drawdown"),  # 8 days before
        parsed("transaction", days=3, amount=900.0, kind="purchase"),
        parsed("transaction", days=4, amount=300.0, kind="cash_withdrawal"),
        parsed("transaction", days=6, amount=1000.0, kind="loan_drawdown"),
    ]
    state = replay(fresh(), history)
    draw = transaction_features(
        state, parsed("transaction", days=8, amount=50.0, kind="loan_drawdown")
    )
    buy = transaction_features(state, parsed("transaction", days=8, amount=50.0))
    assert (draw["cash_out_sum_7d"], buy["cash_out_sum_7d"]) == (1350.0, 1300.0)


def test_utilisation_before_and_after(parsed):
    state = replay(
        fresh(),
        [
            parsed("credit_line_opened", credit_limit=2000, apr=0.2),
            parsed("transaction", amount=500.0),
        ],
    )
    facts = transaction_features(
        state, parsed("transaction", minutes=1, amount=1400.0, kind="loan_drawdown")
    )
    assert facts["utilisation"] == 0.25 and facts["utilisation_after"] == 0.95
    assert facts["is_opened"] and facts["credit_limit"] == 2000


def test_installments_days_past_due_and_streak(parsed):
    state = replay(
        fresh(),
        [
            parsed("transaction", amount=900.0),
            parsed(
                "installment_due",
                installment_id="i-1",
                amount_due=300.0,
                due_at="2026-03-10T00:00:00Z",
            ),
            parsed("repayment", days=5, installment_id="i-1", amount=300.0),
            parsed(
                "installment_due",
                days=6,
                installment_id="i-2",
                amount_due=300.0,
                due_at="2026-04-10T00:00:00Z",
            ),
        ],
    )
    on_time = repayment_features(
        state, parsed("repayment", days=30, installment_id="i-2", amount=30.0)
    )
    assert on_time["on_time_streak"] == 1 and on_time["outstanding_installments"] == 1
    assert on_time["repayment_ratio"] == 0.1
    assert on_time["days_past_due"] == 0
    late = transaction_features(state, parsed("transaction", days=48))  # 2026-04-19 09:00
    assert late["days_past_due"] == 9 and late["overdue_installments"] == 1
