"""Replay a file of events through the real stream processors, in event time.

The file is fed one event-time day at a time. After each day the replay waits until the
workers have committed every event and every merchant fact of it, because scoring on
day ``d`` reads merchant features of the days before ``d``: with the barrier, each
replay of the same file produces the same score records, however loaded the machine.

Before each day, every partition's clock is moved to its midnight (a tick, as a quiet
partition gets live), so the trainer can close the day before; the workers wait for that
day's model version before scoring it (``model_wait_seconds``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from uuid import uuid4

import redis

from connectors.broker import EmbeddedBroker
from connectors.kafka_admin import broadcast, consume_all, produce, wait_until_consumed
from connectors.redis_store import glob_escape
from duoli.account import DAY
from duoli.errors import BrokerError
from duoli.events import event_time
from duoli.processes import WorkerProcess
from duoli.settings import Settings
from streams.processing import merchant_hash
from streams.topics import TopicNames
from streams.worker import prepare_topics

__all__ = ["ReplaySummary", "day_chunks", "feed_by_day", "replay"]

Record = tuple[bytes | None, bytes]


@dataclass
class ReplaySummary:
    events: int = 0
    scores: int = 0
    alerts: dict[str, int] = field(default_factory=dict)
    decisions: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**vars(self), "events_per_second": round(self.events_per_second, 1)}


def _key_and_day(line: bytes) -> tuple[bytes | None, int | None]:
    """The account key and the event-time day of a line, when it parses well enough."""
    try:
        data = json.loads(line)
        return str(data["account_id"]).encode(), int(event_time(data["occurred_at"]) // DAY)
    except Exception:  # the worker dead-letters it with the precise reason
        return None, None


def day_chunks(lines: Iterable[bytes]) -> Iterator[tuple[int | None, list[Record]]]:
    """Consecutive lines grouped until the highest day seen moves on, with that day."""
    chunk: list[Record] = []
    current: int | None = None
    for raw in lines:
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        key, day = _key_and_day(line)
        if day is not None and current is not None and day > current and chunk:
            yield current, chunk
            chunk = []
        if day is not None:
            current = day if current is None else max(current, day)
        chunk.append((key, line))
    if chunk:
        yield current, chunk


def replay(
    settings: Settings,
    events_path: Path,
    scores_out: Path | None = None,
    workers: int = 1,
    log_dir: Path | None = None,
    timeout_per_day: float = 120.0,
    decisions_out: Path | None = None,
) -> ReplaySummary:
    """Run the file through fresh topics and workers; return the summary."""
    prefix = f"{settings.topic_prefix}-replay-{uuid4().hex[:8]}"
    run_settings = settings.model_copy(
        update={"topic_prefix": prefix, "live_clock": False, "model_wait_seconds": timeout_per_day}
    )
    names = TopicNames.of(run_settings)
    with ExitStack() as stack:
        url = settings.kafka_url or stack.enter_context(EmbeddedBroker()).url
        prepare_topics(run_settings, url)
        stack.callback(_drop_merchant_buckets, run_settings)  # once the workers have stopped
        env = _worker_env(run_settings)
        running = [
            stack.enter_context(
                WorkerProcess(url, env, log_dir / f"replay-worker-{index}.log" if log_dir else None)
            )
            for index in range(workers)
        ]
        summary = ReplaySummary()
        started = time.monotonic()
        with events_path.open("rb") as lines:
            summary.events = feed_by_day(url, run_settings, lines, running, timeout_per_day)
        summary.seconds = round(time.monotonic() - started, 3)
        _collect(url, names, summary, scores_out)
        _collect_decisions(url, names, summary, decisions_out)
        return summary


def feed_by_day(
    url: str,
    settings: Settings,
    lines: Iterable[bytes],
    workers: list[WorkerProcess],
    timeout_per_day: float = 120.0,
) -> int:
    """Produce the lines a day at a time to running workers, each day behind a barrier;
    returns how many were produced. The workers need ``live_clock`` off and a
    ``model_wait_seconds`` for the result to be reproducible."""
    names = TopicNames.of(settings)
    barrier = partial(
        _barrier, url, settings.topic_prefix, timeout=timeout_per_day, workers=workers
    )
    produced = 0
    for day, chunk in day_chunks(lines):
        if day is not None:  # every partition's clock to the day's midnight
            broadcast(url, names.clock, json.dumps({"at": day * DAY}).encode())
            barrier([names.clock])
        produced += produce(url, names.events, chunk)
        barrier([names.events, names.merchant_facts])
    return produced


def _worker_env(settings: Settings) -> dict[str, str]:
    """Workers get exactly the replay's settings; the short commit interval keeps the
    day barrier quick."""
    return settings.model_copy(update={"commit_interval_seconds": 0.1}).as_env()


def _barrier(
    url: str, group: str, topics: list[str], timeout: float, workers: list[WorkerProcess]
) -> None:
    """Every record of the topics committed, one topic after the other (the events, then
    the merchant facts they caused)."""
    for topic in topics:
        try:
            wait_until_consumed(url, group, [topic], timeout)
        except BrokerError:
            if not all(worker.alive() for worker in workers):
                raise BrokerError("a replay worker exited; see its log (--log-dir)") from None
            raise


def _collect(url: str, names: TopicNames, summary: ReplaySummary, scores_out: Path | None) -> None:
    timeout = 10.0 + summary.events / 2000  # reading back is ~10k records/s here; room to spare
    scores = _unique(consume_all(url, names.scores, timeout), "event_id")
    alerts = _unique(consume_all(url, names.alerts, timeout), "alert_id")
    letters = [json.loads(value) for _, value in consume_all(url, names.dead_letters, timeout)]
    summary.scores = len(scores)
    summary.alerts = dict(sorted(Counter(alert["kind"] for alert in alerts).items()))
    summary.dead_letters = dict(sorted(Counter(letter["reason"] for letter in letters).items()))
    if scores_out is not None:
        ordered = sorted(scores, key=lambda record: (record["occurred_at"], record["event_id"]))
        scores_out.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in ordered))


def _collect_decisions(
    url: str, names: TopicNames, summary: ReplaySummary, decisions_out: Path | None
) -> None:
    """Every decision once, in event time, then account and id: a stable order, so two
    replays of one file write the same bytes."""
    timeout = 10.0 + summary.events / 2000
    decisions = _unique(consume_all(url, names.decisions, timeout), "decision_id")
    summary.decisions = len(decisions)
    if decisions_out is not None:
        key = ("effective_at", "account_id", "decision_id")
        ordered = sorted(decisions, key=lambda record: tuple(record[name] for name in key))
        decisions_out.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in ordered))


def _drop_merchant_buckets(settings: Settings) -> None:
    """The run's merchant buckets in Redis are its workers' working state, kept apart
    from every other run's (``merchant_hash``): nothing reads them once the run is over."""
    pattern = glob_escape(f"{settings.redis_prefix}:{merchant_hash(settings.topic_prefix, '')}")
    with redis.Redis.from_url(settings.redis_url) as client:
        keys = list(client.scan_iter(match=f"{pattern}*", count=1000))
        if keys:
            client.delete(*keys)


def _unique(records: list[Record], id_field: str) -> list[dict[str, Any]]:
    """At-least-once delivery may repeat a record; its id makes the repeat harmless."""
    by_id: dict[str, dict[str, Any]] = {}
    for _, value in records:
        record = json.loads(value)
        by_id.setdefault(record[id_field], record)
    return list(by_id.values())
