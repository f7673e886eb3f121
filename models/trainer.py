"""The trainer: every worker's training items in, one model version per event-time day out.

Workers send what they scored and what they learned about it (``TrainingItem`` lists, one
record per input partition and batch, with the partition's event-time clock). The trainer
holds them until every input partition's clock has passed a day boundary, then applies
the day's items in one fixed order, by the time the worker knew them, then partition and
offset, and publishes the models as of that midnight. So however many workers there are,
and however their records interleave, the same input yields the same model versions.

What an item teaches, in event time (``known_at`` is the partition's clock when the
worker saw the event; a label is never learned before then):

- ``tx``: a scored transaction. Its features wait in the pending store; the anomaly
  detector observes it.
- ``label``: a fraud label for a transaction. If the transaction is pending it is learned
  with that label at once, fraud or not. If it already matured as legitimate, a fraud
  label corrects the model: the example is learned again as fraud.
- a pending transaction still unlabelled once the maturity period has passed (strictly:
  a label exactly at maturity still counts) is learned as legitimate.
- ``bill``: an installment fell due; ``repaid``: it was repaid in full before reaching 30
  days past due, so it is learned as repaid. A bill still open at 30 days past due is
  learned as defaulted.

Most legitimate transactions are never labelled, so learning all of them would spend
most of the trainer's time on the majority class. Matured legitimate transactions are
learned at ``negative_sample_rate`` (chosen by a hash of the id, so deterministically)
with weight ``1 / rate``; labels and bills are always learned.

>>> trainer = Trainer()
>>> trainer.consume({"p": 0, "clock": 3 * DAY, "items": []}, offset=0)
>>> trainer.close_epochs(), trainer.trained_through == 3 * DAY
([259200.0], True)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any, NamedTuple

from duoli.errors import DuoliError
from models import pickles
from models.features import FRAUD_FEATURES, PD_FEATURES, unpack
from models.learners import DelinquencyLearner, FraudLearner, LearningConfig
from models.pending import Example, PendingStore
from models.snapshot import ModelSnapshot

__all__ = [
    "CHECKPOINT_FORMAT",
    "DAY",
    "IncompatibleCheckpoint",
    "Trainer",
    "TrainerConfig",
    "TrainingItem",
    "day_start",
]

DAY = 86_400.0
DEFAULT_MONTH = 30 * DAY
CHECKPOINT_FORMAT = 8  # raise it whenever a model's pickled layout changes

log = logging.getLogger(__name__)


class IncompatibleCheckpoint(DuoliError):
    """A trainer checkpoint this version cannot resume from."""


def day_start(at: float) -> float:
    """The UTC midnight at or before ``at``: model versions are dated by it."""
    return (at // DAY) * DAY


class TrainingItem(NamedTuple):
    """One thing a worker learned, as sent: ``[kind, id, at, seq, known_at, extra]``.

    ``at`` is the event time that matters for the kind: the transaction's time, the
    label's time, the moment a bill defaults if unpaid, the repayment's time.
    """

    kind: str
    example_id: str
    at: float
    seq: int
    known_at: float
    extra: Any = None  # features (tx, bill) or the label (label)

    @classmethod
    def checked(cls, raw: Sequence[Any]) -> TrainingItem:
        """An item as sent, with its types and its number of features checked now
        (``ValueError`` or ``TypeError``): features packed by another version of Duoli
        would otherwise fail only when their day closed, and stop the trainer there."""
        kind, example_id, at, seq, known_at, *extra = raw
        item = cls(str(kind), str(example_id), float(at), int(seq), float(known_at), *extra)
        names = _FEATURES_OF.get(item.kind)
        if names is not None and len(item.extra) != len(names):
            raise ValueError(f"{len(item.extra)} features for a {kind}, not {len(names)}")
        return item


_FEATURES_OF = {"tx": FRAUD_FEATURES, "bill": PD_FEATURES}


@dataclass(frozen=True)
class TrainerConfig:
    maturity_days: float = 7.0
    correction_days: float = 30.0  # how long after maturity a late label still corrects
    pending_limit: int = 200_000
    negative_sample_rate: float = 0.25
    learning: LearningConfig = field(default_factory=LearningConfig)


class _Queued(NamedTuple):
    known_at: float
    partition: int
    seq: int
    order: int  # within its record
    item: TrainingItem


@dataclass
class Counters:
    fraud_labels: int = 0
    legit_labels: int = 0
    matured: int = 0
    corrections: int = 0
    unmatched_labels: int = 0
    repaid: int = 0
    defaulted: int = 0
    skipped_items: int = 0  # malformed, or packed by another version of Duoli


class Trainer:
    """Deterministic: the same training records give the same model versions."""

    def __init__(self, config: TrainerConfig | None = None) -> None:
        config = config or TrainerConfig()
        self.config = config
        self.fraud = FraudLearner(config.learning)
        self.delinquency = DelinquencyLearner(config.learning)
        self.pending = PendingStore(config.pending_limit)
        self.counters = Counters()
        self.clocks: dict[int, float] = {}
        self.seen: dict[int, int] = {}  # per input partition, the last offset queued
        self.queue: list[_Queued] = []
        self.trained_through: float | None = None
        self.next_offset = 0  # of the training topic: where a restart resumes

    def consume(self, record: Mapping[str, Any], offset: int) -> None:
        """Queue one worker record; items of offsets already queued (a redelivery) drop,
        and so do items that are not well formed (counted, and logged)."""
        partition = int(record["p"])
        last = self.seen.get(partition, -1)
        for index, raw in enumerate(record["items"]):
            try:
                item = TrainingItem.checked(raw)
            except (TypeError, ValueError) as error:
                self.counters.skipped_items += 1
                log.warning("training item skipped (partition %d): %s", partition, error)
                continue
            if item.seq > last:
                self.queue.append(_Queued(item.known_at, partition, item.seq, index, item))
                self.seen[partition] = max(self.seen.get(partition, -1), item.seq)
        self.clocks[partition] = max(self.clocks.get(partition, 0.0), float(record["clock"]))
        self.next_offset = offset + 1

    def watermark(self) -> float | None:
        """The lowest clock over the input partitions that have reported; None before any.

        A partition that has never reported (no event yet) cannot hold the others back;
        if it later sends items known before a closed day, they go into the next day.
        """
        return min(self.clocks.values(), default=None)

    def close_epochs(self) -> list[float]:
        """Apply every day the watermark has passed; the midnights closed, oldest first."""
        return list(iter(self.close_next_day, None))

    def close_next_day(self) -> float | None:
        """Apply the oldest day the watermark has passed and return its closing midnight;
        None when no day is due. One at a time, so each day can have its snapshot."""
        watermark = self.watermark()
        if watermark is None:
            return None
        boundary = day_start(watermark)
        if self.trained_through is None:
            self._close(boundary)
        elif self.trained_through < boundary:
            self._close(self.trained_through + DAY)
        else:
            return None
        return self.trained_through

    def snapshot(self) -> ModelSnapshot:
        """The models as of ``trained_through``, for every worker."""
        as_of = self.trained_through or 0.0
        stamp = _date(as_of)
        return ModelSnapshot(
            as_of=as_of,
            fraud=self.fraud.scorer(f"fraud-{self.fraud.champion}-{stamp}"),
            pd=self.delinquency.scorer(f"pd-{stamp}"),
        )

    def checkpoint(self) -> bytes:
        """All of the trainer's state; a restart resumes from ``next_offset`` with it."""
        stamped = (CHECKPOINT_FORMAT, self)
        return pickles.dumps(stamped)

    @staticmethod
    def restore(data: bytes) -> Trainer:
        """The trainer a checkpoint holds; ``IncompatibleCheckpoint`` if another version of
        Duoli wrote it (its models are laid out differently), or if it is not one."""
        try:
            stamped = pickles.loads(data)
        except Exception as error:
            raise IncompatibleCheckpoint(f"unreadable trainer checkpoint: {error}") from error
        if not (isinstance(stamped, tuple) and len(stamped) == 2):
            raise IncompatibleCheckpoint("a trainer checkpoint from an older version of Duoli")
        version, trainer = stamped
        if version != CHECKPOINT_FORMAT or not isinstance(trainer, Trainer):
            raise IncompatibleCheckpoint(
                f"trainer checkpoint format {version!r}, not {CHECKPOINT_FORMAT}"
            )
        return trainer

    def status(self) -> dict[str, Any]:
        """JSON-ready: versions, label counts, pending-store size, metrics and promotions."""
        return {
            "trained_through": _date(self.trained_through) if self.trained_through else None,
            "fraud": self.fraud.status(),
            "delinquency": self.delinquency.status(),
            "pending": {
                "pending": len(self.pending.pending),
                "resolved": len(self.pending.done),
                "limit": self.pending.limit,
                "evicted": self.pending.evicted,
                "bytes": self.pending.nbytes(),
                "queued": len(self.queue),
            },
            "counters": vars(self.counters).copy(),
        }

    def _close(self, boundary: float) -> None:
        """Apply the queued items known before ``boundary``, in order, then mature."""
        ready = sorted(queued for queued in self.queue if queued.known_at < boundary)
        self.queue = [queued for queued in self.queue if queued.known_at >= boundary]
        for queued in ready:
            self._mature(until=queued.known_at)
            self._apply(queued.item)
        self._mature(until=boundary)
        self.pending.forget_before(boundary)
        self.fraud.close_day(boundary)  # a promotion is recorded, with its metrics, by the learner
        self.trained_through = boundary

    def _apply(self, item: TrainingItem) -> None:
        if item.kind == "tx":
            self._pend(item, "tx", item.at + self.config.maturity_days * DAY, FRAUD_FEATURES)
        elif item.kind == "label":
            self._label(item.example_id, bool(item.extra), item.known_at)
        elif item.kind == "bill":
            self._pend(item, "bill", item.at, PD_FEATURES)
        elif item.kind == "repaid":
            self._repaid(item.example_id, item.known_at)

    def _pend(self, item: TrainingItem, kind: str, mature_at: float, names: Sequence[str]) -> None:
        x = unpack(item.extra, names)
        kept = self.pending.add(item.example_id, kind, mature_at, [x[name] for name in names])
        if kept and kind == "tx" and self._sampled(item.example_id):
            self.fraud.observe(x)

    def _label(self, tx_id: str, is_fraud: bool, known_at: float) -> None:
        counters = self.counters
        if is_fraud:
            counters.fraud_labels += 1
        else:
            counters.legit_labels += 1
        example = self.pending.take(tx_id)
        if example is not None:
            self._learn_fraud(example, is_fraud, known_at, weight=1.0)
            self.pending.resolve(tx_id, example, is_fraud, self._keep_until(example))
            return
        done = self.pending.resolved(tx_id)
        if done is None or done.kind != "tx":
            counters.unmatched_labels += 1
        elif done.outcome is not is_fraud:
            corrects = done.outcome is not None
            counters.corrections += corrects
            self._learn_fraud(done, is_fraud, known_at, weight=1.0, correction=corrects)
            done.outcome = is_fraud

    def _repaid(self, bill_id: str, known_at: float) -> None:
        example = self.pending.take(bill_id)
        if example is not None:  # not pending: it already defaulted, or was never billed
            self.counters.repaid += 1
            self.delinquency.learn(_features(example, PD_FEATURES), False, known_at)

    def _mature(self, until: float) -> None:
        for example_id, example in self.pending.due(until):
            if example.kind == "bill":
                self.counters.defaulted += 1
                self.delinquency.learn(_features(example, PD_FEATURES), True, example.mature_at)
                continue
            self.counters.matured += 1
            learned: bool | None = None
            if self._sampled(example_id):
                weight = 1.0 / self.config.negative_sample_rate
                self._learn_fraud(example, False, example.mature_at, weight)
                learned = False
            self.pending.resolve(example_id, example, learned, self._keep_until(example))

    def _learn_fraud(
        self, example: Example, is_fraud: bool, at: float, weight: float, correction: bool = False
    ) -> None:
        x = _features(example, FRAUD_FEATURES)
        self.fraud.learn(x, is_fraud, at, weight, correction=correction)

    def _keep_until(self, example: Example) -> float:
        return example.mature_at + self.config.correction_days * DAY

    def _sampled(self, example_id: str) -> bool:
        digest = blake2b(example_id.encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") < self.config.negative_sample_rate * 2**32


def _features(example: Example, names: Sequence[str]) -> dict[str, float]:
    return dict(zip(names, example.values, strict=True))


def _date(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")
