"""The trainer runs inside one worker: the one that owns partition 0 of the events topic
(``streams.elected``), so there is exactly one trainer while the group is stable. It reads
the one-partition training topic without a consumer group: where it resumes is in its
checkpoint (at most once a minute, after a closed day), so a new owner
reads the training records again from there and goes on exactly as the old one would
have: the trainer is deterministic. Learning is CPU work; it runs
in a thread so that the worker's event loop keeps scoring.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import aiokafka
import orjson
from aiokafka import TopicPartition

from connectors.kafka_admin import LARGE_RECORD_BYTES
from models.trainer import Trainer, TrainerConfig
from streams.elected import ElectedService
from streams.models import STATUS_KEY, snapshot_key
from streams.topics import TopicNames

__all__ = ["CHECKPOINT_KEY", "TrainerService"]

log = logging.getLogger(__name__)

CHECKPOINT_KEY = b"checkpoint"
CHECKPOINT_SECONDS = 60.0  # a checkpoint pickles the whole pending store: not every day
MAX_RECORDS = 2000
LARGE_FETCHES = {
    "fetch_max_bytes": LARGE_RECORD_BYTES,
    "max_partition_fetch_bytes": LARGE_RECORD_BYTES,
}
Outputs = list[tuple[str, bytes, bytes]]


class TrainerService(ElectedService):
    """Trains while it owns; publishes a snapshot, status and checkpoint per closed day."""

    role = "trainer"

    def __init__(
        self, broker_url: str, names: TopicNames, config: TrainerConfig, **kwargs: Any
    ) -> None:
        self._input = TopicPartition(names.training, 0)
        super().__init__(
            broker_url,
            [self._input],
            consumer_options=LARGE_FETCHES,
            producer_options={"max_request_size": LARGE_RECORD_BYTES},
            **kwargs,
        )
        self.names = names
        self.config = config
        self.trainer: Trainer | None = None
        self._checkpointed = -CHECKPOINT_SECONDS

    def release(self) -> None:
        self.trainer = None

    async def step(
        self, consumer: aiokafka.AIOKafkaConsumer, producer: aiokafka.AIOKafkaProducer
    ) -> None:
        if self.trainer is None:
            self.trainer = await self._resume()
            consumer.seek(self._input, self.trainer.next_offset)
        batches = await consumer.getmany(self._input, timeout_ms=200, max_records=MAX_RECORDS)
        records = batches.get(self._input, [])
        trainer = self.trainer
        if records and trainer is not None:
            outputs = await asyncio.to_thread(self._learn, trainer, records)
            if self.trainer is trainer:  # not handed over meanwhile
                await _publish(producer, outputs)

    def _learn(self, trainer: Trainer, records: Sequence[Any]) -> Outputs:
        """Queue the records; for the days that close, the records to publish."""
        for record in records:
            try:
                trainer.consume(orjson.loads(record.value), record.offset)
            except Exception as error:  # one bad record must not stop the training
                log.warning("training record at offset %d skipped: %s", record.offset, error)
                trainer.next_offset = record.offset + 1
        if not trainer.close_epochs():
            return []
        snapshot = trainer.snapshot()
        log.info("trained through %s: %s", snapshot.as_of, snapshot.versions())
        outputs = [
            (self.names.models, snapshot_key(snapshot.as_of), snapshot.to_bytes()),
            (self.names.models, STATUS_KEY, orjson.dumps(trainer.status())),
        ]
        if time.monotonic() - self._checkpointed >= CHECKPOINT_SECONDS:
            outputs.append((self.names.trainer_state, CHECKPOINT_KEY, trainer.checkpoint()))
            self._checkpointed = time.monotonic()
        return outputs

    async def _resume(self) -> Trainer:
        """The last checkpoint, or a new trainer when there is none."""
        data = await _last_value(self.broker_url, self.names.trainer_state)
        if data is None:
            return Trainer(self.config)
        trainer = await asyncio.to_thread(Trainer.restore, data)
        log.info("trainer resumed at offset %d", trainer.next_offset)
        return trainer


async def _publish(producer: aiokafka.AIOKafkaProducer, outputs: Outputs) -> None:
    """Snapshot first, checkpoint last: a crash between them republishes the same day."""
    for topic, key, value in outputs:
        await producer.send_and_wait(topic, value, key=key, partition=0)


def _consumer(url: str) -> aiokafka.AIOKafkaConsumer:
    return aiokafka.AIOKafkaConsumer(
        bootstrap_servers=url, enable_auto_commit=False, group_id=None, **LARGE_FETCHES
    )


async def _last_value(url: str, topic: str) -> bytes | None:
    """The value of the last record of a one-partition topic, or None if it is empty."""
    consumer = _consumer(url)
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
