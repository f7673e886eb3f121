from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from duoli.account import AccountState, apply_event
from duoli.catalog import KNOWN_NAMES
from duoli.errors import DuoliError
from duoli.features import account_features, transaction_features
from duoli.merchant import MerchantFact, add_fact, merchant_features
from models.features import (
    BOUNDS,
    FRAUD_FEATURES,
    FRAUD_INPUTS,
    PD_FEATURES,
    PD_INPUTS,
    ModelError,
    fraud_inputs,
    guard,
    pack,
    pd_inputs,
    unpack,
)


def fresh() -> AccountState:
    return AccountState.fresh("acc-1", credit_limit=10_000.0, apr=0.18)


def facts_after(parsed, history, **last):
    state = fresh()
    for event in history:
        apply_event(state, event)
    return transaction_features(state, parsed("transaction", **last))


def assert_finite_and_bounded(inputs, names):
    assert list(inputs) == list(names)
    for name, value in inputs.items():
        low, high = BOUNDS[name]
        assert isinstance(value, float) and math.isfinite(value), name
        assert low <= value <= high, name


def test_real_facts_give_every_fraud_input_in_order(parsed):
    history = [parsed("transaction", minutes=m, amount=50.0) for m in range(0, 300, 60)]
    facts = facts_after(parsed, history, minutes=301, amount=620.0)
    assert_finite_and_bounded(fraud_inputs(facts, rules_score=0.3), FRAUD_FEATURES)


def test_a_first_transaction_with_infinite_gap_and_no_history_is_finite(parsed):
    facts = facts_after(parsed, [], amount=80.0)
    assert facts["seconds_since_prev_tx"] == math.inf
    x = fraud_inputs(facts, 0.0)
    assert_finite_and_bounded(x, FRAUD_FEATURES)
    assert x["seconds_since_prev_tx"] == pytest.approx(math.log1p(30 * 86_400))  # a month


def test_bad_values_read_neutral_and_huge_ones_are_clipped():
    neutral = {spec.name: spec.neutral for spec in FRAUD_INPUTS}
    broken = fraud_inputs(
        {"amount": math.nan, "amount_zscore": math.inf, "hour_of_day": "noon"}, math.nan
    )
    assert broken["amount"] == neutral["amount"]
    assert broken["amount_zscore"] == neutral["amount_zscore"]
    assert broken["hour_sin"] == neutral["hour_sin"]
    assert broken["rules_score"] == 0.0
    huge = fraud_inputs({"amount": 1e12, "amount_zscore": 1e9, "tx_count_1h": 10**9}, 5.0)
    assert huge["amount"] == BOUNDS["amount"][1]
    assert huge["amount_zscore"] == BOUNDS["amount_zscore"][1]
    assert huge["tx_count_1h"] == BOUNDS["tx_count_1h"][1]
    assert huge["rules_score"] == 1.0


def test_missing_optional_fields_read_like_an_account_that_never_changes_device(parsed):
    history = [parsed("transaction", minutes=0, device_id=None, city=None)]
    facts = facts_after(parsed, history, minutes=5, device_id=None, city=None)
    x = fraud_inputs(facts, 0.0)
    assert (x["new_device"], x["new_city"], x["devices_24h"], x["cities_24h"]) == (0, 0, 0, 0)
    moved = facts_after(
        parsed, [parsed("transaction", minutes=0)], minutes=5, device_id="d-9", city="Lhasa"
    )
    y = fraud_inputs(moved, 0.0)
    assert (y["new_device"], y["new_city"]) == (1.0, 1.0)
    assert y["devices_24h"] > 0 and y["cities_24h"] > 0


def test_amount_inputs_grow_with_the_amount_against_the_account_norm(parsed):
    history = [parsed("transaction", hours=h, amount=40.0) for h in range(10)]
    usual = fraud_inputs(facts_after(parsed, history, hours=11, amount=40.0), 0.0)
    spike = fraud_inputs(facts_after(parsed, history, hours=11, amount=2000.0), 0.0)
    for name in ("amount", "amount_ratio", "amount_zscore", "amount_to_available"):
        assert spike[name] > usual[name], name
    assert usual["amount_ratio"] == pytest.approx(0.0, abs=1e-9)


