"""The agents: thin loops that batch messages, call the processors and commit the batch.

A batch is acknowledged only after the loop body returns, and the body ends by storing
its outputs, then its state (Faust flushes the producer before every offset commit), so
an offset is never committed before its outputs and state exist.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

from duoli.metrics import WorkerMetrics
from streams._faust_compat import seal_changelogs, write_table
from streams.processing import AccountProcessor, Batch, MerchantProcessor, count_events
from streams.progress import Progress

__all__ = ["register_agents"]

BATCH_SIZE = 2000
BATCH_LINGER = 0.005

Process = Callable[[Batch, list[Any]], Awaitable[None]]


async def batches(stream: Any, size: int, linger: float) -> AsyncIterator[list[Any]]:
    """Yield the stream's events in batches; each is acknowledged once the caller is done.

    A batch closes at ``size`` events, or when no more is waiting ``linger`` seconds after
    its first event. Faust's own ``take_events`` could acknowledge an event that arrived
    while a batch was being processed without ever yielding it; this loop acknowledges
    only what it yielded.
    """
    manual = stream.noack()
    queue = stream.channel.queue
    clock = asyncio.get_running_loop().time
    batch: list[Any] = []
    deadline = 0.0
    async for event in manual.events():
        if not batch:
            deadline = clock() + linger
        batch.append(event)
        if len(batch) < size and await _more_before(queue, deadline, clock):
            continue
        yield batch
        for done in batch:
            await manual.ack(done)
        batch = []


async def _more_before(queue: Any, deadline: float, clock: Callable[[], float]) -> bool:
    """Whether another event is waiting, or arrives before the deadline."""
    if queue.empty() and (left := deadline - clock()) > 0:
        await asyncio.sleep(left)
    return not queue.empty()


async def _commit(app: Any, batch: Batch, sink: Any, metrics: WorkerMetrics) -> None:
    """Outputs first, acknowledged, then the state that marks their events as done.

    After a crash, an event whose state reached the changelog is skipped as a duplicate
    when it is delivered again, so its outputs must already be stored by then. The
    metrics count a batch once its outputs are stored: that ends its events' latency.
    """
    for topic, key, record, partition in batch.records:
        await app.producer.send(
            topic, key, record, partition=partition, timestamp=None, headers=None
        )
    await asyncio.gather(app.producer.flush(), sink.flush())
    metrics.record(batch.tally)
    for (table, key), (value, changelog_partition) in batch.writes.items():
        await write_table(app.producer, table, key, value, changelog_partition)
    await seal_changelogs(app.producer, batch.writes)


def _admitted(progress: Progress, batch: Batch, events: list[Any]) -> list[Any]:
    """The events to apply, in offset order; redeliveries and events past a gap drop out."""
    return [
        event
        for event in events
        if progress.admit(batch, event.message.topic, event.message.partition, event.message.offset)
    ]


async def _score_accounts(
    accounts: AccountProcessor, batch: Batch, events: list[Any], clock_topic: str
) -> None:
    parsed = [None if e.message.topic == clock_topic else accounts.parse(e.value) for e in events]
    count_events(batch.tally, parsed)
    batch.tally.produced_at.extend(
        e.message.timestamp for e in events if e.message.topic != clock_topic
    )
    await accounts.models_ready(parsed)
    await accounts.merchants.prefetch(filter(None, map(accounts.merchant_key, parsed)))
    for event, item in zip(events, parsed, strict=True):
        message = event.message
        if item is None:
            accounts.on_tick(batch, event.value, message.partition)
        else:
            accounts.on_event(batch, event.value, item, message.partition, message.offset)
    accounts.end_batch(batch)


async def _track_merchants(merchants: MerchantProcessor, batch: Batch, events: list[Any]) -> None:
    for event in events:
        merchants.on_tallies(batch, event.value, event.message.partition)
    merchants.end_batch(batch)


def register_agents(
    app: Any,
    topics: Any,
    accounts: AccountProcessor,
    merchants: MerchantProcessor,
    progress: Progress,
    ready: Callable[[], Awaitable[None]],
    metrics: WorkerMetrics,
) -> None:
    """Both agents run the same loop: batch, admit in offset order, process, commit."""
    clock_topic = topics.names.clock

    async def run(stream: Any, process: Process, sink: Any) -> None:
        async for received in batches(stream, BATCH_SIZE, BATCH_LINGER):
            with progress.working(received):
                await ready()
                batch = Batch()
                await process(batch, _admitted(progress, batch, received))
                await _commit(app, batch, sink, metrics)

    @app.agent(topics.account_input, name="score_accounts")
    async def score_accounts(stream: Any) -> None:
        process = partial(_score_accounts, accounts, clock_topic=clock_topic)
        await run(stream, process, accounts.sink)

    @app.agent(topics.merchant_facts, name="track_merchants")
    async def track_merchants(stream: Any) -> None:
        await run(stream, partial(_track_merchants, merchants), merchants.sink)
