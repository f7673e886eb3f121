from __future__ import annotations

from duoli.merchant import MerchantFact, add_fact, decode_buckets, encode_buckets, merchant_features


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
