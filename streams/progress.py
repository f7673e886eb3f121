"""Which input offsets each partition has applied, kept in a table so a restart knows.

Faust can lose a fetched message around recovery: its "seek to committed offsets" races
the fetch loop, then clears the stream queues and discards the fetched-again copies as
already read (seen here after a worker restart, about one run in two). Offsets of the
input topics have no holes, so an agent applies a partition's offsets strictly in order:
an offset below the next one is a redelivery and is skipped; one above it means some were
lost, so it is skipped too and the partition is fetched again from the next offset. A
batch that fails, and a partition that stays behind its end offset without moving (its
last events were lost), are fetched again the same way. The other way round, events
below the next offset that the race dropped were applied already: they count as
acknowledged, so that Faust's commit, which waits for every offset, moves past them.

Fetching again must not feed itself: a slow batch is not a stall (a partition counts as
stalled only once no batch has held its events for ``QUIET_SECONDS``), and a gap still open
is fetched again after twice the wait of its previous attempt (the events of the last
seek may still be queued behind a slow batch). A partition behind only events Faust has not
delivered yet is slow, not stalled; but one that stays so for ``UNDELIVERED_SECONDS``, far
longer than Faust holds a partition back while it drains a backlog, lost them before they
were delivered, and is fetched again too (an eval replay once waited in vain on such a
partition).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from faust.types import TP

from streams._faust_compat import (
    acknowledge_applied,
    delivered_offset,
    missing_head,
    seek_in_consumer_thread,
)

__all__ = ["REFETCH_RETRY", "Progress", "end_offsets", "refetch_gaps", "settle_applied_heads"]

REFETCH_RETRY = 1.0  # seconds before a gap is fetched again the first time
QUIET_SECONDS = 3.0  # idle time after which a partition behind its end is stalled
UNDELIVERED_SECONDS = 30.0  # time behind undelivered events after which they count as lost
MAX_BACKOFF = 32  # a gap's retry waits at most this many times REFETCH_RETRY

log = logging.getLogger(__name__)


class Progress:
    """The next offset to apply per (topic, partition), and the partitions to fetch again.

    The next offset moves only once a batch is processed whole: a batch reads it with
    ``batch.staged``, so a batch that fails while processing leaves it where it was.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.gaps: dict[tuple[str, int], float] = {}  # -> when it was last fetched again
        self.attempts: dict[tuple[str, int], int] = {}  # -> times it was fetched again
        # at the last check: its next offset, and whether Faust had delivered it
        self.behind: dict[tuple[str, int], tuple[int, bool]] = {}
        self.still_since: dict[tuple[str, int], float] = {}  # -> when that offset was first seen
        self.busy: dict[tuple[str, int], int] = {}  # -> batches in progress holding it
        self.idle_since: dict[tuple[str, int], float] = {}  # -> when its last batch ended

    def reset(self) -> None:
        """Partitions may move: forget the gaps of this assignment."""
        self.gaps.clear()
        self.attempts.clear()
        self.behind.clear()
        self.still_since.clear()

    def check_stalls(
        self, delivered: Mapping[tuple[str, int], int], highwater: Mapping[tuple[str, int], int]
    ) -> None:
        """Fetch again a partition behind its end whose next offset did not move since the
        last check while no batch held its events: it lost its tail (no later event arrives
        to reveal the hole). Behind what Faust had ``delivered`` at both checks, that is
        lost; behind only its ``highwater``, once it has not moved for
        ``UNDELIVERED_SECONDS``."""
        now = time.monotonic()
        behind = {}
        for partition, end in highwater.items():
            expected = self.table.get(_key(*partition))
            if expected is None or expected >= end:
                continue
            lost = expected < delivered.get(partition, expected)
            behind[partition] = (expected, lost)
            before = self.behind.get(partition)
            if before is None or before[0] != expected:
                self.still_since[partition] = now
            elif partition not in self.gaps and self._quiet(partition, now):
                if lost and before[1]:  # delivered, and not applied since the last check
                    self.gaps[partition] = 0.0
                elif (still := now - self.still_since[partition]) >= UNDELIVERED_SECONDS:
                    log.warning("%s[%d]: nothing delivered from offset %d of %d for %.0f s",
                                *partition, expected, end, still)  # fmt: skip
                    self.gaps[partition] = 0.0
        self.behind = behind

    def _quiet(self, partition: tuple[str, int], now: float) -> bool:
        idle = now - self.idle_since.get(partition, 0.0)
        return not self.busy.get(partition) and idle >= QUIET_SECONDS

    def admit(self, batch: Any, topic: str, partition: int, offset: int) -> bool:
        """Whether to apply this offset now; if so its progress is staged in ``batch``."""
        key = _key(topic, partition)
        expected = batch.staged(self.table, key)
        if expected is not None and offset != expected:
            if offset > expected:
                self.gaps.setdefault((topic, partition), 0.0)
            return False
        batch.stage(self.table, key, offset + 1, partition)
        self.gaps.pop((topic, partition), None)
        self.attempts.pop((topic, partition), None)
        return True

    def ahead(self, batch: Any, topic: str, partition: int, offset: int) -> bool:
        """Whether this offset lies past the next one to apply: there is a hole before it."""
        expected = batch.staged(self.table, _key(topic, partition))
        return expected is not None and offset > expected

    @contextmanager
    def working(self, events: Iterable[Any]) -> Iterator[None]:
        """Around a batch, until its agent may take the next one (it waits there for the
        batches before to be stored): its partitions are busy, not stalled, however slow
        the broker; and if the batch fails before it is stored they are fetched again."""
        partitions = {(event.message.topic, event.message.partition) for event in events}
        for partition in partitions:
            self.busy[partition] = self.busy.get(partition, 0) + 1
        try:
            yield
        except BaseException:
            for partition in partitions:
                self.gaps.setdefault(partition, 0.0)
            raise
        finally:
            ended = time.monotonic()
            for partition in partitions:
                self.busy[partition] -= 1
                self.idle_since[partition] = ended

    def refetches(self, retry_after: float) -> list[tuple[str, int, int]]:
        """(topic, partition, offset) to fetch again: new gaps, and gaps still open after
        ``retry_after`` seconds, doubled at each attempt (the fetch loop may have discarded
        the previous one, or its events are still queued)."""
        now = time.monotonic()
        due = []
        for (topic, partition), fetched in list(self.gaps.items()):
            offset = self.table.get(_key(topic, partition))
            attempts = self.attempts.get((topic, partition), 0)
            if offset is None:  # nothing stored yet: Faust's committed offset holds
                del self.gaps[topic, partition]
            elif now - fetched >= retry_after * min(2**attempts // 2, MAX_BACKOFF):
                self.gaps[topic, partition] = now
                self.attempts[topic, partition] = attempts + 1
                due.append((topic, partition, offset))
        return due


def _key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def end_offsets(
    consumer: Any, topics: set[str]
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """How far each assigned input partition should have been applied: up to the last
    offset Faust handed to a stream, and up to its end offset from the last fetch responses.

    A partition behind only what Faust has not delivered yet is usually slow, not stalled:
    while a worker drains a backlog, Faust holds back partitions whose stream buffer is
    full, and fetching those again at once was needless; in the drains measured here, each
    such seek was followed by events of other partitions lost and fetched again.
    """
    delivered, highwater = {}, {}
    for tp in consumer.assignment():
        end = consumer.highwater(tp) if tp.topic in topics else None
        if end is None:
            continue
        highwater[tp.topic, tp.partition] = end
        read = delivered_offset(consumer, tp)
        if read is not None:
            delivered[tp.topic, tp.partition] = min(end, read + 1)
    return delivered, highwater


def settle_applied_heads(consumer: Any, progress: Progress, topics: set[str]) -> None:
    """Acknowledge what each partition applied but Faust never delivered again."""
    for tp in consumer.assignment():
        if tp.topic not in topics:
            continue
        applied = progress.table.get(_key(tp.topic, tp.partition))
        head = missing_head(consumer, tp)
        if applied is not None and head is not None and head < applied:
            log.info("%s[%d]: acknowledging offsets %d to %d, applied before", tp.topic,
                     tp.partition, head, applied - 1)  # fmt: skip
            acknowledge_applied(consumer, tp, applied)


async def refetch_gaps(consumer: Any, progress: Progress) -> None:
    for topic, partition, offset in progress.refetches(REFETCH_RETRY):
        log.warning("%s[%d] has a hole; fetching again from offset %d", topic, partition, offset)
        await seek_in_consumer_thread(consumer, TP(topic, partition), offset)
