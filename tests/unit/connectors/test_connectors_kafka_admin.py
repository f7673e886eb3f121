"""Kafka admin logic that needs no broker: error mapping, offsets math, pacing, validation."""

from __future__ import annotations

import inspect
import time
from types import ModuleType
from typing import Any

import pytest

from connectors import kafka_admin
from connectors.broker import _free_port
from connectors.kafka_admin import (
    TopicSpec,
    _bootstrap_addresses,
    _check_partitions,
    _lag,
    _pace_delay,
    _raise_creation_errors,
    _send_all,
    _topic_partitions,
    _translate_errors,
    ensure_topics,
    produce,
)
from duoli.errors import BrokerError


def _kafka_errors() -> ModuleType:
    # Imported only after connectors.kafka_admin, which imports kafka-python with its
    # import-time DeprecationWarning silenced (pytest runs with -W error).
    import kafka.errors

    return kafka.errors


def _kafka_error_classes() -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(_kafka_errors(), inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__.startswith("kafka")
    ]


def _instance(cls: type[BaseException]) -> BaseException:
    try:
        return cls("boom")
    except TypeError:  # a few take structured arguments
        exc = cls.__new__(cls)
        exc.args = ("boom",)
        return exc


@pytest.mark.parametrize("cls", _kafka_error_classes(), ids=lambda cls: cls.__name__)
def test_every_kafka_error_becomes_a_broker_error(cls: type[BaseException]) -> None:
    error = _instance(cls)
    with pytest.raises(BrokerError, match=r"^testing: ") as info, _translate_errors("testing"):
        raise error
    assert info.value.__cause__ is error


def test_the_error_list_is_not_empty() -> None:
    assert len(_kafka_error_classes()) > 100


def test_programming_errors_are_not_disguised() -> None:
    with pytest.raises(ValueError), _translate_errors("x"):
        raise ValueError("a bug stays a bug")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("127.0.0.1:9092", [("127.0.0.1", 9092)]),
        ("a:1, b:2", [("a", 1), ("b", 2)]),
        ("SASL_SSL://broker:9093", [("broker", 9093)]),
        ("[::1]:9094", [("::1", 9094)]),
        ("kafka", [("kafka", 9092)]),
    ],
)
def test_bootstrap_addresses(url: str, expected: list[tuple[str, int]]) -> None:
    assert _bootstrap_addresses(url) == expected


def test_partition_check_names_every_bad_topic() -> None:
    specs = [TopicSpec("ok", 2), TopicSpec("wrong", 4), TopicSpec("gone", 1)]
    with pytest.raises(BrokerError) as info:
        _check_partitions(specs, {"ok": 2, "wrong": 8})
    message = str(info.value)
    assert "'wrong' has 8 partitions, Duoli expects 4" in message
    assert "'gone' does not exist" in message
    assert "'ok'" not in message


def test_topic_partitions_refuses_unknown_topics() -> None:
    assert _topic_partitions({"a": 2}, ["a"]) == [("a", 0), ("a", 1)]
    with pytest.raises(BrokerError, match="'b'"):
        _topic_partitions({"a": 2, "b": 0}, ["a", "b"])


def test_creation_errors_ignore_a_topic_created_meanwhile() -> None:
    exists = {"name": "a", "error_code": 36, "error_message": "exists"}
    _raise_creation_errors({"topics": [exists, {"name": "b", "error_code": 0}]})
    bad = {"name": "c", "error_code": 37, "error_message": "Number of partitions is invalid"}
    with pytest.raises(BrokerError, match="'c': Number of partitions is invalid"):
        _raise_creation_errors({"topics": [exists, bad]})


def test_lag_lists_only_partitions_behind() -> None:
    ends = {("t", 0): 10, ("t", 1): 0, ("t", 2): 7}
    assert _lag(ends, {("t", 0): 10, ("t", 2): 3}) == {("t", 2): 4}
    assert _lag(ends, {("t", 0): 12, ("t", 2): 7}) == {}
    assert _lag(ends, {}) == {("t", 0): 10, ("t", 2): 7}


def test_pace_delay_keeps_the_average_rate() -> None:
    assert _pace_delay(100.0, sent=0, rate=10.0, now=100.0) == 0.0
    assert _pace_delay(100.0, sent=5, rate=10.0, now=100.2) == pytest.approx(0.3)
    assert _pace_delay(100.0, sent=5, rate=10.0, now=101.0) == 0.0  # behind: no sleep


class _Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def add_errback(self, callback: Any) -> None:
        if self.error is not None:
            callback(self.error)


class _Producer:
    """Records what was sent; fails the records whose value is in ``failing``."""

    def __init__(self, failing: frozenset[bytes] = frozenset()) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.flushed = False
        self.failing = failing

    def send(
        self, topic: str, key: bytes | None, value: bytes, partition: int | None = None
    ) -> _Future:
        self.sent.append(
            (topic, key, value) if partition is None else (topic, key, value, partition)
        )
        failed = value in self.failing
        return _Future(_kafka_errors().KafkaTimeoutError("expired") if failed else None)

    def flush(self) -> None:
        self.flushed = True


def test_send_all_counts_and_flushes() -> None:
    producer = _Producer()
    assert _send_all(producer, "t", [(b"k", b"1", None), (None, b"2", 3)], rate=None) == 2
    assert producer.sent == [("t", b"k", b"1"), ("t", None, b"2", 3)]
    assert producer.flushed


def test_send_all_reports_failed_records() -> None:
    producer = _Producer(failing=frozenset({b"2", b"3"}))
    with pytest.raises(BrokerError, match="2 of 4 records") as info:
        _send_all(producer, "t", [(None, value, None) for value in (b"1", b"2", b"3", b"4")], None)
    assert isinstance(info.value.__cause__, _kafka_errors().KafkaTimeoutError)


def test_send_all_respects_the_rate() -> None:
    started = time.monotonic()
    _send_all(_Producer(), "t", [(None, b"x", None)] * 11, rate=100.0)
    assert time.monotonic() - started >= 0.1


def test_unreachable_broker_fails_fast_with_broker_error() -> None:
    url = f"127.0.0.1:{_free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(BrokerError, match="no Kafka broker reachable"):
        ensure_topics(url, [TopicSpec("t", 1)])
    with pytest.raises(BrokerError, match="no Kafka broker reachable"):
        produce(url, "t", [(None, b"x")])
    assert time.monotonic() - started < 5


def test_public_surface() -> None:
    assert set(kafka_admin.__all__) == {
        "LARGE_RECORD_BYTES",
        "TopicSpec",
        "broadcast",
        "committed_offsets",
        "consume_all",
        "end_offsets",
        "ensure_topics",
        "existing_topics",
        "follow",
        "ping",
        "produce",
        "wait_until_consumed",
    }
