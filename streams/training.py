"""The trainer belongs to one worker: the one that owns partition 0 of the events topic
(``streams.elected``), so there is exactly one trainer while the group is stable. It reads
the one-partition training topic without a consumer group: where it resumes is in its
checkpoint (at most once a minute, after a closed day), so a new owner reads the training
records again from there and goes on exactly as the old one would have: the trainer is
deterministic. Learning runs in a process of its own (``streams.trainer_process``), so the
worker's event loop keeps scoring at full speed.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import aiokafka
from aiokafka import TopicPartition

from connectors.kafka_admin import LARGE_RECORD_BYTES
from models.trainer import TrainerConfig
from streams.consumers import background_consumer
from streams.elected import ElectedService
from streams.topics import TopicNames
from streams.trainer_process import (
    CHECKPOINT_KEY,
    Outputs,
    learn,
    next_offset,
    start_trainer_process,
)

__all__ = ["CHECKPOINT_KEY", "TrainerService"]

log = logging.getLogger(__name__)

MAX_RECORDS = 2000
LARGE_FETCHES = {
    "fetch_max_bytes": LARGE_RECORD_BYTES,
    "max_partition_fetch_bytes": LARGE_RECORD_BYTES,
}


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
        self.process: ProcessPoolExecutor | None = None

    def release(self) -> None:
        """Stop the trainer process; a batch it is learning is not published."""
        if self.process is not None:
            self.process.shutdown(wait=False, cancel_futures=True)
            self.process = None

    async def on_stop(self) -> None:
        self.release()
        await super().on_stop()

    async def step(
        self, consumer: aiokafka.AIOKafkaConsumer, producer: aiokafka.AIOKafkaProducer
    ) -> None:
        try:
            await self._train(consumer, producer)
        except BrokenProcessPool:  # killed, or out of memory: start again from the checkpoint
            log.error("the trainer process died; resuming from the last checkpoint")
            self.release()

    async def _train(
        self, consumer: aiokafka.AIOKafkaConsumer, producer: aiokafka.AIOKafkaProducer
    ) -> None:
        if self.process is None:
            self.process, offset = await self._resume()
            consumer.seek(self._input, offset)
        batches = await consumer.getmany(self._input, timeout_ms=200, max_records=MAX_RECORDS)
        records = [(record.value, record.offset) for record in batches.get(self._input, [])]
        process = self.process
        if records and process is not None:
            loop = asyncio.get_running_loop()
            outputs: Outputs = await loop.run_in_executor(process, learn, records)
            if self.process is process:  # not handed over meanwhile
                await _publish(producer, outputs)

    async def _resume(self) -> tuple[ProcessPoolExecutor, int]:
        """A trainer process from the last checkpoint, or with a new trainer when there is
        none; and the offset to read on from."""
        data = await _last_value(self.broker_url, self.names.trainer_state)
        process = start_trainer_process(self.config, data, self.names, log.getEffectiveLevel())
        offset = await asyncio.get_running_loop().run_in_executor(process, next_offset)
        if data is not None:
            log.info("trainer resumed at offset %d", offset)
        return process, offset


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
