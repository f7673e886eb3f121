"""The places where Duoli reaches past Faust's public API, each for a measured reason."""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.serializers import codecs
from faust.transport.consumer import Consumer

from streams.wire import right_sized

__all__ = [
    "acknowledge_applied",
    "cap_fetch_wait",
    "delivered_offset",
    "guard_commit_head",
    "ignore_offset_jumps",
    "missing_head",
    "seek_in_consumer_thread",
    "send_changelogs",
    "set_value_serializer",
    "write_table",
]


Record = tuple[str, bytes, bytes, int]  # topic, key, value, partition


def write_table(table: Any, key: Any, value: Any, partition: int) -> Record:
    """Set a table key and return its changelog record, as ``table[key] = value`` makes it.

    Faust sends changelogs through a per-message buffer that it drains one message per
    event-loop turn, and blocks the stream while more than 100 wait: that took about
    0.5 ms per event here. The caller sends the same record (same topic, codecs and
    partition, so recovery reads it back unchanged) straight to the producer. The value
    is encoded now: a state object the next batch changes must be stored as it is here;
    and right-sized, as it waits for its batch to be sent (Faust's codecs use orjson).
    """
    table.data[key] = value
    return (
        table.changelog_topic.get_topic_name(),
        right_sized(codecs.dumps(table.key_serializer, key)),
        right_sized(codecs.dumps(table.value_serializer, value)),
        partition,
    )


def set_value_serializer(table: Any, codec: str) -> None:
    """Give a table, and the changelog topic it recovers from, the value codec ``codec``.

    Faust takes a table's serializer from a ``faust.Record`` value type only, and makes
    the changelog topic as the table is made. That topic must be made again, by Faust's
    own factory: ``Topic.derive`` drops ``acks=False``, which marks it a changelog, and
    Faust's stall monitor then took the worker's own changelog for a stream it had
    stopped reading, logging an error for each of its partitions every few seconds once
    the worker had run five minutes.
    """
    table.value_serializer = codec
    table.changelog_topic = table._new_changelog_topic()


FAUST_FETCH_WAIT_MS = 1500  # hard-coded in faust.transport.drivers.aiokafka


def cap_fetch_wait(max_wait_ms: int) -> None:
    """Cap the long-poll of Faust's consumer, and of it only.

    Faust hard-codes ``fetch_max_wait_ms=1500``. Tansu answers a fetch that spans several
    partitions only part-way through that wait, so every hop took about 0.55 s; with 20 ms
    the round trip is about 5 ms at the median and 16 ms at p99 (measured on the embedded
    broker). Duoli's own consumers (``streams.consumers``) ask for 200 ms and keep it: with
    them at 20 ms too, the empty fetches of an idle worker cost it 8% of a core and the
    broker 13%; at 200 ms, 3.5% and 6.3%. Idempotent.
    """
    base = getattr(aiokafka.AIOKafkaConsumer, "_duoli_base", aiokafka.AIOKafkaConsumer)

    class CappedConsumer(base):  # type: ignore[misc, valid-type]
        _duoli_base = base

        def __init__(self, *topics: Any, **options: Any) -> None:
            if options.get("fetch_max_wait_ms") == FAUST_FETCH_WAIT_MS:
                options["fetch_max_wait_ms"] = max_wait_ms
            super().__init__(*topics, **options)

    aiokafka.AIOKafkaConsumer = CappedConsumer


async def send_changelogs(producer: Any, changelogs: list[Record]) -> None:
    """Send changelog records, then end each partition with a record alone in its own
    record batch.

    Tansu reports a partition's end offset as the start of its last record batch plus one,
    and Faust's recovery reads a changelog only up to that offset: after a crash, the
    states written in a batch's last multi-record batch were silently left out. Sending
    the last record of each partition again (the same key and value, so recovery is
    unchanged) after a flush makes that batch one record long and the end offset exact.
    A flush after it too, so the next batch's records cannot join its record batch.
    """
    last: dict[tuple[str, int], Record] = {}
    for record in changelogs:
        await _send(producer, record)
        last[record[0], record[3]] = record
    await producer.flush()
    for record in last.values():
        await _send(producer, record)
    if last:
        await producer.flush()


async def _send(producer: Any, record: Record) -> None:
    topic, key, value, partition = record
    await producer.send(topic, key, value, partition=partition, timestamp=None, headers=None)


async def seek_in_consumer_thread(consumer: Any, tp: Any, offset: int) -> None:
    """``consumer.seek``, run in the thread that fetches.

    Faust's ``seek`` moves aiokafka's fetcher from the app's thread, while the consumer's
    own thread may be walking the fetched records: aiokafka then fails with a ``KeyError``
    that crashes the worker (seen in a drain of the throughput benchmark). In the
    consumer's thread the seek falls between two fetches.
    """
    thread = consumer._thread
    await thread.call_thread(thread.seek, tp, offset)
    consumer._read_offset[tp] = offset if offset else None  # as Faust's seek does


def delivered_offset(consumer: Any, tp: Any) -> int | None:
    """The offset Faust last handed to a stream for ``tp`` (after a seek, the offset it
    reads from), or None before any."""
    offset: int | None = consumer._read_offset.get(tp)
    return offset


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


def ignore_offset_jumps() -> None:
    """Never count offsets Faust skipped over as acknowledged.

    When the offsets Faust hands over jump ahead, it takes the skipped ones for a
    transaction's markers and lets the commit pass them. Duoli's inputs are written
    without transactions: a jump is events lost on the way (or the old records of a
    partition fetched again), which the worker fetches again (``streams.progress``), and
    the commit must wait until they are applied. Counted as acknowledged, they let a
    replay's next day start before them, and its scores differed from a quiet run's.
    Idempotent.
    """

    async def ignore(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        return None

    Consumer._add_gap = ignore  # type: ignore[method-assign]
