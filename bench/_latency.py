"""End-to-end latency at a fixed offered load: event produced to alert readable in Redis.

The worker runs a bench rule file whose one active rule fires on every transaction, so
every event gives one alert. On one event loop, a producer sends at a steady rate and
stamps each send, while a reader blocks on ``XREAD`` of ``{prefix}:alerts`` and stamps
each arrival. The baseline is the broker alone at the same rate: produce, and a plain
consumer receives it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis import asyncio as aioredis

from bench._kafka import (
    CoresMeter,
    cpu_seconds,
    delete_redis_prefix,
    fresh_prefix,
    worker_env,
)
from bench._stats import latency_summary
from connectors.kafka_admin import TopicSpec, ensure_topics
from duoli.processes import WorkerProcess
from duoli.settings import Settings
from streams.topics import TopicNames
from streams.worker import prepare_topics

__all__ = [
    "BENCH_RULES",
    "AlertReader",
    "AlertingWorker",
    "Stamps",
    "alerting_worker",
    "cpu_readers",
    "latency_section",
    "measure_latency",
    "settle",
    "transaction",
    "warm_up",
]

BENCH_RULES = """\
rules:
  - id: bench-every-transaction
    description: fires on every transaction, so each event's latency can be seen
    expression: amount > 0
    severity: low
    action: alert
    mode: active
    kind: fraud
    version: 1
