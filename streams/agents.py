"""The agents: thin loops that batch messages, call the processors and store the batch.

A batch is processed in memory, then stored while the next one is processed: its outputs
first, acknowledged, then its Redis writes; then its state (Faust flushes the producer
before every offset commit), then its events are acknowledged. So an offset is never
committed before its outputs and state exist, Redis never runs ahead of the topics, and
the worker computes instead of waiting for the broker. Outputs are stored in batch order,
and states too; a batch's outputs need not wait for the state of the batch before, so an
alert reaches Redis one broker round trip after its batch, not two. A batch that cannot
be stored stops the worker: its tables in memory are already past it, and a restart
recovers them from the changelogs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from connectors.redis_store import RedisStore
from duoli.metrics import WorkerMetrics
from streams._faust_compat import Record, send_changelogs, write_table
from streams.processing import AccountProcessor, Batch, MerchantProcessor, count_events
from streams.progress import Progress

__all__ = ["EventBatches", "register_agents"]

BATCH_SIZE = 2000
BATCH_LINGER = 0.005
BATCH_QUIET = 0.001
IN_FLIGHT = 2  # batches being stored at once: one's outputs while the one before stores state
STOP_GRACE = 10.0  # seconds a stopping agent waits for the batch being stored

Process = Callable[[Batch, list[Any]], Awaitable[None]]
log = logging.getLogger(__name__)


class EventBatches:
    """A stream's events in batches, acknowledged only when the caller says so.

    A batch closes at ``size`` events, or when, ``linger`` seconds after its first event,
    no more has come for ``BATCH_QUIET`` seconds. Faust hands a backlog over one event
    per few turns of the event loop, and only while the agent waits: closing a batch the
    moment its queue was empty gave batches of about 70 events when reading from behind,
    and their fixed costs (a flush, a Redis pipeline, changelog tails) took a fifth of the
    worker's time. Faust's own ``take_events`` could acknowledge an event that arrived
    while a batch was being processed without ever yielding it; here only what was
    yielded is acknowledged, and only through ``ack``.
    """

    def __init__(self, stream: Any, size: int, linger: float) -> None:
        self.manual = stream.noack()
        self.queue = stream.channel.queue
        self.size = size
        self.linger = linger

    async def __aiter__(self) -> AsyncIterator[list[Any]]:
        clock = asyncio.get_running_loop().time
        batch: list[Any] = []
        deadline = 0.0
        async for event in self.manual.events():
            if not batch:
                deadline = clock() + self.linger
            batch.append(event)
            if len(batch) < self.size and await _more_before(self.queue, deadline, clock):
                continue
            yield batch
            batch = []

    async def ack(self, events: list[Any]) -> None:
        for event in events:
            await self.manual.ack(event)


async def _more_before(queue: Any, deadline: float, clock: Callable[[], float]) -> bool:
    """Whether another event is waiting, arrives before the deadline, or follows the
    last one within ``BATCH_QUIET``."""
    if queue.empty() and (left := deadline - clock()) > 0:
        await asyncio.sleep(left)
    if queue.empty():
        await asyncio.sleep(BATCH_QUIET)
    return not queue.empty()


def _apply_writes(batch: Batch) -> list[Record]:
    """The batch's table writes, now in memory for the next batch, as changelog records."""
    return [
        write_table(table, key, value, partition)
        for (table, key), (value, partition) in batch.writes.items()
    ]


async def _store_outputs(app: Any, batch: Batch, redis: RedisStore, metrics: WorkerMetrics) -> None:
    """Outputs first, acknowledged, then Redis, so Redis never shows an alert the topics
    lost with a crashed worker. The metrics count a batch once its outputs are stored:
    that ends its events' latency."""
    for topic, key, record, partition in batch.records:
        await app.producer.send(
            topic, key, record, partition=partition, timestamp=None, headers=None
        )
    await app.producer.flush()
    await redis.apply(batch.redis)
    metrics.record(batch.tally)


async def _after(
    before: Sequence[asyncio.Future[None] | None], step: Callable[[], Awaitable[None]]
) -> None:
    """Run ``step`` once the steps it depends on are done; a failed one fails it too, and
    it never starts (that failure has already stopped the worker)."""
    for future in before:
        if future is not None:
            await future
    await step()


