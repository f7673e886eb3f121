"""The connectors against the real embedded broker (Tansu) and the real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis

from connectors import broker as broker_module
from connectors.broker import EmbeddedBroker
from connectors.kafka_admin import (
    TopicSpec,
    committed_offsets,
    consume_all,
    end_offsets,
    ensure_topics,
    existing_topics,
    ping,
    produce,
    wait_until_consumed,
)
from connectors.redis_store import RedisStore, RedisWrites
from duoli.errors import BrokerError, StoreError
from duoli.settings import load_settings

pytestmark = pytest.mark.integration

REDIS_URL = load_settings().redis_url
T = TypeVar("T")


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    """One embedded broker for the module, stopped by pid at the end."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def new_topic(broker: EmbeddedBroker) -> Callable[..., str]:
    """Factory: a freshly created topic with a unique name."""

    def make(partitions: int = 3, compacted: bool = False) -> str:
        name = f"test-{uuid.uuid4().hex[:10]}"
        ensure_topics(broker.url, [TopicSpec(name, partitions, compacted)])
        return name

    return make


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix no other test uses; its keys, and only those, are deleted afterwards."""
    prefix = f"duoli-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    asyncio.run(_delete_prefix(prefix))


async def _delete_prefix(prefix: str) -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def with_store(redis_prefix: str) -> Callable[..., Any]:
    """Factory: run ``scenario(store)`` in a fresh event loop with a started RedisStore."""

    def run(scenario: Callable[[RedisStore], Awaitable[T]], **options: Any) -> T:
        async def main() -> T:
            store = RedisStore(REDIS_URL, prefix=redis_prefix, **options)
            await store.start()
            try:
                return await scenario(store)
            finally:
                await store.close()

        return asyncio.run(main())

    return run


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _commit_positions(url: str, group: str, topic: str, upto: dict[int, int]) -> None:
    """Read ``topic`` as a member of ``group`` (manual assignment) and commit its positions."""
    # Imported here, after connectors.kafka_admin has imported kafka-python without its
    # import-time DeprecationWarning.
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=url, group_id=group, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    try:
        tps = [TopicPartition(topic, p) for p in upto]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, upto[tp.partition])
        consumer.commit()
    finally:
        consumer.close(autocommit=False)


def _keyed(n: int, keys: int = 5) -> list[tuple[bytes | None, bytes]]:
    return [(f"k{i % keys}".encode(), f"v{i}".encode()) for i in range(n)]


# -- the embedded broker -----------------------------------------------------------------


def test_broker_answers_kafka_on_loopback(broker: EmbeddedBroker) -> None:
    host, _, port = broker.url.partition(":")
    assert host == "127.0.0.1" and port.isdigit()
    assert broker.pid is not None and not _gone(broker.pid)
    ping(broker.url)


def test_stop_kills_the_process_and_keeps_the_log(tmp_path: Path) -> None:
    log = tmp_path / "tansu.log"
    broker = EmbeddedBroker(log_path=log).start()
    pid, url = broker.pid, broker.url
    assert pid is not None
    broker.stop()
    assert _gone(pid)
    assert broker.pid is None
    broker.stop()  # idempotent
    assert "listening on" in log.read_text()
    with pytest.raises(BrokerError, match="no Kafka broker reachable"):
        ping(url, timeout=1)


def test_context_manager_stops_the_broker_on_error() -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="agent crashed"), EmbeddedBroker() as running:
        assert running.pid is not None
        pids.append(running.pid)
        raise RuntimeError("agent crashed")
    assert _gone(pids[0])


def test_start_moves_on_when_the_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = [squatter.getsockname()[1]]
        real = broker_module._free_port
        monkeypatch.setattr(broker_module, "_free_port", lambda: taken.pop() if taken else real())
        with EmbeddedBroker() as running:
            assert running.url != f"127.0.0.1:{squatter.getsockname()[1]}"
            ping(running.url)


# -- topics and records ------------------------------------------------------------------


def test_ensure_topics_is_idempotent_and_refuses_another_partition_count(
    broker: EmbeddedBroker,
) -> None:
    name = f"test-{uuid.uuid4().hex[:10]}"
    specs = [TopicSpec(name, 3), TopicSpec(f"{name}-state", 2, compacted=True)]
    ensure_topics(broker.url, specs)
    ensure_topics(broker.url, specs)
    assert sorted(end_offsets(broker.url, [name])) == [(name, 0), (name, 1), (name, 2)]
    with pytest.raises(BrokerError, match=f"'{name}' has 3 partitions, Duoli expects 6"):
        ensure_topics(broker.url, [TopicSpec(name, 6)])


def test_existing_topics_lists_what_was_created(broker: EmbeddedBroker) -> None:
    name = f"test-{uuid.uuid4().hex[:10]}"
    assert name not in existing_topics(broker.url)
    ensure_topics(broker.url, [TopicSpec(name, 1)])
    assert name in existing_topics(broker.url)


def test_compacted_topic_is_created_compacted(
    broker: EmbeddedBroker, new_topic: Callable[..., str]
) -> None:
    from kafka import KafkaAdminClient  # after connectors: see _commit_positions
    from kafka.admin import ConfigResource, ConfigResourceType

    compacted, plain = new_topic(compacted=True), new_topic()
    admin = KafkaAdminClient(bootstrap_servers=broker.url)
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in (compacted, plain)]
        configs = admin.describe_configs(resources, config_filter="all")["topic"]
    finally:
        admin.close()
    assert configs[compacted]["cleanup.policy"]["value"] == "compact"
    assert configs[plain].get("cleanup.policy", {}).get("value") != "compact"


def test_produce_then_consume_all_round_trip(
    broker: EmbeddedBroker, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=3)
    records = [*_keyed(60), (None, b"no key")]
    assert produce(broker.url, topic, records) == len(records)
    got = consume_all(broker.url, topic)
    assert sorted(got, key=repr) == sorted(records, key=repr)
    for key in {k for k, _ in records if k is not None}:  # per-key order is kept
        assert [v for k, v in got if k == key] == [v for k, v in records if k == key]


def test_consume_all_of_an_empty_topic(
    broker: EmbeddedBroker, new_topic: Callable[..., str]
) -> None:
    assert consume_all(broker.url, new_topic(), timeout=5) == []


def test_end_offsets_count_every_record_of_a_batch(
    broker: EmbeddedBroker, new_topic: Callable[..., str]
) -> None:
    # Tansu's ListOffsets answers "last batch's base offset + 1"; batches here hold many records.
    topic = new_topic(partitions=2)
    produce(broker.url, topic, _keyed(200, keys=7))
    ends = end_offsets(broker.url, [topic])
    assert sum(ends.values()) == 200
    offsets = _by_partition(broker.url, topic)
    assert ends == {(topic, p): len(found) for p, found in offsets.items()}


def _by_partition(url: str, topic: str) -> dict[int, list[int]]:
    from kafka import KafkaConsumer, TopicPartition  # after connectors: see _commit_positions

    consumer = KafkaConsumer(bootstrap_servers=url, auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        found: dict[int, list[int]] = {tp.partition: [] for tp in tps}
        deadline = time.monotonic() + 10
        while sum(map(len, found.values())) < 200 and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=100).items():
                found[tp.partition] += [r.offset for r in batch]
        return found
    finally:
        consumer.close()


def test_produce_refuses_a_missing_topic_instead_of_creating_it(broker: EmbeddedBroker) -> None:
    name = f"test-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(BrokerError, match=name):
        produce(broker.url, name, [(None, b"x")])
    with pytest.raises(BrokerError, match="unknown topics"):
        end_offsets(broker.url, [name])


def test_produce_keeps_to_the_rate(broker: EmbeddedBroker, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=1)
    started = time.monotonic()
    assert produce(broker.url, topic, _keyed(21), rate=100.0) == 21
    assert time.monotonic() - started >= 0.2
    assert end_offsets(broker.url, [topic]) == {(topic, 0): 21}


# -- consumer-group offsets --------------------------------------------------------------


def test_committed_offsets_follow_a_group_commit(
    broker: EmbeddedBroker, new_topic: Callable[..., str]
) -> None:
    topic, group = new_topic(partitions=3), f"group-{uuid.uuid4().hex[:8]}"
    produce(broker.url, topic, _keyed(30))
    assert committed_offsets(broker.url, group, [topic]) == {(topic, p): 0 for p in range(3)}
    ends = end_offsets(broker.url, [topic])
    _commit_positions(broker.url, group, topic, {0: ends[(topic, 0)], 1: 1})
    assert committed_offsets(broker.url, group, [topic]) == {
        (topic, 0): ends[(topic, 0)],
        (topic, 1): 1,
        (topic, 2): 0,
    }


def test_wait_until_consumed_reports_the_lag_on_timeout(
    broker: EmbeddedBroker, new_topic: Callable[..., str]
) -> None:
    topic, group = new_topic(partitions=2), f"group-{uuid.uuid4().hex[:8]}"
    produce(broker.url, topic, _keyed(10))
    ends = end_offsets(broker.url, [topic])
    started = time.monotonic()
    with pytest.raises(BrokerError, match=rf"{topic}\[\d\] lag \d+") as info:
        wait_until_consumed(broker.url, group, [topic], timeout=0.5)
    assert time.monotonic() - started < 5
    for (_, p), end in ends.items():
        assert (f"{topic}[{p}] lag {end}" in str(info.value)) == (end > 0)


def test_wait_until_consumed_returns_once_the_group_commits(
    broker: EmbeddedBroker, new_topic: Callable[..., str]
) -> None:
    topic, group = new_topic(partitions=3), f"group-{uuid.uuid4().hex[:8]}"
    produce(broker.url, topic, _keyed(40))
    ends = {p: end for (_, p), end in end_offsets(broker.url, [topic]).items()}
    committer = threading.Timer(0.3, _commit_positions, (broker.url, group, topic, ends))
    committer.start()
    try:
        started = time.monotonic()
        wait_until_consumed(broker.url, group, [topic], timeout=20)
        assert time.monotonic() - started >= 0.25
    finally:
        committer.join()


# -- Redis -------------------------------------------------------------------------------


ALERT = {
    "alert_id": "fraud:acc-1:evt-9",
    "kind": "fraud",
    "severity": "high",
    "account_id": "acc-1",
    "created_at": "2024-05-01T10:00:00+00:00",
    "reasons": ["velocity"],
    "score": 0.93,
}


def test_an_alert_written_twice_is_one_stream_entry(
    with_store: Callable[..., Any], redis_prefix: str
) -> None:
    async def scenario(store: RedisStore) -> tuple[int, int, int, Any, Any]:
        first = await store.write(alerts=[ALERT, ALERT])
        again = await store.write(alerts=[ALERT])
        client = aioredis.from_url(REDIS_URL, decode_responses=True)
        try:
            entries = await client.xrange(f"{redis_prefix}:alerts") or []
            stored = await client.get(f"{redis_prefix}:alert:{ALERT['alert_id']}")
        finally:
            await client.aclose()
        return first, again, len(entries), entries[0][1], stored

    first, again, count, fields, stored = with_store(scenario)
    assert (first, again, count) == (1, 0, 1)
    canonical = json.dumps(ALERT, sort_keys=True, separators=(",", ":"))
    assert stored == canonical
    assert fields == {
        "alert_id": ALERT["alert_id"],
        "kind": "fraud",
        "severity": "high",
        "account_id": "acc-1",
        "created_at": ALERT["created_at"],
        "data": canonical,
    }


def test_alert_stream_is_capped_near_maxlen(
    with_store: Callable[..., Any], redis_prefix: str
) -> None:
    async def scenario(store: RedisStore) -> tuple[int, int]:
        alerts = [{**ALERT, "alert_id": f"a{i}"} for i in range(500)]
        new = await store.write(alerts=alerts)
        client = aioredis.from_url(REDIS_URL)
        try:
            return new, await client.xlen(f"{redis_prefix}:alerts")
        finally:
            await client.aclose()

    new, length = with_store(scenario, alerts_maxlen=100)
    assert new == 500
    assert 100 <= length < 500


def test_hashes_are_written_field_by_field(with_store: Callable[..., Any]) -> None:
    async def scenario(store: RedisStore) -> tuple[int, dict[str, str], list[dict[str, str]]]:
        new = await store.write(
            alerts=[ALERT],
            hashes={"account:acc-1": {"credit_limit": 5000, "apr": 0.18, "status": "current"}},
        )
        await store.write(hashes={"account:acc-1": {"status": "overdue"}, "merchant:m1": {"n": 1}})
        one = await store.read_hash("account:acc-1")
        many = await store.read_hashes(["merchant:m1", "account:missing", "account:acc-1"])
        return new, one, many

    new, one, many = with_store(scenario)
    assert new == 1
    assert one == {"credit_limit": "5000", "apr": "0.18", "status": "overdue"}
    assert many == [{"n": "1"}, {}, one]


def test_hash_values_read_back_as_python_writes_them(with_store: Callable[..., Any]) -> None:
    """Commands are packed by hiredis, not redis-py: floats must still read as ``repr``."""
    fields = {"third": 1 / 3, "tiny": 1e-7, "huge": 1e20, "n": -7, "name": "王 ü"}

    async def scenario(store: RedisStore) -> dict[str, str]:
        await store.write(hashes={"account:acc-9": fields})
        return await store.read_hash("account:acc-9")

    assert with_store(scenario) == {name: str(value) for name, value in fields.items()}


def test_a_redis_that_never_answers_fails_within_the_deadline() -> None:
    """A real socket that accepts and reads but never answers, as a hung server would."""

    async def scenario() -> float:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.read(4096):
                pass
            writer.close()

        server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.3)
        started = time.monotonic()
        try:
            with pytest.raises(StoreError, match=r"no answer within 0\.3 s"):
                await store.start()
            return time.monotonic() - started
        finally:
            server.close()

    assert asyncio.run(scenario()) < 5


def test_write_survives_a_flushed_script_cache(with_store: Callable[..., Any]) -> None:
    async def scenario(store: RedisStore) -> list[int]:
        store._sha = "0" * 40  # as after a Redis restart, without flushing the shared server
        return [await store.write(alerts=[ALERT]), await store.write(alerts=[ALERT])]

    assert with_store(scenario) == [1, 0]


def test_a_batch_of_writes_is_applied_in_one_go(with_store: Callable[..., Any]) -> None:
    async def scenario(store: RedisStore) -> tuple[list[int], dict[str, str], dict[str, str]]:
        writes = RedisWrites()
        writes.put_hash("account:acc-1", {"status": "current", "dpd": 7})
        writes.increment("rule_stats:r1", "hits", 2)
        writes.put_alert(ALERT)
        new = [await store.apply(writes), await store.apply(writes)]
        return new, await store.read_hash("account:acc-1"), await store.read_hash("rule_stats:r1")

    new, account, stats = with_store(scenario)
    assert new == [1, 0]  # the alert is stored once
    assert account == {"status": "current", "dpd": "7"}
    assert stats == {"hits": "4"}  # counters are the one write that is not idempotent


def test_unreachable_redis_is_a_store_error_without_the_password() -> None:
    store = RedisStore("redis://:hunter2@127.0.0.1:1/0")
    with pytest.raises(StoreError, match="cannot reach Redis") as info:
        asyncio.run(store.start())
    assert "redis://:***@127.0.0.1:1/0" in str(info.value)
    assert "hunter2" not in str(info.value)
