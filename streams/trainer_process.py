"""The trainer's own process, beside the worker that owns it.

Learning is CPU work. In a thread of the worker it held the interpreter lock against the
scoring loop, which then scored more slowly. The worker sends the
training records it read and publishes what comes back; the ``Trainer`` lives here only,
so the process ends with the worker's ownership and a new owner resumes from the
checkpoint, as before.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import orjson

from duoli.runtime import calm_garbage_collector
from models.trainer import IncompatibleCheckpoint, Trainer, TrainerConfig
from streams.models import STATUS_KEY, snapshot_key
from streams.topics import TopicNames

__all__ = [
    "CHECKPOINT_KEY",
    "Outputs",
    "learn",
    "next_offset",
    "resume",
    "start_trainer_process",
]

log = logging.getLogger(__name__)

CHECKPOINT_KEY = b"checkpoint"
CHECKPOINT_SECONDS = 60.0  # a checkpoint pickles the whole pending store: not every day
PARENT_CHECK_SECONDS = 1.0
LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"  # as the worker's

Outputs = list[tuple[str, bytes, bytes]]
Record = tuple[bytes, int]  # (value, offset) of a training record


class _Learning:
    """The process's trainer and when it last wrote a checkpoint."""

    def __init__(self, trainer: Trainer, names: TopicNames) -> None:
        self.trainer = trainer
        self.names = names
        self.checkpointed = -CHECKPOINT_SECONDS

    def learn(self, records: Sequence[Record]) -> Outputs:
        """Queue the records; for the days that close, the records to publish."""
        trainer = self.trainer
        for value, offset in records:
            try:
                trainer.consume(orjson.loads(value), offset)
            except Exception as error:  # one bad record must not stop the training
                log.warning("training record at offset %d skipped: %s", offset, error)
                trainer.next_offset = offset + 1
        outputs = []
        while trainer.close_next_day() is not None:  # every day its version, even catching up
            snapshot = trainer.snapshot()
            log.info("trained through %s: %s", snapshot.as_of, snapshot.versions())
            outputs.append((self.names.models, snapshot_key(snapshot.as_of), snapshot.to_bytes()))
        if not outputs:
            return []
        outputs.append((self.names.models, STATUS_KEY, orjson.dumps(trainer.status())))
        if time.monotonic() - self.checkpointed >= CHECKPOINT_SECONDS:
            outputs.append((self.names.trainer_state, CHECKPOINT_KEY, trainer.checkpoint()))
            self.checkpointed = time.monotonic()
        return outputs


_learning: _Learning | None = None  # set once, in the trainer process only


def start_trainer_process(
    config: TrainerConfig, checkpoint: bytes | None, names: TopicNames, log_level: int
) -> ProcessPoolExecutor:
    """A one-process pool holding a trainer, new or restored from ``checkpoint``."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),  # the worker has threads: no fork
        initializer=_begin,
        initargs=(config, checkpoint, names, log_level, os.getpid()),
    )


def learn(records: Sequence[Record]) -> Outputs:
    assert _learning is not None, "learn runs in the trainer process"
    return _learning.learn(records)


def next_offset() -> int:
    assert _learning is not None, "next_offset runs in the trainer process"
    return _learning.trainer.next_offset


def _begin(
    config: TrainerConfig, checkpoint: bytes | None, names: TopicNames, level: int, parent: int
) -> None:
    global _learning
    logging.basicConfig(level=level, format=LOG_FORMAT)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    _learning = _Learning(resume(config, checkpoint), names)
    calm_garbage_collector()


def resume(config: TrainerConfig, checkpoint: bytes | None) -> Trainer:
    """The trainer of the checkpoint; a new one, which learns the training topic again
    from its start, when there is none or another version of Duoli wrote it."""
    if checkpoint is None:
        return Trainer(config)
    try:
        return Trainer.restore(checkpoint)
    except IncompatibleCheckpoint as error:
        log.error("%s: learning the training topic again from its start", error)
        return Trainer(config)


def _exit_with(parent: int) -> None:
    """A worker killed outright cannot stop its pool: the process ends when it sees that."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)
