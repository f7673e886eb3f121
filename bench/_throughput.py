"""Throughput: the full pipeline against a bare Faust agent, on the same pre-produced events.

Both consume ``{prefix}.events`` with the same partitions, app settings and fetch wait.
The rate counts the input topic only (the full pipeline also consumes the merchant facts
it produces, which are not counted), from the first committed offset above zero to the
moment the committed offsets reach the end, so start-up and the group join are excluded.
Committed offsets move once per commit interval, so either end of the window may be late
by up to one interval. The bare agent reads the events ``BARE_ROUNDS`` times over, so
that its drain lasts about as long as the full pipeline's and that error weighs the same
on both (over one round, a bare drain of 4 s could read up to an eighth slow).

On a shared machine one pair of runs moved between ratios 0.22 and 0.30 within minutes,
so the section runs several pairs back to back and reports the pair of median ratio, and
every ratio. The CPU time the consumer process used in the window is reported too, as it
is less disturbed by neighbours than the wall time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench._kafka import (
    OffsetPoller,
    Record,
    cpu_seconds,
    delete_redis_prefix,
    fresh_prefix,
    python_module,
    worker_env,
)
from connectors.kafka_admin import TopicSpec, end_offsets, ensure_topics, produce
from duoli.errors import BrokerError
from duoli.processes import WorkerProcess
from duoli.settings import Settings
from streams.topics import TopicNames
from streams.worker import prepare_topics

__all__ = ["Drain", "Pair", "Sample", "drain_rate", "throughput_section"]

POLL_SECONDS = 0.05
BARE_ROUNDS = 4
START_TIMEOUT = 90.0
CHANGELOGS = ("accounts", "clocks", "merchants")
NOTE = (
    "events/s of the input topic only: the full pipeline also consumes the merchant facts it "
    "produces, which are not counted; window = first committed offset > 0 to committed == end; "
    "the bare agent reads the events bare_rounds times over; the pair of median ratio is shown"
)


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds
    committed: int  # committed offsets summed over the partitions
    cpu: float  # CPU seconds the consumer process has used so far


@dataclass(frozen=True)
class Running:
    """A consumer process being measured."""

    pid: int
    alive: Callable[[], bool]


@dataclass(frozen=True)
class Drain:
    """How one consumer drained the topic."""

    events: int  # consumed between the first commit and the end
    seconds: float
    cpu_seconds: float
    first_committed: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else math.nan

    @property
    def cpu_ms_per_event(self) -> float:
        return self.cpu_seconds / self.events * 1000 if self.events else math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            **vars(self),
            "events_per_s": round(self.rate, 1),
            "cpu_ms_per_event": round(self.cpu_ms_per_event, 4),
        }


def drain_rate(samples: Sequence[Sample], end: int) -> Drain:
    """From polled samples: events after the first commit over the time to reach ``end``.

    >>> samples = [Sample(0.0, 0, 0.0), Sample(1.0, 100, 0.5), Sample(3.0, 1100, 2.5)]
    >>> drain_rate(samples, 1100)
    Drain(events=1000, seconds=2.0, cpu_seconds=2.0, first_committed=100)
    """
    first = next((s for s in samples if s.committed > 0), None)
    last = next((s for s in samples if s.committed >= end), None)
    if first is None or last is None:
        raise ValueError(f"the consumer never reached the end offset {end}")
    return Drain(end - first.committed, last.at - first.at, last.cpu - first.cpu, first.committed)


def poll_until_end(
    poller: OffsetPoller, end: int, running: Running, timeout: float
) -> list[Sample]:
    """Committed offsets every 50 ms until they reach ``end``."""
    deadline = time.monotonic() + timeout
    samples: list[Sample] = []
    while not samples or samples[-1].committed < end:
        if not running.alive():
            raise RuntimeError("the consumer exited before the end; see its log")
        if time.monotonic() > deadline:
            reached = samples[-1].committed if samples else 0
            raise RuntimeError(f"the consumer reached {reached} of {end} in {timeout:.0f}s")
        committed = poller.committed()
        samples.append(Sample(time.monotonic(), committed, cpu_seconds(running.pid)))
        time.sleep(POLL_SECONDS)
    return samples


def _timeout(events: int) -> float:
    return START_TIMEOUT + events / 100  # generous: a stuck run fails, a slow one reports


Starter = Callable[[], AbstractContextManager[Running]]


def _drain(
    url: str, prefix: str, partitions: int, records: Sequence[Record], start: Starter
) -> Drain:
    """Produce every record, start the consumer, and time how it drains them."""
    topic = f"{prefix}.events"
    produce(url, topic, records)
    end = sum(end_offsets(url, [topic]).values())
    with OffsetPoller(url, prefix, topic, partitions) as poller, start() as running:
        samples = poll_until_end(poller, end, running, _timeout(len(records)))
    return drain_rate(samples, end)


@contextmanager
def _bare_running(url: str, env: dict[str, str], log: Path) -> Iterator[Running]:
    with python_module("bench.bare_app", env | {"DUOLI_KAFKA_URL": url}, log) as process:
        yield Running(process.pid, lambda: process.poll() is None)


@contextmanager
def _full_running(url: str, env: dict[str, str], log: Path) -> Iterator[Running]:
    with WorkerProcess(url, env, log) as worker:
        yield Running(worker.pid or 0, worker.alive)


def _messages_out(url: str, settings: Settings) -> dict[str, int]:
    """Records the full pipeline wrote to each of its topics and changelogs."""
    names = TopicNames.of(settings)
    topics = [names.scores, names.alerts, names.merchant_facts, names.dead_letters]
    topics += [f"{settings.topic_prefix}-{table}-changelog" for table in CHANGELOGS]
    counts = {}
    for topic in topics:
        try:
            counts[topic] = sum(end_offsets(url, [topic]).values())
        except BrokerError:  # a changelog Faust never created: nothing was written to it
            counts[topic] = 0
    return counts


def _check_complete(scores: int, records: Sequence[Record]) -> None:
    """A pipeline that drops work must not look fast: every transaction needs its score."""
    transactions = sum(b'"type": "transaction"' in value for _, value in records)
    if scores < transactions:
        raise RuntimeError(f"the pipeline scored {scores} of {transactions} transactions")


@dataclass(frozen=True)
class Pair:
    """The bare agent, then the full pipeline, back to back on fresh topics."""

    bare: Drain
    full: Drain
    written: dict[str, int]

    @property
    def ratio(self) -> float:
        return self.full.rate / self.bare.rate


def _pair(
    url: str, settings: Settings, records: Sequence[Record], log_dir: Path, number: int
) -> Pair:
    partitions = settings.partitions
    bare_prefix, full_prefix = fresh_prefix("bare"), fresh_prefix("full")
    ensure_topics(url, [TopicSpec(f"{bare_prefix}.events", partitions)])
    full_settings = settings.model_copy(update={"topic_prefix": full_prefix})
    prepare_topics(full_settings, url)
    bare_env = worker_env(bare_prefix, settings.redis_url)
    full_env = worker_env(full_prefix, settings.redis_url)
    try:
        bare_start = partial(_bare_running, url, bare_env, log_dir / f"bare-app-{number}.log")
        bare = _drain(url, bare_prefix, partitions, list(records) * BARE_ROUNDS, bare_start)
        full_log = log_dir / f"full-worker-{number}.log"
        full = _drain(
            url, full_prefix, partitions, records, partial(_full_running, url, full_env, full_log)
        )
        written = _messages_out(url, full_settings)
        _check_complete(written[TopicNames.of(full_settings).scores], records)
    finally:
        delete_redis_prefix(settings.redis_url, [bare_prefix, full_prefix])
    return Pair(bare, full, written)


def throughput_section(
    url: str, settings: Settings, records: Sequence[Record], log_dir: Path, pairs: int = 1
) -> dict[str, Any]:
    """Events/s of the bare agent and of the full pipeline, on the same events: ``pairs``
    runs of both, back to back; the pair of median ratio is reported, and every ratio."""
    runs = sorted(
        (_pair(url, settings, records, log_dir, number) for number in range(pairs)),
        key=lambda pair: pair.ratio,
    )
    median = runs[len(runs) // 2]
    return {
        "note": NOTE,
        "events": len(records),
        "bare_rounds": BARE_ROUNDS,
        "pairs": pairs,
        "pair_ratios": [round(pair.ratio, 3) for pair in runs],
        "partitions": settings.partitions,
        "commit_interval_s": settings.commit_interval_seconds,
        "full_events_per_s": median.full.rate,
        "bare_events_per_s": median.bare.rate,
        "full": median.full.to_json(),
        "bare": median.bare.to_json(),
        "full_records_written": median.written,
        "full_records_written_per_event": round(sum(median.written.values()) / len(records), 2),
    }