@dataclass(frozen=True)
class Storing:
    """A batch being stored: its outputs (the end of its latency), then its state."""

    outputs: asyncio.Future[None]
    state: asyncio.Future[None]


async def _finish(storing: Storing | None) -> None:
    """Let the batch being stored finish when the agent stops (a rebalance keeps the
    tables in memory, so its events must not come again), but not for ever: a worker
    stopping with a broker gone gives up after ``STOP_GRACE`` seconds."""
    if storing is None:
        return
    try:
        await asyncio.wait_for(asyncio.shield(storing.state), STOP_GRACE)
    except TimeoutError:
        log.warning(
            "a batch was still being stored after %.0f s; its events come again", STOP_GRACE
        )


def _sorted_out(progress: Progress, batch: Batch, events: list[Any]) -> tuple[list[Any], list[Any]]:
    """The events to apply, in offset order (redeliveries and events past a gap drop out);
    and those to acknowledge once the batch is stored: all but the events past a gap. They
    come again after the hole is fetched, and until they are applied the commit must not
    pass them: acknowledged, it moved past them as soon as the hole was filled, and the
    replay's next day could start before they were applied (its scores then differed
    from a quiet run's)."""
    applied, settled = [], []
    for event in events:
        where = (event.message.topic, event.message.partition, event.message.offset)
        if progress.admit(batch, *where):
            applied.append(event)
        elif progress.ahead(batch, *where):
            continue
        settled.append(event)
    return applied, settled


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
    redis: RedisStore,
    ready: Callable[[], Awaitable[None]],
    metrics: WorkerMetrics,
) -> None:
    """Both agents run the same loop: batch, admit in offset order, process, store."""
    clock_topic = topics.names.clock

    async def guarded(step: Awaitable[None]) -> None:
        try:
            await step
        except Exception as error:
            log.critical("a batch could not be stored; the worker stops: %r", error)
            await app.crash(error)
            raise

    async def store_state(
        changelogs: list[Record], source: EventBatches, events: list[Any]
    ) -> None:
        await guarded(send_changelogs(app.producer, changelogs))
        await source.ack(events)

    def store(
        batch: Batch, changelogs: list[Record], source: EventBatches, events: list[Any],
        previous: Storing | None,
    ) -> Storing:  # fmt: skip
        """Outputs after the previous batch's outputs; state after its own outputs and the
        previous batch's state. So a batch's outputs need not wait for the state before."""
        outputs_before = previous.outputs if previous else None
        state_before = previous.state if previous else None
        outputs = asyncio.ensure_future(
            _after([outputs_before], lambda: guarded(_store_outputs(app, batch, redis, metrics)))
        )
        state = asyncio.ensure_future(
            _after([outputs, state_before], partial(store_state, changelogs, source, events))
        )
        return Storing(outputs, state)

    async def run(stream: Any, process: Process) -> None:
        source = EventBatches(stream, BATCH_SIZE, BATCH_LINGER)
        in_flight: deque[Storing] = deque()
        try:
            async for received in source:
                with progress.working(received):  # until the agent may take the next batch
                    await ready()
                    batch = Batch()
                    applied, settled = _sorted_out(progress, batch, received)
                    await process(batch, applied)
                    changelogs = _apply_writes(batch)
                    if in_flight:
                        await in_flight[-1].outputs
                    if len(in_flight) == IN_FLIGHT:
                        await in_flight.popleft().state
                in_flight.append(
                    store(batch, changelogs, source, settled, in_flight[-1] if in_flight else None)
                )
        finally:
            await _finish(in_flight[-1] if in_flight else None)

    @app.agent(topics.account_input, name="score_accounts")
    async def score_accounts(stream: Any) -> None:
        process = partial(_score_accounts, accounts, clock_topic=clock_topic)
        await run(stream, process)

    @app.agent(topics.merchant_facts, name="track_merchants")
    async def track_merchants(stream: Any) -> None:
        await run(stream, partial(_track_merchants, merchants))
