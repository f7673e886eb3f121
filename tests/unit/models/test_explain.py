from __future__ import annotations

import math

import pytest

from models.explain import REASONS, reason_codes
from models.features import BOUNDS, FRAUD_FEATURES, FRAUD_INPUTS, fraud_inputs


def test_every_fraud_input_has_a_reason_that_reads_at_any_value():
    assert set(REASONS) == set(FRAUD_FEATURES)
    neutral = {spec.name: spec.neutral for spec in FRAUD_INPUTS}
    for name in FRAUD_FEATURES:
        for value in (*BOUNDS[name], neutral[name]):
            text = REASONS[name].describe({**neutral, name: value})
            assert isinstance(text, str) and text, name


def test_codes_are_stable_upper_case_identifiers():
    for reason in REASONS.values():
        assert reason.code.replace("_", "").isalnum() and reason.code.isupper()


def test_sentences_carry_the_actual_value_back_in_yuan_counts_and_times():
    x = fraud_inputs(
        {"amount": 1234.0, "amount_ratio": 6.2, "tx_count_1h": 5, "hour_of_day": 3}, 0.0
    )
    text = {name: REASONS[name].describe(x) for name in FRAUD_FEATURES}
    assert text["amount"] == "amount is 1,234 yuan"
    assert text["amount_ratio"] == "amount is 6.2 times the account's usual"
    assert text["tx_count_1h"] == "5 transactions in the last hour"
    assert text["hour_sin"].startswith("at 03:00 UTC")


def test_only_inputs_that_raised_the_score_become_reasons_largest_first():
    x = fraud_inputs({"amount": 900.0, "amount_ratio": 4.0, "is_new_merchant": True}, 0.6)
    reasons = reason_codes(
        [("amount", 0.2), ("rules_score", 0.9), ("new_merchant", -0.5), ("amount_ratio", 0.4),
         ("prior_tx", 0.05)],
        x,
    )  # fmt: skip
    assert [r["feature"] for r in reasons] == ["rules_score", "amount_ratio", "amount"]
    assert reasons[0] == {
        "code": "RULES_HIT",
        "feature": "rules_score",
        "text": "analysts' active rules scored it 0.60",
        "contribution": 0.9,
    }


def test_one_code_is_given_once():
    x = fraud_inputs({"hour_of_day": 4}, 0.0)
    reasons = reason_codes([("hour_sin", 0.3), ("hour_cos", 0.2), ("amount", 0.1)], x)
    assert [r["code"] for r in reasons] == ["UNUSUAL_HOUR", "LARGE_AMOUNT"]


@pytest.mark.parametrize("k", [0, 1, 3])
def test_at_most_k_reasons(k):
    x = fraud_inputs({}, 0.0)
    contributions = [(name, 1.0 + n) for n, name in enumerate(FRAUD_FEATURES)]
    assert len(reason_codes(contributions, x, k)) == k
    assert all(math.isfinite(r["contribution"]) for r in reason_codes(contributions, x, k))
