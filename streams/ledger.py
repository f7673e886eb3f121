"""The ledger writer: one process chains every credit decision and every alert.

A hash chain needs a single writer, so it runs beside the trainer: a process of the worker
that holds partition 0 of the events topic (``streams.elected``), and it moves with it.
It reads the decisions and alerts topics without a consumer group and appends to the
one-partition ``{prefix}.ledger`` topic. Each entry also notes the ``source`` record it
chained (topic, partition, offset: bookkeeping, outside the hash), so a new owner reads
the ledger once, resumes the chain after its last entry and each source partition after
the last record chained from it. A record that repeats on its topic (outputs are at least
once) has the same id: ids chained recently (at most ``RECENT_IDS``) are skipped, so it
is chained once.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import aiokafka
import orjson
from aiokafka import TopicPartition

from duoli.ledger import Ledger
from streams.consumers import background_consumer
from streams.elected import SingleWriter
from streams.topics import TopicNames
from streams.wire import json_bytes

__all__ = ["RECENT_IDS", "Chainer", "LedgerWriter"]

log = logging.getLogger(__name__)

RECENT_IDS = 100_000  # a repeat comes within a few batches of the original: room to spare
MAX_RECORDS = 2000
ID_FIELDS = {"decision": "decision_id", "alert": "alert_id"}
EARLIEST = {"auto_offset_reset": "earliest"}


class Chainer:
    """The writer's memory, pure: the chain's head, where each source was read up to, and
    the ids chained lately. Rebuilt from the ledger topic with :meth:`replay`."""

    def __init__(self, kinds: Mapping[str, str]) -> None:
        self.kinds = dict(kinds)  # source topic -> entry kind
        self.ledger = Ledger()
        self.positions: dict[tuple[str, int], int] = {}  # next offset to read
        self._recent: deque[str] = deque()
        self._seen: set[str] = set()

    def replay(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Take in the ledger as written so far, oldest first (in as many calls as needed)."""
        last: Mapping[str, Any] | None = None
        for entry in entries:
            last = entry
            source = entry.get("source")
            if isinstance(source, Mapping):
                tp = (str(source["topic"]), int(source["partition"]))
                self.positions[tp] = max(self.positions.get(tp, 0), int(source["offset"]) + 1)
            self._remember(_entry_id(entry))
        if last is not None:
            self.ledger = Ledger.resume(last)

    def chain(self, topic: str, partition: int, offset: int, value: bytes) -> dict[str, Any] | None:
        """The entry for one source record, or None for a repeat or an unreadable record."""
        self.positions[topic, partition] = offset + 1
        kind = self.kinds[topic]
        try:
            payload = orjson.loads(value)
            record_id = str(payload[ID_FIELDS[kind]])
        except Exception as error:  # a record no worker wrote: nothing to chain
            log.warning("%s[%d]@%d not chained: %s", topic, partition, offset, error)
            return None
        if record_id in self._seen:
            return None
        entry = self.ledger.append(kind, payload)
        entry["source"] = {"topic": topic, "partition": partition, "offset": offset}
        self._remember(record_id)
        return entry

    def _remember(self, record_id: str | None) -> None:
        if record_id is None or record_id in self._seen:
            return
        self._recent.append(record_id)
        self._seen.add(record_id)
        if len(self._recent) > RECENT_IDS:
            self._seen.discard(self._recent.popleft())


def _entry_id(entry: Mapping[str, Any]) -> str | None:
    payload = entry.get("payload")
    field = ID_FIELDS.get(str(entry.get("kind")))
    if not isinstance(payload, Mapping) or field is None or field not in payload:
        return None
    return str(payload[field])


class LedgerWriter(SingleWriter):
    """Chains decisions and alerts, from where the ledger topic left off."""

    role = "ledger writer"

    def __init__(self, broker_url: str, names: TopicNames, partitions: int) -> None:
        kinds = {names.decisions: "decision", names.alerts: "alert"}
        sources = [TopicPartition(t, p) for t in kinds for p in range(partitions)]
        super().__init__(broker_url, sources, consumer_options=EARLIEST)
        self.names = names
        self.kinds = kinds
        self.chainer: Chainer | None = None

    async def step(
        self, consumer: aiokafka.AIOKafkaConsumer, producer: aiokafka.AIOKafkaProducer
    ) -> None:
        if self.chainer is None:
            self.chainer = await self._resume(consumer)
        chainer = self.chainer
        batches = await consumer.getmany(*self.sources, timeout_ms=200, max_records=MAX_RECORDS)
        entries = [
            entry
            for tp in sorted(batches, key=lambda tp: (tp.topic, tp.partition))
            for record in batches[tp]
            if (entry := chainer.chain(tp.topic, tp.partition, record.offset, record.value))
        ]
        try:
            await self._append(producer, entries)
        except Exception:
            log.exception("ledger append failed; resuming from the ledger topic")
            self.chainer = None

    async def _append(
        self, producer: aiokafka.AIOKafkaProducer, entries: list[dict[str, Any]]
    ) -> None:
        """In order (the producer keeps one request in flight per partition), then all
        acknowledged before the next read."""
        sent = [
            await producer.send(self.names.ledger, json_bytes(entry), partition=0)
            for entry in entries
        ]
        for delivery in sent:
            await delivery

    async def _resume(self, consumer: aiokafka.AIOKafkaConsumer) -> Chainer:
        chainer = Chainer(self.kinds)
        await _read_ledger(self.broker_url, self.names.ledger, chainer)
        for tp in self.sources:
            offset = chainer.positions.get((tp.topic, tp.partition))
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
        log.info("ledger writer resumed at seq %d", chainer.ledger.next_seq)
        return chainer


async def _read_ledger(url: str, topic: str, chainer: Chainer) -> None:
    """Feed the chainer every entry of the ledger topic so far, in order, a batch at a time.

    Tansu may report an end offset short of the last records, so reading goes on until a
    fetch past that end comes back empty.
    """
    consumer = background_consumer(url, **EARLIEST)
    partition = TopicPartition(topic, 0)
    await consumer.start()
    try:
        consumer.assign([partition])
        end = (await consumer.end_offsets([partition]))[partition]
        await consumer.seek_to_beginning(partition)
        while True:
            batches = await consumer.getmany(partition, timeout_ms=300, max_records=MAX_RECORDS)
            records = batches.get(partition, [])
            chainer.replay(orjson.loads(record.value) for record in records)
            if not records and await consumer.position(partition) >= end:
                return
    finally:
        await consumer.stop()
