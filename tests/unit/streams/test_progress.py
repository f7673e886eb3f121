"""Input progress: offsets applied strictly in order, gaps fetched again, failures too;
and the commit guard that keeps Faust from committing over a lost offset.

The table is a dict here (hashable, as Faust tables are): Progress only calls ``get`` on it.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import Interval, IntervalTree

from duoli.account import AccountState
from duoli.events import parse_event
from streams._faust_compat import guard_commit_head, ignore_offset_jumps, missing_head
from streams.processing import Batch, redelivered
from streams.progress import Progress, end_offsets, settle_applied_heads


class Table(dict[str, int]):
    __hash__ = object.__hash__  # type: ignore[assignment]


def stored(progress: Progress, batch: Batch) -> None:
    """What ``_commit`` does to a table once the batch is stored."""
    for (table, key), (value, _) in batch.writes.items():
        table[key] = value


def event(offset: int, partition: int = 0, topic: str = "t") -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset))


def test_a_partition_with_no_progress_starts_at_its_first_offset() -> None:
    progress, batch = Progress(Table()), Batch()
    assert progress.admit(batch, "t", 0, 40)
    assert progress.admit(batch, "t", 0, 41)
    assert batch.writes[progress.table, "t:0"] == (42, 0)


def test_offsets_below_the_next_are_redeliveries_and_skipped() -> None:
    progress, batch = Progress(Table({"t:0": 10})), Batch()
    assert [progress.admit(batch, "t", 0, o) for o in (8, 9, 10, 10, 11)] == [
        False, False, True, False, True,
    ]  # fmt: skip
    assert progress.gaps == {}


def test_an_offset_past_a_gap_is_refused_and_its_partition_fetched_again() -> None:
    progress, batch = Progress(Table({"t:0": 10, "t:1": 5})), Batch()
    assert not progress.admit(batch, "t", 0, 13)
    assert progress.admit(batch, "t", 1, 5)
    assert progress.refetches(retry_after=1.0) == [("t", 0, 10)]
    assert progress.refetches(retry_after=1.0) == []  # not again at once
    assert progress.refetches(retry_after=0.0) == [("t", 0, 10)]  # but once the retry is due


def test_the_missing_offset_closes_the_gap() -> None:
    progress, batch = Progress(Table({"t:0": 10})), Batch()
    progress.admit(batch, "t", 0, 12)
    assert progress.admit(batch, "t", 0, 10)
    assert progress.gaps == {}


def test_progress_moves_only_when_the_batch_is_stored() -> None:
    table = Table({"t:0": 10})
    progress = Progress(table)
    failed = Batch()
    assert progress.admit(failed, "t", 0, 10)
    retry = Batch()  # the failed batch was never stored: offset 10 is still next
    assert progress.admit(retry, "t", 0, 10)
    stored(progress, retry)
    assert table["t:0"] == 11


def test_a_failed_batch_has_its_partitions_fetched_again() -> None:
    progress = Progress(Table({"t:0": 3, "t:2": 7}))
    with pytest.raises(RuntimeError), progress.working([event(3), event(7, 2)]):
        raise RuntimeError("redis went away")
    assert sorted(progress.refetches(retry_after=1.0)) == [("t", 0, 3), ("t", 2, 7)]


def test_a_partition_with_nothing_stored_is_left_to_the_committed_offset() -> None:
    progress = Progress(Table())
    with pytest.raises(RuntimeError), progress.working([event(0)]):
        raise RuntimeError
    assert progress.refetches(retry_after=0.0) == []
    assert progress.gaps == {}


def test_reset_forgets_the_gaps_of_the_old_assignment() -> None:
    progress = Progress(Table({"t:0": 1}))
    progress.admit(Batch(), "t", 0, 5)
    progress.reset()
    assert progress.refetches(retry_after=0.0) == []


TX = (
    b'{"type": "transaction", "event_id": "e1", "account_id": "a1", '
    b'"occurred_at": "2026-01-01T00:00:00Z", "amount": 10, "currency": "USD", '
    b'"merchant_id": "m1", "device_id": "d1", "city": "x", "channel": "card"}'
)


def test_a_seen_event_at_an_applied_offset_is_a_redelivery_not_a_duplicate() -> None:
    tx = parse_event(TX, max_amount=1e6)
    state = AccountState.fresh("a1", 1000.0, 0.3)
    state.remember("e1", 0.0)
    state.partition, state.last_offset = 2, 17
    assert redelivered(state, tx, partition=2, offset=17)
    assert not redelivered(state, tx, partition=2, offset=18)  # a producer's duplicate
    assert not redelivered(state, tx, partition=1, offset=3)  # another partition's offsets
    state.seen_ids = type(state.seen_ids)("q")
    assert not redelivered(state, tx, partition=2, offset=10)  # never applied: not seen


def consumer(acked: list[int], committed: int | None, gap: tuple[int, int] | None = None) -> Any:
    """Faust's Consumer bookkeeping, as ``missing_head`` reads it."""
    tree = IntervalTree([Interval(*gap)]) if gap else IntervalTree()
    return SimpleNamespace(
        _acked={"tp": acked}, _committed_offset={"tp": committed}, _gap={"tp": tree}
    )


