"""Every worker follows the models topic and scores with the same model version.

The trainer publishes a snapshot after each event-time day it closes. A worker keeps the
last few, and scores an event of day ``d`` with the snapshot as of midnight starting day
``d - 1``: everything known before the day before. Which version scores an event thus
depends on the event, not on which worker has it; and the version has had a whole day
to reach every worker, so live traffic and its replay are scored alike. Live, a worker
never waits: if a version is late (a trainer that was down), it scores with the newest
it holds. A replay sets ``DUOLI_MODEL_WAIT_SECONDS`` and waits for each version, so a
replay is exactly reproducible.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Sequence
from typing import Any

from duoli.errors import DuoliError
from models.snapshot import ModelSnapshot, version_day
from streams.follower import TopicFollower

__all__ = ["STATUS_KEY", "ModelFollower", "snapshot_key"]

log = logging.getLogger(__name__)

STATUS_KEY = b"status"
KEEP = 4  # versions held, and kept by the compacted topic: for partitions days behind


def snapshot_key(as_of: float) -> bytes:
    """One key per day modulo KEEP: compaction keeps the last KEEP versions."""
    return f"snapshot:{int(as_of // 86_400) % KEEP}".encode()


class ModelFollower(TopicFollower):
    """Holds the latest snapshots; ``for_time`` picks the one an event is scored with."""

    def __init__(self, broker_url: str, topic: str, **kwargs: Any) -> None:
        super().__init__(broker_url, topic, **kwargs)
        self.snapshots: list[ModelSnapshot] = []
        self.cold = ModelSnapshot.cold()
        self._arrived = asyncio.Event()

    def for_time(self, at: float) -> ModelSnapshot:
        """The newest snapshot as of the event's version day; untrained models if none."""
        dates = [snapshot.as_of for snapshot in self.snapshots]
        index = bisect.bisect_right(dates, version_day(at)) - 1
        return self.snapshots[index] if index >= 0 else self.cold

    def latest(self) -> float | None:
        return self.snapshots[-1].as_of if self.snapshots else None

    async def wait_for(self, as_of: float, timeout: float) -> bool:
        """Wait until a snapshot as of ``as_of`` or later is held, at most ``timeout`` s."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (self.latest() or -1.0) < as_of:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return False
        return True

    def apply(self, records: Sequence[Any]) -> None:
        for record in records:
            if not (record.key or b"").startswith(b"snapshot:"):
                continue
            try:
                self._hold(ModelSnapshot.from_bytes(record.value))
            except DuoliError as error:
                log.warning("model record at offset %d skipped: %s", record.offset, error)
        self._arrived.set()

    def _hold(self, snapshot: ModelSnapshot) -> None:
        if any(held.as_of == snapshot.as_of for held in self.snapshots):
            return  # the same day published again, after a trainer restart
        bisect.insort(self.snapshots, snapshot, key=lambda held: held.as_of)
        del self.snapshots[:-KEEP]
        if snapshot is self.snapshots[-1]:
            log.info("now scoring with models %s", snapshot.versions())
