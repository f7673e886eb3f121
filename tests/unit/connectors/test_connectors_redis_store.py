"""Redis store logic that needs no server: error mapping, encoding, and the sink's buffering."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import redis.exceptions

from connectors.redis_store import (
    BufferedRedisSink,
    RedisStore,
    _Alert,
    _translate_errors,
    encode_alert,
    redact,
)
from duoli.errors import StoreError


def _redis_error_classes() -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(redis.exceptions, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == "redis.exceptions"
    ]


def _instance(cls: type[BaseException]) -> BaseException:
    try:
        return cls("boom")
    except (TypeError, ValueError):  # cluster redirections parse their message
        exc = cls.__new__(cls)
        exc.args = ("boom",)
        return exc


@pytest.mark.parametrize("cls", _redis_error_classes(), ids=lambda cls: cls.__name__)
def test_every_redis_error_becomes_a_store_error(cls: type[BaseException]) -> None:
    error = _instance(cls)
    with pytest.raises(StoreError, match=r"^writing: ") as info, _translate_errors("writing"):
        raise error
    assert info.value.__cause__ is error


def test_the_error_list_covers_the_roots() -> None:
    names = {cls.__name__ for cls in _redis_error_classes()}
    assert {"RedisError", "ConnectionError", "RedisClusterException"} <= names


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:hunter2@cache:6380/1", "redis://:***@cache:6380/1"),
        ("rediss://ops:hunter2@cache/0", "rediss://ops:***@cache/0"),
        ("redis://:hunter2@cache:notaport/0", "<unparsable URL>"),
    ],
)
def test_redact_hides_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_alert_json_is_canonical() -> None:
    first = encode_alert({"b": 1, "a": [1, 2], "alert_id": "x"})
    assert first == encode_alert({"alert_id": "x", "a": [1, 2], "b": 1})
    assert first == '{"a":[1,2],"alert_id":"x","b":1}'


def test_alert_is_checked_when_accepted() -> None:
    with pytest.raises(ValueError, match="alert_id"):
        _Alert.of({"kind": "fraud"})
    with pytest.raises(TypeError):
        _Alert.of({"alert_id": "a", "at": object()})
    alert = _Alert.of({"alert_id": 7, "kind": "fraud", "severity": 3})
    assert (alert.alert_id, alert.fields) == ("7", ("fraud", "3", "", ""))


def test_store_used_before_start_raises_store_error() -> None:
    store = RedisStore("redis://127.0.0.1:6379/0")
    with pytest.raises(StoreError, match="start"):
        asyncio.run(store.read_hash("account:a1"))


def test_invalid_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="invalid Redis URL"):
        asyncio.run(RedisStore("http://:hunter2@cache/0").start())


class _FakeStore(RedisStore):
    """Keeps batches in memory; fails the next ``failures`` writes."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__("redis://fake")
        self.batches: list[tuple[list[str], dict[str, dict[str, Any]]]] = []
        self.counts: list[dict[str, dict[str, int]]] = []
        self.failures = failures

    async def _write(
        self, alerts: Sequence[_Alert], hashes: Mapping[str, Any], counts: Any = None
    ) -> int:
        if self.failures:
            self.failures -= 1
            raise StoreError("redis is down")
        self.batches.append(([a.alert_id for a in alerts], {k: dict(v) for k, v in hashes.items()}))
        self.counts.append({k: dict(v) for k, v in (counts or {}).items()})
        return len(alerts)


def test_later_fields_for_a_hash_win() -> None:
    store = _FakeStore()
    sink = BufferedRedisSink(store)
    sink.put_hash("account:a1", {"limit": 100, "apr": 0.2})
    sink.put_hash("account:a1", {"limit": 200})
    asyncio.run(sink.flush())
    assert store.batches == [([], {"account:a1": {"limit": 200, "apr": 0.2}})]


def test_bad_hash_values_are_refused_at_the_caller() -> None:
    sink = BufferedRedisSink(_FakeStore())
    bad_values: list[Any] = [None, True, [1]]
    for bad in bad_values:
        with pytest.raises(TypeError, match="account:a1"):
            sink.put_hash("account:a1", {"x": bad})
    assert sink.pending == 0


def test_increments_to_a_field_are_summed_into_one_write() -> None:
    store = _FakeStore()
    sink = BufferedRedisSink(store)
    sink.increment("rule_stats:r1", "hits")
    sink.increment("rule_stats:r1", "hits", 2)
    sink.increment("rule_stats:r2", "errors")
    asyncio.run(sink.flush())
    assert store.counts == [{"rule_stats:r1": {"hits": 3}, "rule_stats:r2": {"errors": 1}}]


