"""What the trainer publishes for the training records it is given."""

from __future__ import annotations

import pickle
import zlib
from datetime import UTC, datetime

import orjson
import pytest

from duoli.settings import Settings
from models.trainer import DAY, IncompatibleCheckpoint, Trainer, TrainerConfig
from streams.models import STATUS_KEY, snapshot_key
from streams.topics import TopicNames
from streams.training import CHECKPOINT_KEY, Learning, resume

T0 = 20_000 * DAY  # a midnight
NAMES = TopicNames.of(Settings(topic_prefix="t"))


def ticks(*clocks: float) -> list[tuple[bytes, int]]:
    """One partition's training records with no items: only its clock moves."""
    return [(orjson.dumps({"p": 0, "clock": at, "items": []}), i) for i, at in enumerate(clocks)]


def test_catching_up_several_days_publishes_every_days_version() -> None:
    learning = Learning(Trainer(), NAMES)
    first = learning.learn(ticks(T0 + 3600))  # the first version closes at T0
    assert [key for _, key, _ in first] == [snapshot_key(T0), STATUS_KEY, CHECKPOINT_KEY]

    outputs = learning.learn(ticks(T0 + DAY + 60, T0 + 3 * DAY + 60))
    days = [T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY]
    keys = [*map(snapshot_key, days), STATUS_KEY]  # and no checkpoint again within a minute
    assert [key for _, key, _ in outputs] == keys
    status = orjson.loads(outputs[-1][2])
    assert status["trained_through"] == datetime.fromtimestamp(days[-1], UTC).date().isoformat()
    assert learning.learn(ticks(T0 + 3 * DAY + 120)) == []  # no day closed: nothing to publish


def test_a_checkpoint_of_another_version_starts_learning_again_from_the_start(caplog) -> None:
    trained = Trainer()
    trained.next_offset = 42
    current = trained.checkpoint()
    older = zlib.compress(pickle.dumps(trained), 3)  # as versions before the format stamp
    unreadable = b"not a checkpoint"

    assert resume(TrainerConfig(), current).next_offset == 42
    for checkpoint in (older, unreadable):
        with pytest.raises(IncompatibleCheckpoint):
            Trainer.restore(checkpoint)
        assert resume(TrainerConfig(), checkpoint).next_offset == 0
    assert "learning the training topic again from its start" in caplog.text
