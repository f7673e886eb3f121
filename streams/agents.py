"""The agents: thin loops that batch messages, call the processors and commit the batch.

A batch is acknowledged only after the loop body returns, and the body ends by storing
its outputs, then its state (Faust flushes the producer before every offset commit), so
an offset is never committed before its outputs and state exist.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from streams._faust_compat import seal_changelogs, write_table
from streams.processing import AccountProcessor, Batch, MerchantProcessor

__all__ = ["register_agents"]

BATCH_SIZE = 2000
BATCH_WITHIN = 0.005


async def _commit(app: Any, batch: Batch, sink: Any) -> None:
    """Outputs first, acknowledged, then the state that marks their events as done.

    After a crash, an event whose state reached the changelog is skipped as a duplicate
    when it is delivered again, so its outputs must already be stored by then.
    """
    for topic, key, record, partition in batch.records:
        await app.producer.send(
            topic, key, record, partition=partition, timestamp=None, headers=None
        )
    await asyncio.gather(app.producer.flush(), sink.flush())
    for (table, key), (value, changelog_partition) in batch.writes.items():
        await write_table(app.producer, table, key, value, changelog_partition)
    await seal_changelogs(app.producer, batch.writes)


def register_agents(
    app: Any,
    topics: Any,
    accounts: AccountProcessor,
    merchants: MerchantProcessor,
    redis_ready: Callable[[], Awaitable[None]],
) -> None:
    clock_topic = topics.names.clock

    @app.agent(topics.account_input, name="score_accounts")
    async def score_accounts(stream: Any) -> None:
        await redis_ready()
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN):
            parsed = [
                None if e.message.topic == clock_topic else accounts.parse(e.value) for e in events
            ]
            await accounts.merchants.prefetch(filter(None, map(accounts.merchant_key, parsed)))
            batch = Batch()
            for event, item in zip(events, parsed, strict=True):
                if item is None:
                    accounts.on_tick(batch, event.value, event.message.partition)
                else:
                    accounts.on_event(batch, event.value, item, event.message.partition)
            accounts.end_batch(batch)
            await _commit(app, batch, accounts.sink)

    @app.agent(topics.merchant_facts, name="track_merchants")
    async def track_merchants(stream: Any) -> None:
        await redis_ready()
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN):
            batch = Batch()
            for event in events:
                merchants.on_tallies(batch, event.value, event.message.partition)
            merchants.end_batch(batch)
            await _commit(app, batch, merchants.sink)
