"""A single writer inside one worker: the worker that holds partition 0 of the events topic.

The trainer and the ledger writer must each run exactly once in the group. Ownership
follows Faust's own assignment (``set_owner`` on every rebalance), so it moves with
partition 0 when a worker stops or dies. Such a service reads its sources without a
consumer group: where it resumes is its own business (a checkpoint, the ledger's last
entry), so a new owner goes on exactly as the old one would have.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import aiokafka
from aiokafka import TopicPartition
from mode import Service

from streams.consumers import background_consumer

__all__ = ["ElectedService"]

log = logging.getLogger(__name__)


class ElectedService(Service):
    """Runs ``step`` over and over while this worker is the owner; ``release`` forgets the
    service's state when ownership moves away."""

    role: ClassVar[str] = "service"

    def __init__(
        self,
        broker_url: str,
        sources: Sequence[TopicPartition],
        consumer_options: Mapping[str, Any] | None = None,
        producer_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.broker_url = broker_url
        self.sources = list(sources)
        self.wanted = False
        self._consumer_options = dict(consumer_options or {})
        self._producer_options = dict(producer_options or {})
        self._consumer: aiokafka.AIOKafkaConsumer | None = None
        self._producer: aiokafka.AIOKafkaProducer | None = None

    def set_owner(self, owner: bool) -> None:
        """Called on every rebalance: whether this worker holds events partition 0."""
        if owner != self.wanted:
            log.info("%s %s", self.role, "taking over" if owner else "handing over")
        self.wanted = owner
        if not owner:
            self.release()

    def release(self) -> None:
        """Forget what belongs to the owner; a later owner resumes on its own."""

    async def step(
        self, consumer: aiokafka.AIOKafkaConsumer, producer: aiokafka.AIOKafkaProducer
    ) -> None:
        raise NotImplementedError

    async def on_start(self) -> None:
        self._consumer = background_consumer(self.broker_url, **self._consumer_options)
        self._producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=self.broker_url, **self._producer_options
        )
        await self._consumer.start()
        await self._producer.start()
        self._consumer.assign(self.sources)

    async def on_stop(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()

    @Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            if not self.wanted or self._consumer is None or self._producer is None:
                await self.sleep(0.1)
                continue
            await self.step(self._consumer, self._producer)
