"""Following a one-partition topic from its start, in every worker (no consumer group).

The control topic (rules, lists, snoozes) and the models topic (snapshots) are read this
way: every worker needs every record. ``ready()`` returns once the records that existed
at start are applied, so a worker never scores with less than what was published.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiokafka
from aiokafka import TopicPartition
from mode import Service

from connectors.kafka_admin import LARGE_RECORD_BYTES
from streams.consumers import background_consumer

__all__ = ["TopicFollower"]

POLL_MS = 200


class TopicFollower(Service):
    """Reads ``topic`` from the beginning for ever and hands each fetch to ``apply``."""

    def __init__(self, broker_url: str, topic: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.broker_url = broker_url
        self.partition = TopicPartition(topic, 0)
        self.caught_up = asyncio.Event()
        self._consumer: aiokafka.AIOKafkaConsumer | None = None

    def apply(self, records: Sequence[Any]) -> None:
        raise NotImplementedError

    async def on_start(self) -> None:
        consumer = background_consumer(
            self.broker_url,
            fetch_max_bytes=LARGE_RECORD_BYTES,
            max_partition_fetch_bytes=LARGE_RECORD_BYTES,
        )
        await consumer.start()
        consumer.assign([self.partition])
        await consumer.seek_to_beginning(self.partition)
        self._consumer = consumer

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def ready(self) -> None:
        """Wait until the records that existed at start are applied."""
        await self.caught_up.wait()

    @Service.task
    async def _follow(self) -> None:
        while not self.should_stop:
            consumer = self._consumer
            if consumer is None:
                await self.sleep(0.05)
                continue
            batches = await consumer.getmany(self.partition, timeout_ms=POLL_MS)
            records = batches.get(self.partition, [])
            if records:
                self.apply(records)
            if not self.caught_up.is_set() and await self._at_end(consumer):
                self.caught_up.set()

    async def _at_end(self, consumer: aiokafka.AIOKafkaConsumer) -> bool:
        end = consumer.highwater(self.partition)
        return end is not None and await consumer.position(self.partition) >= end
