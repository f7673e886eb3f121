"""The trainer: a process of the worker that owns partition 0 of the events topic
(``streams.elected``), so there is exactly one trainer while the group is stable.

It reads the one-partition training topic without a consumer group, learns, and publishes
a snapshot and the status for every day that closes. Where it resumes is in its
checkpoint (at most once a minute, after a closed day), so a new owner reads the training
records again from there and goes on exactly as the old one would have: the trainer is
deterministic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import aiokafka
import orjson
from aiokafka import TopicPartition

from connectors.kafka_admin import LARGE_RECORD_BYTES
from models.trainer import IncompatibleCheckpoint, Trainer, TrainerConfig
from streams.consumers import background_consumer
from streams.elected import SingleWriter
from streams.models import STATUS_KEY, snapshot_key
from streams.topics import TopicNames

__all__ = ["CHECKPOINT_KEY", "Learning", "TrainerWriter", "resume"]

log = logging.getLogger(__name__)

CHECKPOINT_KEY = b"checkpoint"
CHECKPOINT_SECONDS = 60.0  # a checkpoint pickles the whole pending store: not every day
MAX_RECORDS = 2000
LARGE_FETCHES = {
    "fetch_max_bytes": LARGE_RECORD_BYTES,
    "max_partition_fetch_bytes": LARGE_RECORD_BYTES,
}

Outputs = list[tuple[str, bytes, bytes]]  # (topic, key, value) to publish, in order
Record = tuple[bytes, int]  # (value, offset) of a training record


class Learning:
    """A trainer and when it last wrote a checkpoint."""

    def __init__(self, trainer: Trainer, names: TopicNames) -> None:
        self.trainer = trainer
        self.names = names
        self.checkpointed = -CHECKPOINT_SECONDS

    def learn(self, records: Sequence[Record]) -> Outputs:
        """Queue the records; for the days that close, the records to publish."""
        trainer = self.trainer
        for value, offset in records:
            try:
                trainer.consume(orjson.loads(value), offset)
            except Exception as error:  # one bad record must not stop the training
                log.warning("training record at offset %d skipped: %s", offset, error)
                trainer.next_offset = offset + 1
        outputs = []
        while trainer.close_next_day() is not None:  # every day its version, even catching up
            snapshot = trainer.snapshot()
            log.info("trained through %s: %s", snapshot.as_of, snapshot.versions())
            outputs.append((self.names.models, snapshot_key(snapshot.as_of), snapshot.to_bytes()))
        if not outputs:
            return []
        outputs.append((self.names.models, STATUS_KEY, orjson.dumps(trainer.status())))
        if time.monotonic() - self.checkpointed >= CHECKPOINT_SECONDS:
            outputs.append((self.names.trainer_state, CHECKPOINT_KEY, trainer.checkpoint()))
            self.checkpointed = time.monotonic()
        return outputs


class TrainerWriter(SingleWriter):
    """Trains from the checkpoint on; publishes a snapshot and status per closed day, and
    now and then a checkpoint."""

    role = "trainer"

    def __init__(self, broker_url: str, names: TopicNames, config: TrainerConfig) -> None:
        self.input = TopicPartition(names.training, 0)
        super().__init__(
            broker_url,
            [self.input],
            consumer_options=LARGE_FETCHES,
            producer_options={"max_request_size": LARGE_RECORD_BYTES},
        )
        self.names = names
        self.config = config
        self.learning: Learning | None = None

    async def step(
        self, consumer: aiokafka.AIOKafkaConsumer, producer: aiokafka.AIOKafkaProducer
    ) -> None:
        if self.learning is None:
            checkpoint = await _last_value(self.broker_url, self.names.trainer_state)
            self.learning = Learning(resume(self.config, checkpoint), self.names)
            consumer.seek(self.input, self.learning.trainer.next_offset)
            if checkpoint is not None:
                log.info("trainer resumed at offset %d", self.learning.trainer.next_offset)
        batches = await consumer.getmany(self.input, timeout_ms=200, max_records=MAX_RECORDS)
        records = [(record.value, record.offset) for record in batches.get(self.input, [])]
        if records:
            await _publish(producer, self.learning.learn(records))


def resume(config: TrainerConfig, checkpoint: bytes | None) -> Trainer:
    """The trainer of the checkpoint; a new one, which learns the training topic again
    from its start, when there is none or another version of Duoli wrote it."""
    if checkpoint is None:
        return Trainer(config)
    try:
        return Trainer.restore(checkpoint)
    except IncompatibleCheckpoint as error:
        log.error("%s: learning the training topic again from its start", error)
        return Trainer(config)


async def _publish(producer: aiokafka.AIOKafkaProducer, outputs: Outputs) -> None:
    """Snapshot first, checkpoint last: a crash between them republishes the same day."""
    for topic, key, value in outputs:
        await producer.send_and_wait(topic, value, key=key, partition=0)


async def _last_value(url: str, topic: str) -> bytes | None:
    """The value of the last record of a one-partition topic, or None if it is empty."""
    consumer = background_consumer(url, **LARGE_FETCHES)
    partition = TopicPartition(topic, 0)
    await consumer.start()
    try:
        consumer.assign([partition])
        end = (await consumer.end_offsets([partition]))[partition]
        if end == 0:
            return None
        last: bytes | None = None
        await consumer.seek_to_beginning(partition)
        while await consumer.position(partition) < end:
            batches = await consumer.getmany(partition, timeout_ms=500)
            for record in batches.get(partition, []):
                last = record.value
        return last
    finally:
        await consumer.stop()
