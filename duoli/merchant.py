"""Merchant-level aggregates: volume, amounts and confirmed frauds, in event-time day
buckets. Pure.

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
>>> add_fact(buckets, MerchantFact("m1", day=100, amount=80.0, excess=2.0))
>>> [merchant_features(buckets, today)["merchant_excess_3d"] for today in (101, 103, 104)]
[0.4, 0.4, 0.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "EMPTY_BUCKET",
    "MerchantFact",
    "add_bucket",
    "add_exactly",
    "add_fact",
    "as_bucket",
    "decode_buckets",
    "encode_buckets",
    "excess",
    "merchant_features",
]

Buckets = dict[int, list[float]]  # day -> [transactions, amount, labelled, frauds, excess]
EMPTY_BUCKET = (0, 0.0, 0, 0, 0.0)
SCALES = (1, 100, 1, 1, 1_000_000)  # the units each field adds up in: fen, millionths
VOLUME_DAYS = 7
LABEL_DAYS = 30
KEEP_DAYS = LABEL_DAYS + 1
EXCESS_DAYS = 3  # a leak shows in a few days' sales; one day of a small merchant is noise
EXCESS_PRIOR_TX = 3  # a mean excess counts that many ordinary sales too
EXCESS_CAP = 4.0  # one sale moves its merchant's excess by at most this many spreads


@dataclass(frozen=True, slots=True)
class MerchantFact:
    """One transaction (label None) or one label at a merchant, dated by event-time day.

    ``excess`` is how far a purchase's amount lies above its account's usual ones, in
    spreads: a merchant whose customers all pay more than usual is overcharging, or being
    used with stolen credentials, days before any label says so.
    """

    merchant_id: str
    day: int
    amount: float = 0.0
    label: bool | None = None
    excess: float = 0.0


def excess(kind: str, amount_zscore: float) -> float:
    """What a sale adds to its merchant's excess: a purchase's amount z-score against the
    account's usual amounts, if positive, capped so one sale cannot make a day. Cash and
    loan draws add 0: they are larger than an account's purchases by nature."""
    if kind != "purchase" or amount_zscore != amount_zscore:
        return 0.0
    return min(max(amount_zscore, 0.0), EXCESS_CAP)


def as_bucket(fact: MerchantFact) -> list[float]:
    """The fact as a bucket increment: [transactions, amount, labelled, frauds, excess]."""
    if fact.label is None:
        return [1, fact.amount, 0, 0, fact.excess]
    return [0, 0.0, 1, int(fact.label), 0.0]


def add_exactly(bucket: list[float], increment: Sequence[float]) -> None:
    """Add an increment to a bucket in place, on the grid of ``SCALES``: integer sums, so
    the result does not depend on the order the facts come in (batches and partitions
    interleave differently from run to run, and float sums in arrival order made two
    replays of one file differ in the last digit, then in a rounded feature).

    >>> bucket = [0, 0.0, 0, 0, 0.0]
    >>> for amount in (0.1, 0.2, 0.3):
    ...     add_exactly(bucket, [1, amount, 0, 0, 0.0])
    >>> bucket[:2], 0.1 + 0.2 + 0.3
    ([3, 0.6], 0.6000000000000001)
    """
    for index, (value, scale) in enumerate(zip(increment, SCALES, strict=True)):
        total = round(bucket[index] * scale) + round(value * scale)
        bucket[index] = total if scale == 1 else total / scale


def add_bucket(buckets: Buckets, day: int, increment: list[float]) -> None:
    """Add an increment (one fact, or a batch's tally) to its day; forget days too old."""
    bucket = buckets[day] = _bucket(buckets, day)
    add_exactly(bucket, increment)
    for old in [old for old in buckets if old < day - KEEP_DAYS]:
        del buckets[old]


def _bucket(buckets: Buckets, day: int) -> list[float]:
    """A day's bucket, all zeros if none; one stored before a field was added reads it as 0."""
    bucket = buckets.get(day, ())
    return [*bucket, *EMPTY_BUCKET[len(bucket) :]]


def add_fact(buckets: Buckets, fact: MerchantFact) -> None:
    add_bucket(buckets, fact.day, as_bucket(fact))


def merchant_features(buckets: Buckets, today: int) -> dict[str, Any]:
    """The catalog's merchant features as of the start of ``today``."""
    month = [_bucket(buckets, day) for day in range(today - LABEL_DAYS, today)]
    volume, recent = month[-VOLUME_DAYS:], month[-EXCESS_DAYS:]
    labelled = int(sum(b[2] for b in month))
    frauds = int(sum(b[3] for b in month))
    week = int(sum(b[3] for b in volume))
    yesterday = volume[-1]
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
        "merchant_excess_3d": _mean_excess(recent),
        "merchant_excess_7d": _mean_excess(volume),
    }


def _mean_excess(days: list[list[float]]) -> float:
    """The mean excess of the days' sales, as if a few ordinary sales (excess 0) were
    added: a quiet merchant is not judged on one sale."""
    sales, excess_sum = sum(day[0] for day in days), sum(day[4] for day in days)
    return round(excess_sum / (sales + EXCESS_PRIOR_TX), 4)


def encode_buckets(buckets: Buckets) -> str:
    """The Redis form: one JSON field per merchant, rewritten whole so old days vanish."""
    return orjson.dumps({str(day): bucket for day, bucket in sorted(buckets.items())}).decode()


def decode_buckets(text: str | None) -> Buckets:
    return {int(day): bucket for day, bucket in orjson.loads(text).items()} if text else {}
