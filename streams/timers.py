"""The worker's timers.

The live clock: while a partition is quiet, its event-time clock follows the wall clock.
The timer cannot write tables itself (Faust allows that only inside a stream), so it
sends a tick through the clock topic to the partition's own agent.

The gap watch: a partition with a hole in what it applied is fetched again from the hole,
and offsets it applied before a move are acknowledged (see :mod:`streams.progress`).

The lag watch: how far each assigned input partition's highwater is past the consumer's
position, for the ``duoli_consumer_lag`` gauge.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from duoli.metrics import WorkerMetrics
from streams.processing import AccountProcessor
from streams.progress import (
    REFETCH_RETRY,
    Progress,
    end_offsets,
    refetch_gaps,
    settle_applied_heads,
)

__all__ = ["consumer_lag", "register_gap_watch", "register_lag_watch", "register_timers"]

log = logging.getLogger(__name__)

TICK_INTERVAL = 1.0
LAG_INTERVAL = 2.0
POSITION_TIMEOUT = 1.0


def register_timers(app: Any, topics: Any, accounts: AccountProcessor) -> None:
    events_topic = topics.names.events

    @app.timer(TICK_INTERVAL, name="live_clock")
    async def live_clock() -> None:
        mine = [tp.partition for tp in app.assignor.assigned_actives() if tp.topic == events_topic]
        for partition, at in accounts.idle_ticks(mine):
            tick = json.dumps({"at": at}).encode()
            await app.producer.send(
                topics.names.clock, None, tick, partition=partition, timestamp=None, headers=None
            )


def register_gap_watch(app: Any, topics: Any, progress: Progress) -> None:
    inputs = {topics.names.events, topics.names.clock, topics.names.merchant_facts}

    @app.timer(REFETCH_RETRY, name="gap_watch")
    async def gap_watch() -> None:
        settle_applied_heads(app.consumer, progress, inputs)
        progress.check_stalls(*end_offsets(app.consumer, inputs))
        await refetch_gaps(app.consumer, progress)


def register_lag_watch(app: Any, topics: Any, metrics: WorkerMetrics) -> None:
    inputs = {topics.names.events, topics.names.merchant_facts}

    @app.timer(LAG_INTERVAL, name="lag_watch")
    async def lag_watch() -> None:
        metrics.set_lag(await consumer_lag(app.consumer, inputs))


async def consumer_lag(consumer: Any, topics: set[str]) -> dict[tuple[str, int], int]:
    """Highwater minus position of each assigned partition of ``topics`` that has both."""
    lags = {}
    for tp in consumer.assignment():
        end = consumer.highwater(tp) if tp.topic in topics else None
        if end is None:
            continue
        try:
            position = await asyncio.wait_for(consumer.position(tp), POSITION_TIMEOUT)
        except Exception:  # revoked or not yet fetched: no figure this round, the next has one
            log.debug("no position for %s[%d]", tp.topic, tp.partition, exc_info=True)
            continue
        if position is not None:
            lags[tp.topic, tp.partition] = max(0, end - position)
    return lags