def test_cash_out_reads_as_a_share_of_the_line_and_as_none_without_a_line():
    def share(**facts: float) -> float:
        return fraud_inputs(facts, 0.0)["cash_out_7d_to_limit"]

    assert share(cash_out_sum_7d=2500.0, credit_limit=5000.0) == pytest.approx(math.log10(0.5))
    assert share(cash_out_sum_7d=0.0, credit_limit=5000.0) == -4.0
    assert share(cash_out_sum_7d=2500.0) == share() == -4.0  # a book without credit lines
    assert share(cash_out_sum_7d=9e9, credit_limit=5000.0) == 0.5


def test_merchant_fraud_rate_sets_frauds_against_volume_not_against_labels():
    """Labels may come for frauds only: one fraud at a busy merchant is not a risky merchant."""
    busy: dict = {}
    quiet: dict = {}
    for day in range(93, 100):
        for _ in range(200):
            add_fact(busy, MerchantFact("busy", day, amount=30.0))
        add_fact(quiet, MerchantFact("quiet", day, amount=30.0))
    add_fact(busy, MerchantFact("busy", 99, label=True))
    for _ in range(5):
        add_fact(quiet, MerchantFact("quiet", 99, label=True))
    busy_facts, quiet_facts = merchant_features(busy, 100), merchant_features(quiet, 100)
    assert busy_facts["merchant_fraud_share"] == quiet_facts["merchant_fraud_share"] == 1.0
    assert (
        fraud_inputs(quiet_facts, 0.0)["merchant_fraud_rate"]
        > 2 * fraud_inputs(busy_facts, 0.0)["merchant_fraud_rate"]
    )
    assert fraud_inputs(merchant_features({}, 100), 0.0)["merchant_fraud_rate"] == 0.0


def test_pd_inputs_from_the_account_standing(parsed):
    state = fresh()
    apply_event(state, parsed("transaction", amount=3000.0))
    apply_event(state, parsed("installment_due", installment_id="i-1", amount_due=500.0))
    due = state.installments["i-1"].due_at
    on_time = pd_inputs(account_features(state, due - 1, 0.0))
    late = pd_inputs(account_features(state, due + 10 * 86_400, 0.0))
    assert_finite_and_bounded(on_time, PD_FEATURES)
    assert late["days_past_due"] > on_time["days_past_due"] == 0.0
    assert late["overdue_installments"] > on_time["overdue_installments"]
    assert on_time["never_settled"] == 1.0
    assert pd_inputs({}) == {spec.name: spec.neutral for spec in PD_INPUTS}


def test_pack_and_unpack_round_trip_and_guard_again():
    x = fraud_inputs({"amount": 120.0, "hour_of_day": 22}, 0.2)
    assert unpack(pack(x, FRAUD_FEATURES), FRAUD_FEATURES) == x
    values = pack(x, FRAUD_FEATURES)
    values[:4] = [math.nan, math.inf, -math.inf, "2.5"]
    back = unpack(values, FRAUD_FEATURES)
    assert [back[name] for name in FRAUD_FEATURES[:4]] == [0.0, 0.0, 0.0, 2.5]
    with pytest.raises(ModelError, match="expected"):
        unpack(values[:-1], FRAUD_FEATURES)
    assert issubclass(ModelError, DuoliError)


def test_guard_keeps_exactly_the_model_inputs_finite_and_bounded():
    dirty = {"amount": math.nan, "rules_score": 7.0, "tx_count_1h": -math.inf, "stray": 1.0}
    clean = guard(dirty, FRAUD_INPUTS)
    assert_finite_and_bounded(clean, FRAUD_FEATURES)
    assert clean["rules_score"] == 1.0 and "stray" not in clean
    assert dirty["amount"] != dirty["amount"]  # the caller's dict is untouched


HOSTILE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.none(),
    st.booleans(),
    st.text(max_size=3),
)


@settings(max_examples=300, deadline=None)
@example(  # a ratio to an infinite limit once read log10(0); a huge hour, sin(inf)
    facts={"amount": 50.0, "credit_limit": math.inf, "hour_of_day": 1e308}, rules_score=math.inf
)
@given(
    facts=st.fixed_dictionaries({}, optional=dict.fromkeys(sorted(KNOWN_NAMES), HOSTILE)),
    rules_score=st.floats(allow_nan=True, allow_infinity=True),
)
def test_any_facts_give_finite_inputs_within_their_bounds(facts, rules_score):
    """Whatever the facts hold (infinities, huge numbers, text), the inputs are finite
    and within their bounds, and reading them never raises."""
    x = fraud_inputs(facts, rules_score)
    account = pd_inputs(facts)
    for name, value in (*x.items(), *account.items()):
        low, high = BOUNDS[name]
        assert math.isfinite(value) and low <= value <= high, (name, value)
