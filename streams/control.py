"""Every worker follows the control topic and swaps what it scores with, with no restart.

The follower reads the whole compacted control topic from the start (no consumer group:
every worker needs every record), folds it into a :class:`rules.control.ControlState`,
and after each fetch that brought records replaces the engine's ``controls`` with one new
immutable object. The agents score a batch without yielding to the event loop between
events, so a swap lands between events: none is dropped or scored twice, and each score
record names the rule-set version that scored it. A record that does not apply is logged
and skipped; the running set stays as it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aiokafka
from aiokafka import TopicPartition
from mode import Service

from duoli.errors import DuoliError
from rules import Rule
from rules.control import ControlState

__all__ = ["ControlFollower"]

log = logging.getLogger(__name__)

POLL_MS = 200


class ControlFollower(Service):
    """Keeps ``engine.controls`` equal to the file rules plus the control topic."""

    def __init__(
        self, broker_url: str, topic: str, engine: Any, base_rules: Sequence[Rule], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.broker_url = broker_url
        self.partition = TopicPartition(topic, 0)
        self.engine = engine
        self.base_rules = tuple(base_rules)
        self.folded = ControlState()
        self.caught_up = asyncio.Event()
        self._consumer: aiokafka.AIOKafkaConsumer | None = None

    async def on_start(self) -> None:
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=self.broker_url, enable_auto_commit=False, group_id=None
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
                self._apply(records)
            if not self.caught_up.is_set() and await self._at_end(consumer):
                self.caught_up.set()

    def _apply(self, records: Sequence[Any]) -> None:
        for record in records:
            key = record.key.decode() if record.key else ""
            try:
                self.folded.apply(key, record.value)
            except DuoliError as error:
                log.warning("control record at offset %d skipped: %s", record.offset, error)
        try:
            controls = self.folded.controls(self.base_rules)
        except DuoliError as error:
            log.warning("control change refused, the running rules stay: %s", error)
            return
        previous, self.engine.controls = self.engine.controls, controls
        if controls.ruleset.version != previous.ruleset.version:
            log.info("now scoring with rule set %s", controls.ruleset.version)

    async def _at_end(self, consumer: aiokafka.AIOKafkaConsumer) -> bool:
        end = consumer.highwater(self.partition)
        return end is not None and await consumer.position(self.partition) >= end
