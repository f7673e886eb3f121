from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from duoli.merchant import (
    EMPTY_BUCKET,
    MerchantFact,
    add_bucket,
    add_exactly,
    add_fact,
    as_bucket,
    decode_buckets,
    encode_buckets,
    excess,
    merchant_features,
)


def test_only_days_before_today_count():
    buckets: dict = {}
    for day in (90, 95, 99):
        add_fact(buckets, MerchantFact("m", day, amount=10.0))
    add_fact(buckets, MerchantFact("m", 100, amount=999.0))
    facts = merchant_features(buckets, today=100)
    assert (facts["merchant_tx_count_7d"], facts["merchant_amount_7d"]) == (2, 20.0)


def test_fraud_share_counts_only_labels_known_before_today():
    buckets: dict = {}
    add_fact(buckets, MerchantFact("m", 50, label=True))
    add_fact(buckets, MerchantFact("m", 51, label=False))
    add_fact(buckets, MerchantFact("m", 52, label=True))
    assert merchant_features(buckets, today=52)["merchant_fraud_share"] == 0.5
    assert merchant_features(buckets, today=53)["merchant_frauds_30d"] == 2


def test_old_buckets_are_forgotten_and_the_redis_form_round_trips():
    buckets: dict = {}
    add_fact(buckets, MerchantFact("m", 1, amount=5.0))
    add_fact(buckets, MerchantFact("m", 100, amount=5.0))
    assert list(buckets) == [100]
    assert decode_buckets(encode_buckets(buckets)) == buckets


def test_excess_counts_purchases_above_their_accounts_norm_only():
    assert excess("purchase", 2.5) == 2.5
    assert excess("purchase", -1.0) == 0.0  # a cheap purchase does not cancel a dear one
    assert excess("purchase", 50.0) == 4.0  # one sale cannot make a day
    assert excess("purchase", math.nan) == 0.0
    assert excess("cash_withdrawal", 3.0) == excess("loan_drawdown", 3.0) == 0.0


def test_mean_excess_covers_three_and_seven_days_and_damps_a_quiet_merchant():
    buckets: dict = {}
    for day in (93, 98, 99):
        add_fact(buckets, MerchantFact("m", day, amount=10.0, excess=3.0))
    facts = merchant_features(buckets, today=100)
    assert facts["merchant_excess_3d"] == round(6.0 / (2 + 3), 4)  # 3 ordinary sales added
    assert facts["merchant_excess_7d"] == round(9.0 / (3 + 3), 4)


def test_a_bucket_stored_before_excess_existed_reads_its_excess_as_zero():
    buckets = decode_buckets('{"99": [4, 100.0, 1, 1]}')  # as a worker of an earlier version wrote
    add_fact(buckets, MerchantFact("m", 99, amount=10.0, excess=2.0))
    assert buckets[99] == [5, 110.0, 1, 1, 2.0]
    facts = merchant_features(decode_buckets('{"99": [4, 100.0, 1, 1]}'), today=100)
    assert (facts["merchant_tx_count_1d"], facts["merchant_excess_3d"]) == (4, 0.0)


sales = st.lists(
    st.builds(
        MerchantFact,
        merchant_id=st.just("m"),
        day=st.integers(100, 102),
        amount=st.floats(0.01, 50_000, allow_nan=False),
        excess=st.floats(0, 4, allow_nan=False),
    ),
    max_size=40,
)


@given(sales, st.randoms(use_true_random=False), st.integers(1, 5))
def test_buckets_do_not_depend_on_the_order_or_batching_of_the_facts(facts, random, batches):
    """Workers tally a batch's facts, and the merchant agent adds the tallies, in whatever
    order the partitions' batches come: the stored buckets must come out the same."""
    one_by_one: dict[int, list[float]] = {}
    for fact in facts:
        add_fact(one_by_one, fact)
    shuffled = random.sample(facts, len(facts))
    tallied: dict[int, list[float]] = {}
    for start in range(batches):
        tallies: dict[int, list[float]] = {}
        for fact in shuffled[start::batches]:
            add_exactly(tallies.setdefault(fact.day, list(EMPTY_BUCKET)), as_bucket(fact))
        for day, tally in tallies.items():
            add_bucket(tallied, day, tally)
    assert encode_buckets(tallied) == encode_buckets(one_by_one)
