"""The agents: thin loops that batch messages, call the processors and flush Redis.

A batch is acknowledged only after the loop body returns, and the body ends by flushing
the Redis writes, so an offset is never committed before its outputs are stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from streams._faust_compat import current_event
from streams.processing import AccountProcessor, MerchantProcessor

__all__ = ["register_agents"]

BATCH_SIZE = 500
BATCH_WITHIN = 0.005


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
        async for batch in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN):
            parsed = [
                None if e.message.topic == clock_topic else accounts.parse(e.value) for e in batch
            ]
            await accounts.merchants.prefetch(filter(None, map(accounts.merchant_key, parsed)))
            for event, item in zip(batch, parsed, strict=True):
                with current_event(stream, event):
                    if item is None:
                        accounts.on_tick(event.value, event.message.partition)
                    else:
                        accounts.on_event(event.value, item, event.message.partition)
            await accounts.sink.flush()

    @app.agent(topics.merchant_facts, name="track_merchants")
    async def track_merchants(stream: Any) -> None:
        await redis_ready()
        async for batch in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN):
            changed = set()
            for event in batch:
                with current_event(stream, event):
                    changed.add(merchants.on_fact(event.value))
            merchants.publish(sorted(filter(None, changed)))
            await merchants.sink.flush()