def test_bad_increments_are_refused_at_the_caller() -> None:
    sink = BufferedRedisSink(_FakeStore())
    bad_amounts: list[Any] = [1.5, True, "1"]
    for bad in bad_amounts:
        with pytest.raises(TypeError, match="rule_stats:r1"):
            sink.increment("rule_stats:r1", "hits", bad)
    assert sink.pending == 0


def test_a_failed_flush_keeps_its_increments_and_adds_the_newer_ones() -> None:
    store = _FakeStore(failures=1)
    sink = BufferedRedisSink(store)
    sink.increment("rule_stats:r1", "hits", 2)
    with pytest.raises(StoreError):
        asyncio.run(sink.flush())
    sink.increment("rule_stats:r1", "hits")
    asyncio.run(sink.flush())
    assert store.counts == [{"rule_stats:r1": {"hits": 3}}]


def test_failed_flush_keeps_everything_and_newer_fields_win() -> None:
    store = _FakeStore(failures=1)
    sink = BufferedRedisSink(store)
    sink.put_alert({"alert_id": "1"})
    sink.put_hash("account:a1", {"limit": 100, "apr": 0.2})
    with pytest.raises(StoreError):
        asyncio.run(sink.flush())
    sink.put_alert({"alert_id": "2"})
    sink.put_hash("account:a1", {"limit": 300})
    asyncio.run(sink.flush())
    assert store.batches == [(["1", "2"], {"account:a1": {"limit": 300, "apr": 0.2}})]


def test_backlog_drops_oldest_hashes_never_alerts(caplog: pytest.LogCaptureFixture) -> None:
    store = _FakeStore()
    sink = BufferedRedisSink(store, max_pending=5)
    with caplog.at_level(logging.WARNING, logger="connectors.redis_store"):
        for i in range(4):
            sink.put_alert({"alert_id": str(i)})
        for i in range(4):
            sink.put_hash(f"account:{i}", {"n": i})
        sink.put_alert({"alert_id": "late"})
        asyncio.run(sink.flush())
    alerts, hashes = store.batches[0]
    assert alerts == ["0", "1", "2", "3", "late"]
    assert hashes == {}  # 5 alerts fill the bound; every hash update went, oldest first
    assert "dropping the oldest hash updates" in caplog.text
    assert "4 hash updates were dropped" in caplog.text


def test_backlog_keeps_the_newest_hashes() -> None:
    store = _FakeStore()
    sink = BufferedRedisSink(store, max_pending=3)
    for i in range(6):
        sink.put_hash(f"account:{i}", {"n": i})
    sink.put_hash("account:3", {"n": 33})  # an update makes a hash young again
    asyncio.run(sink.flush())
    assert list(store.batches[0][1]) == ["account:4", "account:5", "account:3"]


def test_background_flush_retries_until_redis_is_back() -> None:
    async def scenario() -> _FakeStore:
        store = _FakeStore(failures=2)
        sink = BufferedRedisSink(store, max_delay=0.001)
        await sink.start()
        sink.put_alert({"alert_id": "a"})
        for _ in range(200):
            if store.batches:
                break
            await asyncio.sleep(0.02)
        await sink.stop()
        return store

    store = asyncio.run(scenario())
    assert store.batches == [(["a"], {})]
    assert store.failures == 0


def test_full_batch_is_flushed_without_waiting_for_the_delay() -> None:
    async def scenario() -> list[tuple[list[str], dict[str, dict[str, Any]]]]:
        store = _FakeStore()
        sink = BufferedRedisSink(store, max_delay=60, max_items=3)
        await sink.start()
        for i in range(3):
            sink.put_hash(f"account:{i}", {"n": i})
        await asyncio.sleep(0.05)
        written = list(store.batches)
        await sink.stop()
        return written

    hashes = {f"account:{i}": {"n": i} for i in range(3)}
    assert asyncio.run(scenario()) == [([], hashes)]


def test_stop_flushes_and_reports_a_final_failure() -> None:
    async def scenario(store: _FakeStore) -> None:
        sink = BufferedRedisSink(store, max_delay=60)
        await sink.start()
        sink.put_alert({"alert_id": "a"})
        await sink.stop()

    ok = _FakeStore()
    asyncio.run(scenario(ok))
    assert ok.batches == [(["a"], {})]
    with pytest.raises(StoreError):
        asyncio.run(scenario(_FakeStore(failures=1)))
