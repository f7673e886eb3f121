"""The starter library: it loads, and every rule fires on its pattern and not on a near miss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from duoli.catalog import KNOWN_NAMES
from rules import LIBRARY_DIR, RuleSet, load_rules

Facts = dict[str, Any]
FactsFactory = Callable[..., Facts]

NEUTRAL: Facts = {
    "event_type": "transaction",
    "account_id": "acct-1",
    "amount": 120.0,
    "kind": "purchase",
    "currency": "CNY",
    "merchant_id": "m-1",
    "merchant_category": "grocery",
    "channel": "app",
    "device_id": "d-1",
    "city": "杭州",
    "hour_of_day": 4,
    "tx_count_1h": 1,
    "tx_count_24h": 3,
    "tx_count_7d": 9,
    "tx_count_30d": 30,
    "tx_sum_1h": 120.0,
    "tx_sum_24h": 400.0,
    "tx_sum_7d": 1200.0,
    "tx_sum_30d": 4000.0,
    "distinct_merchants_1h": 1,
    "distinct_merchants_24h": 3,
    "distinct_merchants_7d": 6,
    "distinct_merchants_30d": 12,
    "distinct_devices_1h": 1,
    "distinct_devices_24h": 1,
    "distinct_devices_7d": 1,
    "distinct_devices_30d": 2,
    "distinct_cities_1h": 1,
    "distinct_cities_24h": 1,
    "distinct_cities_7d": 1,
    "distinct_cities_30d": 2,
    "small_tx_count_1h": 0,
    "small_tx_count_24h": 1,
    "cash_withdrawal_count_24h": 0,
    "cash_withdrawal_sum_24h": 0.0,
    "cash_out_sum_7d": 0.0,
    "typical_amount": 110.0,
    "amount_ratio": 1.1,
    "amount_zscore": 0.2,
    "seconds_since_prev_tx": 5400.0,
    "prior_tx_count": 40,
    "peak_fraud_score": 0.0,
    "is_new_device": False,
    "is_new_city": False,
    "is_new_merchant": False,
    "credit_limit": 8000.0,
    "apr": 0.18,
    "balance": 1500.0,
    "utilisation": 0.1875,
    "utilisation_after": 0.2025,
    "account_age_days": 200,
    "is_opened": True,
    "outstanding_installments": 1,
    "overdue_installments": 0,
    "days_past_due": 0,
    "on_time_streak": 5,
    "settled_installments": 6,
    "settled_late": 1,
    "amount_owed": 800.0,
    "repayment_ratio": 1.0,
    "merchant_tx_count_7d": 900,
    "merchant_amount_7d": 95000.0,
    "merchant_labelled_30d": 2,
    "merchant_frauds_30d": 0,
    "merchant_fraud_share": 0.0,
    "merchant_frauds_7d": 0,
    "merchant_frauds_1d": 0,
    "merchant_tx_count_1d": 0,
    "merchant_amount_1d": 0.0,
    "merchant_tx_count_30d": 0,
    "merchant_amount_30d": 0.0,
    "merchant_excess_3d": 0.0,
    "merchant_excess_7d": 0.0,
    "confirmed_frauds": 0,
    "days_since_confirmed_fraud": -1.0,
}
"""An ordinary borrower buying groceries: no starter rule should fire on it."""

# rule id -> (event type, fact overrides that trigger it, near misses that must not)
CASES: dict[str, tuple[str, list[Facts], list[Facts]]] = {
    "velocity-burst-1h": ("transaction", [{"tx_count_1h": 6}], [{"tx_count_1h": 5}]),
    "merchant-hopping-1h": (
        "transaction",
        [{"distinct_merchants_1h": 5}],
        [{"distinct_merchants_1h": 4}],
    ),
    "rapid-repeat-high-amount": (
        "transaction",
        [{"seconds_since_prev_tx": 12.0, "amount": 1000.0}],
        [
            {"seconds_since_prev_tx": 45.0, "amount": 1500.0},
            {"seconds_since_prev_tx": 12.0, "amount": 999.0},
            {"seconds_since_prev_tx": float("inf"), "amount": 1500.0, "prior_tx_count": 0},
        ],
    ),
    "card-testing-then-large": (
        "transaction",
        [{"small_tx_count_1h": 3, "amount": 500.0}],
        [{"small_tx_count_1h": 2, "amount": 800.0}, {"small_tx_count_1h": 5, "amount": 499.0}],
    ),
    "card-testing-probes-24h": (
        "transaction",
        [{"small_tx_count_24h": 8, "distinct_merchants_24h": 4}],
        [
            {"small_tx_count_24h": 7, "distinct_merchants_24h": 6},
            {"small_tx_count_24h": 12, "distinct_merchants_24h": 3},
        ],
    ),
    "amount-far-above-norm": (
        "transaction",
        [{"prior_tx_count": 5, "amount_zscore": 4.2, "amount": 1000.0}],
        [
            {"prior_tx_count": 4, "amount_zscore": 4.2, "amount": 1500.0},
            {"prior_tx_count": 5, "amount_zscore": 3.5, "amount": 1500.0},
            {"prior_tx_count": 5, "amount_zscore": 6.0, "amount": 999.0},
        ],
    ),
    "amount-ratio-spike": (
        "transaction",
        [{"prior_tx_count": 5, "amount_ratio": 12.0, "amount": 1200.0}],
        [
            {"prior_tx_count": 4, "amount_ratio": 12.0, "amount": 1200.0},
            {"prior_tx_count": 30, "amount_ratio": 9.0, "amount": 1200.0},
            {"prior_tx_count": 30, "amount_ratio": 15.0, "amount": 900.0},
        ],
    ),
    "fresh-account-large-amount": (
        "transaction",
        [
            {"account_age_days": 2, "amount": 4000.0},
            {"account_age_days": 0, "amount": 2000.0, "credit_limit": 3000.0},
        ],
        [
            {"account_age_days": 4, "amount": 4000.0},
            {"account_age_days": 2, "amount": 3999.0},
            {"account_age_days": 0, "amount": 5000.0, "is_opened": False},
        ],
    ),
    "new-device-high-amount": (
        "transaction",
        [{"is_new_device": True, "amount": 2000.0}],
        [{"is_new_device": False, "amount": 5000.0}, {"is_new_device": True, "amount": 1999.0}],
    ),
    "new-city-high-amount": (
        "transaction",
        [{"is_new_city": True, "amount": 2000.0}],
        [{"is_new_city": False, "amount": 5000.0}, {"is_new_city": True, "amount": 1999.0}],
    ),
    "new-device-and-city": (
        "transaction",
        [{"is_new_device": True, "is_new_city": True, "amount": 500.0}],
        [
            {"is_new_device": True, "is_new_city": False, "amount": 600.0},
            {"is_new_device": True, "is_new_city": True, "amount": 499.0},
        ],
    ),
    "many-devices-24h": (
        "transaction",
        [{"distinct_devices_24h": 3}],
        [{"distinct_devices_24h": 2}],
    ),
    "many-cities-24h": ("transaction", [{"distinct_cities_24h": 3}], [{"distinct_cities_24h": 2}]),
    "cash-withdrawal-burst": (
        "transaction",
        [{"kind": "cash_withdrawal", "cash_withdrawal_count_24h": 3}],
        [
            {"kind": "cash_withdrawal", "cash_withdrawal_count_24h": 2},
            {"kind": "purchase", "cash_withdrawal_count_24h": 3},
        ],
    ),
    "cash-withdrawal-volume": (
        "transaction",
        [
            {"kind": "cash_withdrawal", "cash_withdrawal_sum_24h": 5000.0},
            {
                "kind": "cash_withdrawal",
                "cash_withdrawal_sum_24h": 10000.0,
                "credit_limit": 20000.0,
            },
        ],
        [
            {"kind": "cash_withdrawal", "cash_withdrawal_sum_24h": 4999.0},
            {"kind": "cash_withdrawal", "cash_withdrawal_sum_24h": 9000.0, "credit_limit": 20000.0},
            {"kind": "purchase", "cash_withdrawal_sum_24h": 6000.0},
        ],
    ),
    "drawdown-maxes-line": (
        "transaction",
        [{"kind": "loan_drawdown", "utilisation_after": 0.95}],
        [
            {"kind": "loan_drawdown", "utilisation_after": 0.94},
            {"kind": "purchase", "utilisation_after": 0.99},
        ],
    ),
    "fresh-account-cash-out": (
        "transaction",
        [
            {"kind": "cash_withdrawal", "account_age_days": 6, "amount": 4000.0},
            {
                "kind": "loan_drawdown",
                "account_age_days": 0,
                "amount": 1000.0,
                "credit_limit": 2000.0,
            },
        ],
        [
            {"kind": "purchase", "account_age_days": 1, "amount": 5000.0},
            {"kind": "cash_withdrawal", "account_age_days": 7, "amount": 5000.0},
            {"kind": "cash_withdrawal", "account_age_days": 1, "amount": 3999.0},
            {
                "kind": "loan_drawdown",
                "account_age_days": 0,
                "amount": 999.0,
                "credit_limit": 1000.0,
            },
            {"kind": "loan_drawdown", "account_age_days": 0, "amount": 5000.0, "is_opened": False},
        ],
    ),
    "high-risk-merchant": (
        "transaction",
        [
            {
                "merchant_labelled_30d": 6,
                "merchant_frauds_30d": 3,
                "merchant_fraud_share": 0.5,
                "merchant_tx_count_30d": 300,
            },
            {
                "kind": "cash_withdrawal",
                "merchant_labelled_30d": 3,
                "merchant_frauds_30d": 3,
                "merchant_fraud_share": 1.0,
            },
        ],
        [
            {"merchant_labelled_30d": 2, "merchant_frauds_30d": 2, "merchant_fraud_share": 1.0},
            {"merchant_labelled_30d": 10, "merchant_frauds_30d": 4, "merchant_fraud_share": 0.4},
            {
                "merchant_labelled_30d": 3,
                "merchant_frauds_30d": 3,
                "merchant_fraud_share": 1.0,
                "merchant_tx_count_30d": 301,
            },
            {
                "kind": "loan_drawdown",
                "merchant_labelled_30d": 3,
                "merchant_frauds_30d": 3,
                "merchant_fraud_share": 1.0,
            },
        ],
    ),
    "merchant-fraud-cluster": (
        "transaction",
        [
            {"merchant_labelled_30d": 40, "merchant_frauds_30d": 5, "merchant_fraud_share": 0.125},
            {"merchant_frauds_30d": 5, "merchant_tx_count_30d": 1000},
        ],
        [
            {"merchant_labelled_30d": 40, "merchant_frauds_30d": 4, "merchant_fraud_share": 0.1},
            {"merchant_frauds_30d": 5, "merchant_tx_count_30d": 1001},
            {"kind": "loan_drawdown", "merchant_frauds_30d": 9},
        ],
    ),
    "new-risky-merchant-large": (
        "transaction",
        [
            {
                "is_new_merchant": True,
                "merchant_labelled_30d": 5,
                "merchant_frauds_30d": 1,
                "merchant_fraud_share": 0.2,
                "amount": 1000.0,
            }
        ],
        [
            {
                "is_new_merchant": False,
                "merchant_labelled_30d": 5,
                "merchant_frauds_30d": 1,
                "merchant_fraud_share": 0.2,
                "amount": 1000.0,
            },
            {
                "is_new_merchant": True,
                "merchant_labelled_30d": 10,
                "merchant_frauds_30d": 1,
                "merchant_fraud_share": 0.1,
                "amount": 1000.0,
            },
            {
                "is_new_merchant": True,
                "merchant_labelled_30d": 2,
                "merchant_frauds_30d": 1,
                "merchant_fraud_share": 0.5,
                "amount": 1000.0,
            },
            {
                "is_new_merchant": True,
                "merchant_labelled_30d": 5,
                "merchant_frauds_30d": 1,
                "merchant_fraud_share": 0.2,
                "amount": 999.0,
            },
        ],
    ),
    "minimum-only-repayment": (
        "repayment",
        [{"repayment_ratio": 0.1}],
        [{"repayment_ratio": 0.11}],
    ),
    "partial-repayment-while-overdue": (
        "repayment",
        [{"repayment_ratio": 0.5, "days_past_due": 3}],
        [
            {"repayment_ratio": 0.5, "days_past_due": 0},
            {"repayment_ratio": 0.95, "days_past_due": 3},
            {"repayment_ratio": 0.08, "days_past_due": 3},
        ],
    ),
    "spending-while-past-due-7d": (
        "transaction",
        [{"days_past_due": 7}, {"days_past_due": 29}],
        [{"days_past_due": 6}, {"days_past_due": 30}],
    ),
    "spending-while-past-due-30d": (
        "transaction",
        [{"days_past_due": 30}],
        [{"days_past_due": 29}],
    ),
    "drawdown-while-overdue": (
        "transaction",
        [{"kind": "loan_drawdown", "overdue_installments": 1, "days_past_due": 2}],
        [
            {"kind": "purchase", "overdue_installments": 1, "days_past_due": 2},
            {"kind": "loan_drawdown", "overdue_installments": 0},
        ],
    ),
}


@pytest.fixture(scope="module")
def library() -> RuleSet:
    return load_rules(LIBRARY_DIR)


@pytest.fixture
def make_facts() -> FactsFactory:
    """A complete facts dict for an ordinary borrower, with any name overridden."""

    def make(**overrides: Any) -> Facts:
        unknown = set(overrides) - KNOWN_NAMES
        assert not unknown, f"not in the catalog: {unknown}"
        return {**NEUTRAL, **overrides}

    return make


def _hit_ids(library: RuleSet, facts: Facts, event_type: str) -> list[str]:
    evaluation = library.evaluate(facts, event_type)
    assert evaluation.errors == ()
    return [hit.rule_id for hit in evaluation.hits]


def test_neutral_facts_cover_the_whole_catalog() -> None:
    assert set(NEUTRAL) == KNOWN_NAMES


def test_the_library_is_a_few_themed_files_of_active_version_1_rules(library: RuleSet) -> None:
    assert 15 <= len(library.rules) <= 25
    assert len(list(LIBRARY_DIR.glob("*.yaml"))) >= 4
    assert {(rule.mode, rule.version) for rule in library.rules} == {("active", 1)}


def test_every_library_rule_has_a_case() -> None:
    library_ids = {rule.id for rule in load_rules(LIBRARY_DIR).rules}
    assert library_ids == set(CASES)


@pytest.mark.parametrize("event_type", ["transaction", "repayment"])
def test_an_ordinary_event_triggers_nothing(
    library: RuleSet, make_facts: FactsFactory, event_type: str
) -> None:
    assert _hit_ids(library, make_facts(event_type=event_type), event_type) == []


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_each_rule_fires_on_its_pattern(
    library: RuleSet, make_facts: FactsFactory, rule_id: str
) -> None:
    event_type, triggers, _ = CASES[rule_id]
    for overrides in triggers:
        facts = make_facts(event_type=event_type, **overrides)
        assert rule_id in _hit_ids(library, facts, event_type), overrides


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_each_rule_stays_quiet_on_a_near_miss(
    library: RuleSet, make_facts: FactsFactory, rule_id: str
) -> None:
    event_type, _, near_misses = CASES[rule_id]
    for overrides in near_misses:
        facts = make_facts(event_type=event_type, **overrides)
        assert rule_id not in _hit_ids(library, facts, event_type), overrides


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_each_rule_only_runs_for_its_event_type(
    library: RuleSet, make_facts: FactsFactory, rule_id: str
) -> None:
    event_type, triggers, _ = CASES[rule_id]
    other = "repayment" if event_type == "transaction" else "transaction"
    assert rule_id not in _hit_ids(library, make_facts(**triggers[0]), other)


def test_delinquency_rules_are_the_ones_about_paying(library: RuleSet) -> None:
    delinquency = {rule.id for rule in library.rules if rule.kind == "delinquency"}
    assert delinquency == {
        "minimum-only-repayment",
        "partial-repayment-while-overdue",
        "spending-while-past-due-7d",
        "spending-while-past-due-30d",
        "drawdown-while-overdue",
    }
