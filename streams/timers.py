"""The worker's timers.

The live clock: while a partition is quiet, its event-time clock follows the wall clock.
The timer cannot write tables itself (Faust allows that only inside a stream), so it
sends a tick through the clock topic to the partition's own agent.

The gap watch: a partition with a hole in what it applied is fetched again from the hole
(see :mod:`streams.progress`).
"""

from __future__ import annotations

import json
from typing import Any

from streams.processing import AccountProcessor
from streams.progress import REFETCH_RETRY, Progress, end_offsets, refetch_gaps

__all__ = ["register_gap_watch", "register_timers"]

TICK_INTERVAL = 1.0


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
    inputs = {topics.names.events, topics.names.merchant_facts}

    @app.timer(REFETCH_RETRY, name="gap_watch")
    async def gap_watch() -> None:
        progress.check_stalls(end_offsets(app.consumer, inputs))
        await refetch_gaps(app.consumer, progress)