"""
ACCOUNTS = 1000  # distinct accounts, spread over every partition by their keys
WARM_UP_ACCOUNTS = 16
READY_TIMEOUT = 90.0
SETTLED_CORES = 0.3  # a worker using less, idle, has finished starting
DRAIN_SECONDS = 10.0
NOTE = (
    "pipeline: produce -> worker -> alert readable by XREAD in Redis; broker: produce -> an "
    "aiokafka consumer with the workers' fetch wait (DUOLI_FETCH_MAX_WAIT_MS) receives it"
)


def transaction(prefix: str, index: int, now: float, tag: str = "e") -> tuple[bytes, bytes, str]:
    """(key, value, event_id) of a valid transaction happening now.

    >>> key, value, event_id = transaction("p", 3, 0.0)
    >>> key, event_id, json.loads(value)["occurred_at"]
    (b'p-acct-0003', 'p-e-3', '1970-01-01T00:00:00+00:00')
    """
    account = f"{prefix}-acct-{index % ACCOUNTS:04d}"
    event_id = f"{prefix}-{tag}-{index}"
    event = {
        "type": "transaction",
        "event_id": event_id,
        "account_id": account,
        "occurred_at": datetime.fromtimestamp(now, UTC).isoformat(),
        "amount": 10.0 + index % 490,
        "merchant_id": f"m-{index % 50}",
    }
    return account.encode(), json.dumps(event).encode(), event_id


@dataclass
class Stamps:
    """Wall-clock send and arrival times by event id (``time.time()`` in this process)."""

    sent: dict[str, float] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)

    def arrive(self, event_ids: list[str], at: float) -> None:
        for event_id in event_ids:
            self.arrived.setdefault(event_id, at)

    def latencies(self) -> list[float]:
        return [self.arrived[e] - sent for e, sent in self.sent.items() if e in self.arrived]

    def missing(self) -> int:
        return sum(1 for event_id in self.sent if event_id not in self.arrived)


class Reader(Protocol):
    """Where arrivals are seen: opened before the load starts, so it misses none."""

    async def open(self) -> None: ...

    async def read(self) -> list[str]:
        """The event ids arrived since the last read; waits a moment for some."""
        ...

    async def close(self) -> None: ...


@asynccontextmanager
async def _producer(url: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=url, linger_ms=0)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def offer_load(
    url: str, topic: str, prefix: str, rate: float, seconds: float, stamps: Stamps
) -> None:
    """Send ``rate * seconds`` transactions on a steady schedule, each stamped as it is sent.

    aiokafka, on this process's one event loop, sends with half the CPU of kafka-python's
    producer thread (0.25 of a core against 0.55 at 500 events/s, see the README's
    Benchmarks); the load shares the two cores with the worker and the broker it measures.
    A record waits for the produce request before it (``linger_ms=0``, one request in
    flight), and that wait counts in its latency.
    """
    delivered = []
    async with _producer(url) as producer:
        started = time.monotonic()
        for index in range(int(rate * seconds)):
            await asyncio.sleep(started + index / rate - time.monotonic())
            now = time.time()
            key, value, event_id = transaction(prefix, index, now)
            stamps.sent[event_id] = now
            delivered.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*delivered)


async def _collect(reader: Reader, stamps: Stamps, stop: asyncio.Event) -> None:
    while not stop.is_set():
        stamps.arrive(await reader.read(), time.time())


async def _wait_drained(stamps: Stamps, timeout: float = DRAIN_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while stamps.missing() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def _measure(
    url: str, topic: str, prefix: str, rate: float, seconds: float, reader: Reader
) -> Stamps:
    stamps, stop = Stamps(), asyncio.Event()
    await reader.open()
    try:
        collecting = asyncio.create_task(_collect(reader, stamps, stop))
        try:
            await offer_load(url, topic, prefix, rate, seconds, stamps)
            await _wait_drained(stamps)
        finally:
            stop.set()
            await collecting
    finally:
        await reader.close()
    return stamps


def measure_latency(
    url: str, topic: str, prefix: str, rate: float, seconds: float, reader: Reader
) -> dict[str, Any]:
    """Offer the load while ``reader`` stamps the arrivals, all on one event loop."""
    stamps = asyncio.run(_measure(url, topic, prefix, rate, seconds, reader))
    return latency_summary(stamps.latencies(), len(stamps.sent)) | {
        "achieved_rate_per_s": round(achieved_rate(list(stamps.sent.values())), 1)
    }


def achieved_rate(sent_at: list[float]) -> float:
    """Sends per second actually reached (the producer may fall behind its schedule).

    >>> achieved_rate([0.0, 0.5, 1.0])
    2.0
    """
    span = max(sent_at) - min(sent_at) if len(sent_at) > 1 else 0.0
    return (len(sent_at) - 1) / span if span > 0 else float("nan")


# -- the full pipeline: alerts in Redis ----------------------------------------------------


class AlertReader:
    """Blocks on ``XREAD`` of the alerts stream from a given id; its position outlives a
    connection, so the measurement starts where the warm-up ended."""

    def __init__(self, redis_url: str, stream: str, last_id: str = "0-0") -> None:
        self.redis_url = redis_url
        self.stream = stream
        self.last_id = last_id
        self.client: Any = None

    async def open(self) -> None:
        self.client = aioredis.Redis.from_url(self.redis_url)

    async def read(self, block_ms: int = 200) -> list[str]:
        """The event ids of every alert that arrived since the last read."""
        found = []
        streams = await self.client.xread({self.stream: self.last_id}, block=block_ms)
        for _, entries in streams or []:
            for entry_id, fields in entries:
                self.last_id = entry_id
                found.extend(json.loads(fields[b"data"])["event_ids"])
        return found

    async def close(self) -> None:
        await self.client.aclose()


async def _warm_up(url: str, topic: str, prefix: str, reader: AlertReader) -> None:
    expected = set()
    async with _producer(url) as producer:
        for index in range(WARM_UP_ACCOUNTS):
            key, value, event_id = transaction(prefix, index, time.time(), tag="warm")
            await producer.send(topic, value, key=key)
            expected.add(event_id)
    await reader.open()
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            while expected:
                expected.difference_update(await reader.read(500))
    except TimeoutError:
        raise RuntimeError(f"worker not ready after {READY_TIMEOUT:.0f}s; see its log") from None
    finally:
        await reader.close()


def warm_up(url: str, topic: str, prefix: str, reader: AlertReader) -> float:
    """Seconds until one alert per warm-up account is in Redis: the worker joined and is
    ready."""
    started = time.monotonic()
    asyncio.run(_warm_up(url, topic, prefix, reader))
    return time.monotonic() - started


def settle(worker_pid: int, timeout: float = READY_TIMEOUT) -> float:
    """Seconds until the worker and its processes use less than ``SETTLED_CORES`` over a
    second. It starts its trainer and ledger writer as it joins, and each imports the
    engine (about 2 s of CPU), which would otherwise fall in the first seconds measured."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        meter = CoresMeter({"worker": partial(cpu_seconds, worker_pid)})
        time.sleep(1.0)
        if meter.cores()["worker_cpu_cores"] < SETTLED_CORES:
            break
    return time.monotonic() - started


@dataclass(frozen=True)
class AlertingWorker:
    """A worker ready to be measured: every transaction it scores raises an alert, which
    ``reader`` sees in Redis."""

    process: WorkerProcess
    topic: str
    prefix: str
    reader: AlertReader
    ready_after_s: float
    settled_after_s: float

    @property
    def pid(self) -> int:
        return self.process.pid or 0


