"""Single writers: each runs in a process of its own, beside the worker that holds
partition 0 of the events topic.

The trainer and the ledger writer must each run exactly once in the group. Ownership
follows Faust's own assignment (``set_owner`` on every rebalance), so it moves with
partition 0 when a worker stops or dies. A writer reads its sources without a consumer
group: where it resumes is its own business (a checkpoint, the ledger's last entry), so
a new owner goes on exactly as the old one would have.

A writer's reading, work and writing all happen in its own process: on the worker's
event loop they delayed the scoring of every batch (at 500 events/s the worker's main
thread is saturated). The worker only starts the process, starts it again if it dies,
and stops it, waiting for it to end, before any other can start.

Writers fork from a server process that the worker starts with its own services, and that
imports the engine once, while the worker joins its group. A spawned writer imported it
anew, about 2 s of CPU each, just as the new owner took on its first batches, and on the
two cores of a small machine that slowed them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Coroutine, Mapping, Sequence
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any, ClassVar

import aiokafka
from aiokafka import TopicPartition
from mode import Service

from duoli.runtime import calm_garbage_collector
from streams.consumers import background_consumer

__all__ = ["ElectedProcess", "SingleWriter"]

log = logging.getLogger(__name__)

WATCH_SECONDS = 0.1  # how soon a change of owner, or a dead writer, is acted on
STOP_SECONDS = 10.0  # a writer asked to stop gets this long, then it is killed
# A writer that died (a broker gone, say) is started again after this long, not in a
# tight loop.
RESTART_SECONDS = 5.0
# What the fork server imports for every writer: the worker's whole application, which
# imports each writer's module and the engine they share.
FORK_SERVER_PRELOAD = ["streams.app"]
LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"  # as the worker's
# A writer's work may lag seconds behind without harm, a score may not: when the cores are
# all busy, the kernel gives the writers about a tenth of the share of the worker (unless
# the worker waits for the writer: see ``trainer_niceness`` in streams/app.py).
WRITER_NICENESS = 10


class SingleWriter:
    """What runs in the writer's process: ``step`` over and over, with a consumer of
    ``sources`` outside any group and a producer. It is pickled to its process before it
    starts, so it connects and builds its state only in ``run``."""

    role: ClassVar[str] = "writer"

    def __init__(
        self,
        broker_url: str,
        sources: Sequence[TopicPartition],
        consumer_options: Mapping[str, Any] | None = None,
        producer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.broker_url = broker_url
        self.sources = list(sources)
        self.consumer_options = dict(consumer_options or {})
        self.producer_options = dict(producer_options or {})

    async def step(
        self, consumer: aiokafka.AIOKafkaConsumer, producer: aiokafka.AIOKafkaProducer
    ) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        consumer = background_consumer(self.broker_url, **self.consumer_options)
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=self.broker_url, **self.producer_options
        )
        try:
            await consumer.start()
            await producer.start()
            consumer.assign(self.sources)
            while True:
                await self.step(consumer, producer)
        finally:
            await consumer.stop()
            await producer.stop()


class ElectedProcess(Service):
    """In the worker: keeps the writer's process running while this worker is the owner,
    and none while it is not."""

    def __init__(
        self, writer: SingleWriter, niceness: int = WRITER_NICENESS, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.writer = writer
        self.niceness = niceness
        self.wanted = False
        self.process: BaseProcess | None = None

    def set_owner(self, owner: bool) -> None:
        """Called on every rebalance: whether this worker holds events partition 0."""
        if owner != self.wanted:
            log.info("%s %s", self.writer.role, "taking over" if owner else "handing over")
        self.wanted = owner

    @Service.task
    async def _watch(self) -> None:
        while not self.should_stop:
            await self._follow_owner()
            await self.sleep(WATCH_SECONDS)

    async def _follow_owner(self) -> None:
        process = self.process
        if process is not None and not process.is_alive():
            if self.wanted:
                log.error(
                    "the %s process died (exit code %s); starting it again from where it "
                    "left off", self.writer.role, process.exitcode,
                )  # fmt: skip
                await self.sleep(RESTART_SECONDS)
            self.process = None
        if self.wanted and self.process is None and not self.should_stop:
            self.process = self._start()
        elif not self.wanted and self.process is not None:
            await self._stop_process()

    def _start(self) -> BaseProcess:
        level = logging.getLogger().getEffectiveLevel()
        process = _fork_server().Process(
            target=run_writer, args=(self.writer, level, self.niceness), name=self.writer.role
        )
        process.start()
        log.info("%s process %d started", self.writer.role, process.pid)
        return process

    async def _stop_process(self) -> None:
        """Ask the writer to stop, and wait until it has: one writer at a time."""
        process, self.process = self.process, None
        if process is not None and process.is_alive():
            process.terminate()
            await asyncio.to_thread(_join_or_kill, process)

    async def on_start(self) -> None:
        _fork_server()  # now, so that it has imported the engine when a writer starts

    async def on_stop(self) -> None:
        await self._stop_process()


def _join_or_kill(process: BaseProcess) -> None:
    process.join(STOP_SECONDS)
    if process.is_alive():
        log.warning("the %s process did not stop in %.0f s; killed", process.name, STOP_SECONDS)
        process.kill()
        process.join()


def _fork_server() -> ForkServerContext:
    """Where writers start from, running: the worker has threads, so it must not fork."""
    forkserver.set_forkserver_preload(FORK_SERVER_PRELOAD)
    forkserver.ensure_running()  # returns at once; the server imports on its own
    return multiprocessing.get_context("forkserver")


def run_writer(writer: SingleWriter, level: int, niceness: int) -> None:
    """The writer process: runs until SIGTERM (its clients closed), or its worker is gone."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    log.info("%s process running at niceness %d", writer.role, os.nice(niceness))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the worker, which stops it
    threading.Thread(target=_exit_with_worker, daemon=True).start()
    calm_garbage_collector()
    asyncio.run(_until_terminated(writer.run()))


async def _until_terminated(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(work)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _exit_with_worker() -> None:
    """A worker killed outright cannot stop its writers: each ends when it sees that (its
    pipe from the worker closes; the writer's parent is the fork server, not the worker)."""
    worker = multiprocessing.parent_process()
    assert worker is not None  # a writer runs only in a process the worker started
    worker.join()
    os._exit(0)