@pytest.mark.parametrize(
    ("acked", "committed", "gap", "head"),
    [
        ([10, 11], 10, None, None),  # the head is acknowledged: commit
        ([11, 12], 10, None, 10),  # Faust would commit 13 over the lost offset 10
        ([14], 10, None, 10),
        ([11, 12], 10, (10, 11), None),  # offset 10 does not exist (a hole Faust saw)
        ([], 10, None, None),
        ([5], None, None, None),  # nothing committed yet: nothing to compare with
    ],
)
def test_missing_head_is_the_committed_offset_when_later_ones_are_acknowledged(
    acked: list[int], committed: int | None, gap: tuple[int, int] | None, head: int | None
) -> None:
    assert missing_head(consumer(acked, committed, gap), "tp") == head


def moved_partition(acked: list[int], committed: int) -> Any:
    """Faust's Consumer bookkeeping for one partition, as its commit reads it."""
    tp = TP("t", 0)
    return SimpleNamespace(
        _acked={tp: list(acked)}, _acked_index={tp: set(acked)}, _committed_offset={tp: committed},
        _gap={tp: IntervalTree()}, assignment=lambda: {tp},
    )  # fmt: skip


def faust_commit_offset(consumer: Any) -> int | None:
    """The offset Faust would commit now, with Duoli's guard on, as in a worker."""
    guard_commit_head()
    return Consumer._new_offset(consumer, TP("t", 0))


def test_offsets_applied_before_a_move_that_never_came_again_are_acknowledged() -> None:
    """A moved partition is read again from its committed offset 10. Faust's seek race
    dropped 10 to 12; 13 and 14 came again and were skipped; 15 is the next to apply."""
    consumer = moved_partition(acked=[13, 14], committed=10)
    assert faust_commit_offset(consumer) is None  # the guard waits for 10, which never comes
    settle_applied_heads(consumer, Progress(Table({"t:0": 15})), {"t"})
    assert faust_commit_offset(consumer) == 15


def test_offsets_faust_skipped_over_are_not_committed_before_they_are_applied() -> None:
    """Faust's read offset jumped from 10 to 14 (11 to 13 were lost on the way, to be
    fetched again): the commit stops at 11 until they come back and are acknowledged."""
    consumer = moved_partition(acked=[10, 14, 15], committed=10)
    ignore_offset_jumps()
    asyncio.run(Consumer._add_gap(consumer, TP("t", 0), 11, 13))
    tp = TP("t", 0)
    assert faust_commit_offset(consumer) == 11
    consumer._committed_offset[tp] = 11
    consumer._acked[tp] += [11, 12, 13]
    assert faust_commit_offset(consumer) == 16


def test_a_lost_offset_not_yet_applied_is_left_to_the_refetch() -> None:
    consumer = moved_partition(acked=[16, 17], committed=15)
    settle_applied_heads(consumer, Progress(Table({"t:0": 15})), {"t"})
    assert faust_commit_offset(consumer) is None
    settle_applied_heads(consumer, Progress(Table({"t:0": 15})), {"other"})
    assert consumer._acked[TP("t", 0)] == [16, 17]


def test_a_partition_behind_its_end_that_does_not_move_is_fetched_again() -> None:
    table = Table({"t:0": 10, "t:1": 4})
    progress = Progress(table)
    ends = {("t", 0): 15, ("t", 1): 4}  # 1 is at its end
    progress.check_stalls(ends, ends)
    assert progress.refetches(retry_after=0.0) == []  # behind once: maybe still busy
    table["t:0"] = 12
    progress.check_stalls(ends, ends)
    assert progress.refetches(retry_after=0.0) == []  # it moved
    progress.check_stalls(ends, ends)
    assert progress.refetches(retry_after=0.0) == [("t", 0, 12)]  # stuck at 12 of 15


