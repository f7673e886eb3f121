"""The trainer's label semantics, its determinism, and its checkpoint."""

from __future__ import annotations

import random
from typing import Any

import pytest

from models.features import FRAUD_FEATURES, PD_FEATURES
from models.trainer import DAY, Trainer, TrainerConfig

T0 = 20_000 * DAY  # a midnight
WEEK = 7 * DAY
ALL_NEGATIVES = TrainerConfig(negative_sample_rate=1.0)


def fraud_x(seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [rng.random() for _ in FRAUD_FEATURES]


def tx(tx_id: str, at: float, seq: int, known_at: float | None = None) -> list[Any]:
    return ["tx", tx_id, at, seq, at if known_at is None else known_at, fraud_x(seq)]


def label(tx_id: str, at: float, seq: int, is_fraud: bool = True) -> list[Any]:
    return ["label", tx_id, at, seq, at, is_fraud]


def feed(trainer: Trainer, *items: list[Any], partition: int = 0, offset: int = 0) -> None:
    clock = max(item[4] for item in items)
    trainer.consume({"p": partition, "clock": clock, "items": list(items)}, offset)


def close_at(trainer: Trainer, at: float, partition: int = 0) -> list[float]:
    """Move the partition's clock (as a tick would) and close what the watermark passed."""
    trainer.consume({"p": partition, "clock": at, "items": []}, trainer.next_offset)
    return trainer.close_epochs()


def test_a_label_exactly_at_maturity_counts_as_that_label() -> None:
    trainer = Trainer(ALL_NEGATIVES)
    feed(trainer, tx("t1", T0 + 3600, seq=1), label("t1", T0 + 3600 + WEEK, seq=2))
    close_at(trainer, T0 + 10 * DAY)
    assert (trainer.fraud.labels, trainer.fraud.positives) == (1, 1)
    assert trainer.counters.matured == 0 and trainer.counters.corrections == 0


def test_an_unlabelled_transaction_is_learned_as_legitimate_only_after_maturity() -> None:
    trainer = Trainer(ALL_NEGATIVES)
    feed(trainer, tx("t1", T0 + 3600, seq=1))
    close_at(trainer, T0 + 7 * DAY + 7200)  # trained through T0 + 7 d: not yet mature
    assert trainer.fraud.labels == 0
    close_at(trainer, T0 + 8 * DAY)
    assert (trainer.fraud.labels, trainer.fraud.positives) == (1, 0)
    assert trainer.counters.matured == 1


def test_an_explicit_legitimate_label_trains_a_negative_at_once() -> None:
    trainer = Trainer(ALL_NEGATIVES)
    feed(trainer, tx("t1", T0 + 3600, seq=1), label("t1", T0 + 7200, seq=2, is_fraud=False))
    close_at(trainer, T0 + DAY)
    assert (trainer.fraud.labels, trainer.fraud.positives) == (1, 0)
    close_at(trainer, T0 + 10 * DAY)
    assert trainer.fraud.labels == 1  # it does not mature again
    assert trainer.counters.legit_labels == 1


def test_a_fraud_label_after_maturity_corrects_the_model() -> None:
    trainer = Trainer(ALL_NEGATIVES)
    feed(trainer, tx("t1", T0 + 3600, seq=1))
    close_at(trainer, T0 + 9 * DAY)
    assert (trainer.fraud.labels, trainer.fraud.positives) == (1, 0)
    feed(trainer, label("t1", T0 + 9 * DAY + 60, seq=2))
    close_at(trainer, T0 + 10 * DAY)
    assert (trainer.fraud.labels, trainer.fraud.positives) == (2, 1)
    assert trainer.counters.corrections == 1
    feed(trainer, label("t1", T0 + 10 * DAY + 60, seq=3))  # the same label again
    close_at(trainer, T0 + 11 * DAY)
    assert trainer.fraud.labels == 2


def test_a_label_is_never_learned_before_the_day_it_is_known_closes() -> None:
    trainer = Trainer(ALL_NEGATIVES)
    feed(trainer, tx("t1", T0 + 3600, seq=1), label("t1", T0 + DAY + 3600, seq=2))
    assert close_at(trainer, T0 + DAY + 7200) == [T0 + DAY]
    assert trainer.fraud.labels == 0  # known during day 1, which is still open
    close_at(trainer, T0 + 2 * DAY)
    assert trainer.fraud.positives == 1


def test_a_label_for_an_unknown_transaction_is_counted_not_learned() -> None:
    trainer = Trainer(ALL_NEGATIVES)
    feed(trainer, label("never-seen", T0 + 60, seq=1))
    close_at(trainer, T0 + DAY)
    assert trainer.counters.unmatched_labels == 1 and trainer.fraud.labels == 0


def test_a_redelivered_record_is_learned_once() -> None:
    trainer = Trainer(ALL_NEGATIVES)
    items = (tx("t1", T0 + 60, seq=5), label("t1", T0 + 120, seq=6))
    feed(trainer, *items, offset=0)
    feed(trainer, *items, offset=1)  # the worker crashed before committing, and sent it again
    close_at(trainer, T0 + DAY)
    assert trainer.fraud.labels == 1 and trainer.counters.fraud_labels == 1


@pytest.mark.parametrize(
    "bad",
    [
        ["tx", "old", T0 + 60, 1, T0 + 60, [0.5] * (len(FRAUD_FEATURES) - 1)],  # older Duoli
        ["bill", "b", T0 + 60, 1, T0 + 60, [0.5] * (len(PD_FEATURES) + 1)],
        ["tx", "t", T0 + 60, 1, T0 + 60, None],
        ["tx", "t", "noon", 1, T0 + 60, fraud_x()],
        ["tx", "t", T0 + 60],
        "not an item",
    ],
)
def test_a_malformed_item_is_skipped_and_the_rest_of_its_record_is_learned(bad: Any) -> None:
    trainer = Trainer(ALL_NEGATIVES)
    feed(trainer, tx("t1", T0 + 60, seq=2), label("t1", T0 + 120, seq=3))
    trainer.consume({"p": 0, "clock": T0 + 200, "items": [bad, tx("t2", T0 + 180, 4)]}, 1)
    feed(trainer, label("t2", T0 + 240, seq=5))
    close_at(trainer, T0 + DAY)  # the bad item would have raised here, at the day's close
    assert trainer.counters.skipped_items == 1
    assert (trainer.fraud.labels, trainer.fraud.positives) == (2, 2)


def test_a_bill_repaid_in_time_is_a_negative_and_an_open_one_defaults_at_30_days() -> None:
    trainer = Trainer(ALL_NEGATIVES)
    paid = ["bill", "a1|i1", T0 + 30 * DAY, 1, T0, [0.0] * len(PD_FEATURES)]
    unpaid = ["bill", "a2|i1", T0 + 30 * DAY, 2, T0, [1.0] * len(PD_FEATURES)]
    repaid = ["repaid", "a1|i1", T0 + 5 * DAY, 3, T0 + 5 * DAY, None]
    feed(trainer, paid, unpaid, repaid)
    close_at(trainer, T0 + 29 * DAY)
    assert (trainer.delinquency.labels, trainer.delinquency.positives) == (1, 0)
    close_at(trainer, T0 + 31 * DAY)
    assert (trainer.delinquency.labels, trainer.delinquency.positives) == (2, 1)
    assert (trainer.counters.repaid, trainer.counters.defaulted) == (1, 1)


def _book(seed: int) -> dict[int, list[list[Any]]]:
    """Two partitions' items over three weeks: transactions, some labelled fraud."""
    rng = random.Random(seed)
    items: dict[int, list[list[Any]]] = {0: [], 1: []}
    for n in range(400):
        partition, at = n % 2, T0 + n * 3600
        items[partition].append(tx(f"t{n}", at, seq=n))
        if rng.random() < 0.1:
            items[partition].append(label(f"t{n}", at + 2 * DAY, seq=n + 10_000))
    for part in items.values():
        part.sort(key=lambda item: item[4])
        for offset, item in enumerate(part):  # seq is the input offset: it grows
            item[3] = offset
    return items


def _records(items: dict[int, list[list[Any]]], per_record: int) -> list[dict[str, Any]]:
    records = []
    for partition, part in items.items():
        for start in range(0, len(part), per_record):
            chunk = part[start : start + per_record]
            records.append({"p": partition, "clock": chunk[-1][4], "items": chunk})
    return records


def _train(records: list[dict[str, Any]]) -> Trainer:
    """As in a replay: every partition reports its starting clock first (a tick)."""
    trainer = Trainer(TrainerConfig(negative_sample_rate=0.5))
    for partition in (0, 1):
        trainer.consume({"p": partition, "clock": T0, "items": []}, 0)
    for offset, record in enumerate(records):
        trainer.consume(record, offset)
        trainer.close_epochs()
    for partition in (0, 1):
        trainer.consume({"p": partition, "clock": T0 + 40 * DAY, "items": []}, len(records))
    trainer.close_epochs()
    return trainer


def test_the_same_items_in_any_interleaving_give_the_same_models() -> None:
    items = _book(seed=3)
    by_partition = _records(items, per_record=7)
    interleaved = sorted(by_partition, key=lambda record: record["clock"])
    other = _records(items, per_record=13)
    random.Random(1).shuffle(other)  # records of one partition must stay in their order
    other = sorted(other, key=lambda r: (r["p"], r["clock"]))
    trainers = [_train(records) for records in (by_partition, interleaved, other)]
    x = dict(zip(FRAUD_FEATURES, fraud_x(99), strict=True))
    scores = {t.snapshot().fraud.score(x, 0.0).fraud_score for t in trainers}
    assert len(scores) == 1
    assert len({str(t.status()["fraud"]) for t in trainers}) == 1
    assert trainers[0].fraud.positives > 0


def test_a_restored_checkpoint_goes_on_exactly_as_the_original() -> None:
    records = sorted(_records(_book(seed=5), per_record=10), key=lambda record: record["clock"])
    straight = _train(records)
    half = len(records) // 2
    first = Trainer(TrainerConfig(negative_sample_rate=0.5))
    for partition in (0, 1):
        first.consume({"p": partition, "clock": T0, "items": []}, 0)
    for offset, record in enumerate(records[:half]):
        first.consume(record, offset)
        first.close_epochs()
    resumed = Trainer.restore(first.checkpoint())
    assert resumed.next_offset == half
    for offset, record in enumerate(records[half:], start=half):
        resumed.consume(record, offset)
        resumed.close_epochs()
    for partition in (0, 1):
        resumed.consume({"p": partition, "clock": T0 + 40 * DAY, "items": []}, len(records))
    resumed.close_epochs()
    x = dict(zip(FRAUD_FEATURES, fraud_x(7), strict=True))
    assert resumed.snapshot().fraud.score(x, 0.0) == straight.snapshot().fraud.score(x, 0.0)
    assert resumed.status() == straight.status()


def test_the_pending_store_stays_within_its_limit() -> None:
    trainer = Trainer(TrainerConfig(pending_limit=1000))
    for n in range(3000):
        feed(trainer, tx(f"t{n}", T0 + n, seq=n), offset=n)
    close_at(trainer, T0 + DAY)
    status = trainer.status()["pending"]
    assert status["pending"] + status["resolved"] <= 1000
    assert status["evicted"] == 2000


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None])
def test_non_finite_features_never_reach_a_model(bad: Any) -> None:
    trainer = Trainer(ALL_NEGATIVES)
    item = tx("t1", T0 + 60, seq=1)
    item[5][0] = bad
    feed(trainer, item, label("t1", T0 + 120, seq=2))
    close_at(trainer, T0 + DAY)
    x = dict(zip(FRAUD_FEATURES, fraud_x(1), strict=True))
    score = trainer.snapshot().fraud.score(x, 0.0).fraud_score
    assert trainer.fraud.positives == 1 and 0.0 <= score <= 1.0
