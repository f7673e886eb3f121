"""Fixtures that run the real pipeline: the embedded broker, real Redis, worker processes.

Every process a test starts is stopped by pid in the fixture's teardown.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from connectors.broker import EmbeddedBroker
from connectors.kafka_admin import consume_all, produce, wait_until_consumed
from duoli.model_cli import read_status
from duoli.processes import WorkerProcess
from duoli.replay import feed_by_day
from duoli.settings import Settings
from streams.topics import TopicNames
from streams.worker import prepare_topics

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    client.close()


class Pipeline:
    """Fresh topics and a fresh Redis prefix, with workers started on demand."""

    def __init__(self, broker_url: str, env: dict[str, str], log_dir: Path) -> None:
        self.url = broker_url
        self.env = env
        self.log_dir = log_dir
        self.settings = Settings(**{key[6:].lower(): value for key, value in env.items()})  # type: ignore[arg-type]
        self.names = TopicNames.of(self.settings)
        self.workers: list[WorkerProcess] = []
        prepare_topics(self.settings, broker_url)

    @property
    def prefix(self) -> str:
        return self.settings.redis_prefix

    def start_worker(self) -> WorkerProcess:
        log = self.log_dir / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess(self.url, self.env, log).start()
        self.workers.append(worker)
        return worker

    def send(self, events: Iterable[dict[str, Any] | bytes | str]) -> int:
        return produce(self.url, self.names.events, [_record(event) for event in events])

    def feed_by_day(self, events: list[dict[str, Any]], timeout: float = 60.0) -> int:
        """Produce a day at a time behind barriers, as a replay does (reproducible)."""
        lines = [json.dumps(event).encode() for event in events]
        return feed_by_day(self.url, self.settings, lines, self.workers, timeout)

    def model_status(self) -> dict[str, Any] | None:
        return read_status(self.url, self.names.models)

    def wait(self, timeout: float = 60.0) -> None:
        """Until every event so far, and every merchant fact it caused, is committed."""
        group = self.settings.topic_prefix
        wait_until_consumed(self.url, group, [self.names.events], timeout)
        wait_until_consumed(self.url, group, [self.names.merchant_facts], timeout)

    def read(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(value) for _, value in consume_all(self.url, topic)]

    def scores(self) -> list[dict[str, Any]]:
        return self.read(self.names.scores)

    def alerts(self) -> list[dict[str, Any]]:
        return self.read(self.names.alerts)

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.read(self.names.dead_letters)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


def _record(event: dict[str, Any] | bytes | str) -> tuple[bytes | None, bytes]:
    if isinstance(event, dict):
        return str(event.get("account_id", "")).encode(), json.dumps(event).encode()
    raw = event.encode() if isinstance(event, str) else event
    return b"acc-1", raw


@pytest.fixture
def pipeline(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    """``pipeline(DUOLI_PARTITIONS="1", ...)``: topics and workers for one test, torn down after."""
    made: list[Pipeline] = []

    def make(workers: int = 1, **env: str) -> Pipeline:
        name = f"it-{uuid.uuid4().hex[:8]}"
        settings = {
            "DUOLI_TOPIC_PREFIX": name,
            "DUOLI_REDIS_PREFIX": name,
            "DUOLI_REDIS_URL": REDIS_URL,
            "DUOLI_LIVE_CLOCK": "false",
            "DUOLI_COMMIT_INTERVAL_SECONDS": "0.1",
            **env,
        }
        running = Pipeline(broker.url, settings, tmp_path)
        made.append(running)
        for _ in range(workers):
            running.start_worker()
        return running

    yield make
    client = redis.Redis.from_url(REDIS_URL)
    for running in made:
        running.stop()
        for key in client.scan_iter(f"{running.prefix}:*", count=1000):
            client.delete(key)
    client.close()


@pytest.fixture
def isolated_env() -> Iterator[dict[str, str]]:
    """A subprocess's environment with no cluster configured (so commands start their own
    embedded broker) and fresh topic and Redis prefixes; every key under the prefix, and
    under the ``{prefix}-eval`` that ``duoli eval`` uses, is deleted afterwards."""
    prefix = f"cli-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "DUOLI_KAFKA_URL"}
    env.update(DUOLI_TOPIC_PREFIX=prefix, DUOLI_REDIS_PREFIX=prefix, PYTHONUNBUFFERED="1")
    yield env
    client = redis.Redis()
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()
