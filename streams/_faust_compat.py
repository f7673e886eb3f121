"""The places where Duoli reaches past Faust's public API, each for a measured reason."""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.serializers import codecs
from faust.transport.consumer import Consumer

__all__ = [
    "acknowledge_applied",
    "cap_fetch_wait",
    "guard_commit_head",
    "missing_head",
    "seal_changelogs",
    "write_table",
]


async def write_table(producer: Any, table: Any, key: Any, value: Any, partition: int) -> None:
    """Set a table key and send its changelog record, as ``table[key] = value`` does.

    Faust sends changelogs through a per-message buffer that it drains one message per
    event-loop turn, and blocks the stream while more than 100 wait: that took about
    0.5 ms per event here. This writes the same record (same topic, codecs and partition,
    so recovery reads it back unchanged) straight to the producer, which Faust flushes
    before every commit.
    """
    table.data[key] = value
    await producer.send(
        table.changelog_topic.get_topic_name(),
        codecs.dumps(table.key_serializer, key),
        codecs.dumps(table.value_serializer, value),
        partition=partition,
        timestamp=None,
        headers=None,
    )


def cap_fetch_wait(max_wait_ms: int) -> None:
    """Cap the consumer's fetch long-poll.

    Faust hard-codes ``fetch_max_wait_ms=1500``. Tansu answers a fetch that spans several
    partitions only part-way through that wait, so every hop took about 0.55 s; with 20 ms
    the round trip is about 5 ms at the median and 16 ms at p99 (measured on the embedded
    broker). Idempotent.
    """
    base = getattr(aiokafka.AIOKafkaConsumer, "_duoli_base", aiokafka.AIOKafkaConsumer)

    class CappedConsumer(base):  # type: ignore[misc, valid-type]
        _duoli_base = base

        def __init__(self, *topics: Any, **options: Any) -> None:
            options["fetch_max_wait_ms"] = min(options.get("fetch_max_wait_ms", 500), max_wait_ms)
            super().__init__(*topics, **options)

    aiokafka.AIOKafkaConsumer = CappedConsumer


async def seal_changelogs(producer: Any, writes: dict[tuple[Any, Any], tuple[Any, int]]) -> None:
    """End each written changelog partition with a record alone in its own record batch.

    Tansu reports a partition's end offset as the start of its last record batch plus one,
    and Faust's recovery reads a changelog only up to that offset: after a crash, the
    states written in a batch's last multi-record batch were silently left out. Writing
    the last record of each partition again (the same key and value, so recovery is
    unchanged) after a flush makes that batch one record long and the end offset exact.
    """
    last: dict[tuple[Any, int], tuple[Any, Any]] = {}
    for (table, key), (value, partition) in writes.items():
        last[table, partition] = (key, value)
    await producer.flush()
    for (table, partition), (key, value) in last.items():
        await write_table(producer, table, key, value, partition)


def missing_head(consumer: Any, tp: Any) -> int | None:
    """The committed offset of ``tp`` when its event is not acknowledged yet but later
    ones are; ``None`` while the partition can commit."""
    acked, committed = consumer._acked.get(tp), consumer._committed_offset.get(tp)
    if not acked or committed is None or min(acked) <= committed:
        return None
    gap = consumer._gap.get(tp)
    return None if gap and gap.overlaps_point(committed) else committed


def acknowledge_applied(consumer: Any, tp: Any, applied: int) -> None:
    """Count every offset below ``applied`` acknowledged, from the committed one on.

    After a partition moves, it is read again from its committed offset, and the events
    already applied come again only to be skipped. Faust's seek race can drop some of them
    before they are acknowledged; the commit guard then waits for them forever. They were
    applied and stored, so the commit may pass them.
    """
    committed = consumer._committed_offset.get(tp)
    if committed is None:
        return
    index, acked = consumer._acked_index[tp], consumer._acked[tp]
    for offset in range(committed, applied):
        if offset not in index:
            index.add(offset)
            acked.append(offset)
    acked.sort()


def guard_commit_head() -> None:
    """Never commit past an event that was not acknowledged.

    Faust's ``Consumer._new_offset`` tolerates exactly one missing offset at the head of
    a partition (``min(acked) - committed > 1``), so an event lost before processing at
    the committed offset was committed over and never seen again (seen here after a
    restart). Idempotent.
    """
    if getattr(Consumer._new_offset, "_duoli_guard", False):
        return
    new_offset = Consumer._new_offset

    def guarded(self: Any, tp: Any) -> int | None:
        return None if missing_head(self, tp) is not None else new_offset(self, tp)

    guarded._duoli_guard = True  # type: ignore[attr-defined]
    Consumer._new_offset = guarded  # type: ignore[method-assign]
