"""Redis store logic that needs no server: error mapping, encoding, and a batch's writes."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
import redis.exceptions

from connectors.redis_store import (
    RedisStore,
    RedisWrites,
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


def test_later_fields_for_a_hash_win() -> None:
    writes = RedisWrites()
    given = {"limit": 100, "apr": 0.2}
    writes.put_hash("account:a1", given)
    writes.put_hash("account:a1", {"limit": 200})
    assert writes.hashes == {"account:a1": {"limit": 200, "apr": 0.2}}
    assert given == {"limit": 100, "apr": 0.2}  # the caller's fields are not written into


def test_bad_hash_values_are_refused_at_the_caller() -> None:
    writes = RedisWrites()
    bad_values: list[Any] = [None, True, [1]]
    for bad in bad_values:
        with pytest.raises(TypeError, match="account:a1"):
            writes.put_hash("account:a1", {"x": bad})
    assert len(writes) == 0


def test_increments_to_a_field_are_summed_into_one_write() -> None:
    writes = RedisWrites()
    writes.increment("rule_stats:r1", "hits")
    writes.increment("rule_stats:r1", "hits", 2)
    writes.increment("rule_stats:r2", "errors")
    assert writes.counts == {"rule_stats:r1": {"hits": 3}, "rule_stats:r2": {"errors": 1}}


def test_bad_increments_are_refused_at_the_caller() -> None:
    writes = RedisWrites()
    bad_amounts: list[Any] = [1.5, True, "1"]
    for bad in bad_amounts:
        with pytest.raises(TypeError, match="rule_stats:r1"):
            writes.increment("rule_stats:r1", "hits", bad)
    assert len(writes) == 0


def test_a_bad_alert_is_refused_at_the_caller() -> None:
    writes = RedisWrites()
    with pytest.raises(ValueError, match="alert_id"):
        writes.put_alert({"kind": "fraud"})
    writes.put_alert({"alert_id": "a1"})
    assert [alert.alert_id for alert in writes.alerts] == ["a1"]


def test_nothing_to_apply_needs_no_server() -> None:
    store = RedisStore("redis://127.0.0.1:6379/0")  # never started: a round trip would raise
    assert asyncio.run(store.apply(RedisWrites())) == 0
