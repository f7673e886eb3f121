"""How events are batched, and the order in which a batch's parts are stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest

from streams.agents import EventBatches, _after, _sorted_out
from streams.processing import Batch
from streams.progress import Progress


class QueueStream:
    """The part of a Faust stream that ``EventBatches`` reads: its queue and its events."""

    def __init__(self) -> None:
        self.channel = SimpleNamespace(queue=asyncio.Queue())

    def noack(self) -> QueueStream:
        return self

    async def events(self) -> AsyncIterator[Any]:
        while True:
            yield await self.channel.queue.get()


async def first_batches(
    events: int, count: int, linger: float, turns: int = 0, pace: float = 0.0
) -> list[list[int]]:
    """The first ``count`` batches of ``events`` fed one every ``turns`` turns of the
    event loop (as Faust delivers a backlog) and ``pace`` seconds."""
    stream = QueueStream()

    async def feed() -> None:
        for n in range(events):
            stream.channel.queue.put_nowait(n)
            for _ in range(turns):
                await asyncio.sleep(0)
            await asyncio.sleep(pace)

    feeding = asyncio.ensure_future(feed())
    batches = []
    async for batch in EventBatches(stream, size=50, linger=linger):
        batches.append(batch)
        if len(batches) == count:
            break
    feeding.cancel()
    return batches


def test_a_backlog_fills_a_batch_past_the_linger() -> None:
    """Events that keep coming (a topic read from behind) keep the batch open to its
    size, even with no linger: per-batch costs are then paid once per batch, not per few
    events."""
    batches = asyncio.run(first_batches(events=120, count=2, linger=0.0, turns=10))
    assert batches == [list(range(50)), list(range(50, 100))]


def test_a_quiet_stream_closes_each_batch_soon_after_its_event() -> None:
    batches = asyncio.run(first_batches(events=3, count=3, linger=0.005, pace=0.05))
    assert batches == [[0], [1], [2]]


def test_a_step_runs_only_after_the_steps_it_depends_on() -> None:
    async def scenario() -> list[str]:
        done: list[str] = []

        async def step(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            done.append(name)

        outputs = asyncio.ensure_future(step("outputs", 0.03))
        state_before = asyncio.ensure_future(step("state before", 0.01))
        await _after([outputs, state_before, None], partial(step, "state", 0.0))
        return done

    assert asyncio.run(scenario()) == ["state before", "outputs", "state"]


def test_a_failed_step_fails_what_depends_on_it_without_running_it() -> None:
    async def scenario() -> list[str]:
        ran: list[str] = []

        async def fail() -> None:
            raise RuntimeError("the broker refused the outputs")

        async def state() -> None:
            ran.append("state")

        outputs = asyncio.ensure_future(fail())
        with pytest.raises(RuntimeError, match="refused"):
            await _after([outputs], state)
        return ran

    assert asyncio.run(scenario()) == []


class Table(dict[str, int]):
    __hash__ = object.__hash__  # type: ignore[assignment]  # as Faust's tables are


def test_events_past_a_hole_are_neither_applied_nor_acknowledged() -> None:
    """Acknowledged, they would let the commit pass them once the hole is filled, before
    they come again and are applied."""
    progress = Progress(Table({"t:0": 10}))
    received = [
        SimpleNamespace(message=SimpleNamespace(topic="t", partition=0, offset=offset))
        for offset in (9, 10, 12, 13)  # 9 was applied before, 11 is missing
    ]
    applied, settled = _sorted_out(progress, Batch(), received)
    assert [event.message.offset for event in applied] == [10]
    assert [event.message.offset for event in settled] == [9, 10]
