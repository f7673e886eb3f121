"""Merchant-level aggregates: volume and confirmed frauds, in event-time day buckets. Pure.

Account and merchant live on different partitions. The account side forwards a
``MerchantFact`` for each transaction and label; the merchant side adds it to the bucket
of its day. Scoring at day ``d`` reads only buckets before ``d``: the merchant features
are those of the previous closed days, so they hold only labels already known, and a
replay gives the same figures as live traffic.

>>> buckets = {}
>>> add_fact(buckets, MerchantFact("m1", day=100, amount=50.0))
>>> add_fact(buckets, MerchantFact("m1", day=101, amount=0.0, label=True))
>>> merchant_features(buckets, today=102)["merchant_fraud_share"]
1.0
>>> merchant_features(buckets, today=101)["merchant_frauds_30d"]
0
>>> [merchant_features(buckets, today)["merchant_frauds_1d"] for today in (102, 103)]
[1, 0]
>>> [merchant_features(buckets, today)["merchant_frauds_7d"] for today in (108, 109)]
[1, 0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "MerchantFact",
    "add_bucket",
    "add_fact",
    "as_bucket",
    "decode_buckets",
    "encode_buckets",
    "merchant_features",
]

Buckets = dict[int, list[float]]  # day -> [transactions, amount, labelled, frauds]
VOLUME_DAYS = 7
LABEL_DAYS = 30
KEEP_DAYS = LABEL_DAYS + 1


@dataclass(frozen=True, slots=True)
class MerchantFact:
    """One transaction (label None) or one label at a merchant, dated by event-time day."""

    merchant_id: str
    day: int
    amount: float = 0.0
    label: bool | None = None


def as_bucket(fact: MerchantFact) -> list[float]:
    """The fact as a bucket increment: [transactions, amount, labelled, frauds]."""
    if fact.label is None:
        return [1, fact.amount, 0, 0]
    return [0, 0.0, 1, int(fact.label)]


def add_bucket(buckets: Buckets, day: int, increment: list[float]) -> None:
    """Add an increment (one fact, or a batch's tally) to its day; forget days too old."""
    bucket = buckets.setdefault(day, [0, 0.0, 0, 0])
    for index, value in enumerate(increment):
        bucket[index] += value
    for old in [old for old in buckets if old < day - KEEP_DAYS]:
        del buckets[old]


def add_fact(buckets: Buckets, fact: MerchantFact) -> None:
    add_bucket(buckets, fact.day, as_bucket(fact))


def merchant_features(buckets: Buckets, today: int) -> dict[str, Any]:
    """The catalog's merchant features as of the start of ``today``."""
    volume = [b for day, b in buckets.items() if today - VOLUME_DAYS <= day < today]
    month = [b for day, b in buckets.items() if today - LABEL_DAYS <= day < today]
    labelled = int(sum(b[2] for b in month))
    frauds = int(sum(b[3] for b in month))
    week = int(sum(b[3] for b in volume))
    yesterday = buckets.get(today - 1, (0, 0.0, 0, 0))
    return {
        "merchant_tx_count_7d": int(sum(b[0] for b in volume)),
        "merchant_amount_7d": round(sum(b[1] for b in volume), 2),
        "merchant_labelled_30d": labelled,
        "merchant_frauds_30d": frauds,
        "merchant_fraud_share": frauds / labelled if labelled else 0.0,
        "merchant_frauds_7d": week,
        "merchant_frauds_1d": int(yesterday[3]),
        "merchant_tx_count_1d": int(yesterday[0]),
        "merchant_amount_1d": round(yesterday[1], 2),
        "merchant_tx_count_30d": int(sum(b[0] for b in month)),
        "merchant_amount_30d": round(sum(b[1] for b in month), 2),
    }


def encode_buckets(buckets: Buckets) -> str:
    """The Redis form: one JSON field per merchant, rewritten whole so old days vanish."""
    return orjson.dumps({str(day): bucket for day, bucket in sorted(buckets.items())}).decode()


def decode_buckets(text: str | None) -> Buckets:
    return {int(day): bucket for day, bucket in orjson.loads(text).items()} if text else {}