@contextmanager
def alerting_worker(
    url: str, settings: Settings, log_path: Path, tag: str
) -> Iterator[AlertingWorker]:
    """A worker with its own topics and Redis keys, warmed up and settled; its topics'
    Redis keys are deleted after."""
    prefix = fresh_prefix(tag)
    rules = log_path.parent / "bench-rules.yaml"
    rules.write_text(BENCH_RULES)
    run_settings = settings.model_copy(update={"topic_prefix": prefix})
    prepare_topics(run_settings, url)
    topic = TopicNames.of(run_settings).events
    env = worker_env(prefix, settings.redis_url, DUOLI_RULES_PATH=str(rules))
    reader = AlertReader(settings.redis_url, f"{prefix}:alerts")
    try:
        with WorkerProcess(url, env, log_path) as worker:
            ready = warm_up(url, topic, prefix, reader)
            settled = settle(worker.pid or 0)
            yield AlertingWorker(worker, topic, prefix, reader, ready, settled)
    finally:
        delete_redis_prefix(settings.redis_url, [prefix])


def pipeline_latency(
    url: str, settings: Settings, rate: float, seconds: float, log_dir: Path,
    broker_pid: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The latency, and the cores used meanwhile: by the worker (with its writers), by the
    broker when its pid is known, by this process (the load and the alert reader), and by
    the whole machine."""
    with alerting_worker(url, settings, log_dir / "latency-worker.log", "lat") as worker:
        meter = CoresMeter(cpu_readers(worker.pid, broker_pid))
        summary = measure_latency(url, worker.topic, worker.prefix, rate, seconds, worker.reader)
        cores = meter.cores()
        if not worker.process.alive():
            raise RuntimeError("the latency worker exited; see its log")
    timing = {
        "ready_after_s": round(worker.ready_after_s, 1),
        "settled_after_s": round(worker.settled_after_s, 1),
    }
    return summary | timing | cores


# -- the baseline: the broker round trip alone ---------------------------------------------


class RecordReader:
    """A plain aiokafka consumer, as the workers' (Faust's) is, of every partition from the
    end, with the workers' fetch wait."""

    def __init__(self, url: str, topic: str, partitions: int, fetch_wait_ms: int) -> None:
        self.url = url
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.fetch_wait_ms = fetch_wait_ms
        self.consumer: Any = None

    async def open(self) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.url,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.fetch_wait_ms,
        )
        await self.consumer.start()
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_end(*self.partitions)
        for tp in self.partitions:
            await self.consumer.position(tp)  # resolve the end now, before anything is sent

    async def read(self) -> list[str]:
        batches = await self.consumer.getmany(timeout_ms=100)
        return [json.loads(r.value)["event_id"] for batch in batches.values() for r in batch]

    async def close(self) -> None:
        await self.consumer.stop()


def broker_latency(url: str, settings: Settings, rate: float, seconds: float) -> dict[str, Any]:
    prefix = fresh_prefix("rtt")
    topic = f"{prefix}.roundtrip"
    ensure_topics(url, [TopicSpec(topic, settings.partitions)])
    reader = RecordReader(url, topic, settings.partitions, settings.fetch_max_wait_ms)
    return measure_latency(url, topic, prefix, rate, seconds, reader)


def cpu_readers(worker_pid: int, broker_pid: int | None) -> dict[str, Callable[[], float]]:
    """The worker with its writers, this process alone (the load and the alert reader),
    and the broker when its pid is known."""
    readers: dict[str, Callable[[], float]] = {
        "worker": partial(cpu_seconds, worker_pid),
        "bench": time.process_time,
    }
    if broker_pid is not None:
        readers["broker"] = partial(cpu_seconds, broker_pid)
    return readers


def latency_section(
    url: str, settings: Settings, rate: float, seconds: float, log_dir: Path,
    broker_pid: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Broker-only, then pipeline latency at the same offered load, on the same broker: the
    broker's first, as the pipeline leaves its records behind (see ``bench.__main__``)."""
    broker = broker_latency(url, settings, rate, seconds)
    pipeline = pipeline_latency(url, settings, rate, seconds, log_dir, broker_pid)
    return {
        "note": NOTE,
        "rate_per_s": rate,
        "seconds": seconds,
        "pipeline": pipeline,
        "broker": broker,
    }