def test_a_partition_is_due_only_up_to_what_faust_has_delivered() -> None:
    """Events Faust has not handed over yet are not lost: behind them a partition is slow."""
    read = {TP("t", 0): 11, TP("t", 1): 3, TP("t", 2): None, TP("u", 0): 50}
    consumer = SimpleNamespace(
        assignment=lambda: set(read),
        highwater=lambda tp: {("t", 0): 15, ("t", 1): 4, ("t", 2): 9, ("u", 0): 80}[tp],
        _read_offset=read,
    )
    delivered, highwater = end_offsets(consumer, {"t"})
    assert delivered == {("t", 0): 12, ("t", 1): 4}
    assert highwater == {("t", 0): 15, ("t", 1): 4, ("t", 2): 9}
    progress = Progress(Table({"t:0": 12, "t:1": 3}))
    for _ in range(2):
        progress.check_stalls(delivered, highwater)
    assert progress.refetches(retry_after=0.0) == [("t", 1, 3)]  # 3 was delivered, not applied


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("streams.progress.time", fake)
    return fake


def test_a_slow_batch_is_not_a_stall(clock: Clock) -> None:
    progress = Progress(Table({"t:0": 10}))
    with progress.working([event(10)]):
        for _ in range(3):
            clock.now += 10
            progress.check_stalls({("t", 0): 15}, {("t", 0): 15})
        assert progress.refetches(retry_after=1.0) == []  # busy all along
    clock.now += 1  # just finished: the next events may still be queued
    progress.check_stalls({("t", 0): 15}, {("t", 0): 15})
    assert progress.refetches(retry_after=1.0) == []
    clock.now += 3  # quiet long enough, and still at 10 of 15
    progress.check_stalls({("t", 0): 15}, {("t", 0): 15})
    assert progress.refetches(retry_after=1.0) == [("t", 0, 10)]


def test_a_gap_that_stays_open_is_fetched_again_ever_less_often(clock: Clock) -> None:
    progress = Progress(Table({"t:0": 10}))
    assert not progress.admit(Batch(), "t", 0, 12)
    fetched_at = []
    for _ in range(40):
        if progress.refetches(retry_after=1.0):
            fetched_at.append(clock.now - 1000)
        clock.now += 1
    assert fetched_at == [0, 1, 3, 7, 15, 31]
    assert progress.admit(Batch(), "t", 0, 10)  # closed: the next gap starts afresh
    assert progress.attempts == {}


def test_batches_of_other_partitions_do_not_hide_a_stall(clock: Clock) -> None:
    """Ticks and busy neighbours keep the agent working; a partition whose tail was lost
    is still fetched again once none of its own events has been in a batch for a while."""
    progress = Progress(Table({"t:0": 10, "t:1": 3}))
    for _ in range(3):
        with progress.working([event(3, partition=1)]):
            clock.now += 2
            progress.check_stalls({("t", 0): 15}, {("t", 0): 15})
    assert progress.refetches(retry_after=1.0) == [("t", 0, 10)]


def test_a_partition_behind_undelivered_events_for_long_is_fetched_again(clock: Clock) -> None:
    """Faust held back events it never delivered: slow at first, lost once that lasts."""
    progress = Progress(Table({"t:0": 12, "t:1": 5}))
    delivered, highwater = {("t", 0): 12, ("t", 1): 5}, {("t", 0): 15, ("t", 1): 9}
    for _ in range(29):
        progress.check_stalls(delivered, highwater)
        clock.now += 1
    assert progress.refetches(retry_after=1.0) == []  # held back, but not for long
    progress.table["t:1"] = 6  # partition 1 moved on: its wait starts again
    progress.check_stalls(delivered, highwater)
    clock.now += 1
    progress.check_stalls(delivered, highwater)
    assert progress.refetches(retry_after=1.0) == [("t", 0, 12)]


def test_events_delivered_since_the_last_check_are_not_lost_yet(clock: Clock) -> None:
    """A quiet partition's new events may still wait in the stream's queue behind a busy
    agent: lost only if they are still not applied at the next check."""
    progress = Progress(Table({"t:0": 12}))
    clock.now += 10  # quiet for long
    progress.check_stalls({("t", 0): 12}, {("t", 0): 15})  # not delivered yet
    progress.check_stalls({("t", 0): 15}, {("t", 0): 15})  # delivered now
    assert progress.refetches(retry_after=1.0) == []
    progress.check_stalls({("t", 0): 15}, {("t", 0): 15})  # and still not applied
    assert progress.refetches(retry_after=1.0) == [("t", 0, 12)]
