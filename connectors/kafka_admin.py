"""Kafka admin and tooling with kafka-python: topics, offsets, bulk produce and read-back.

These are blocking calls for tools, tests and start-up, never for stream agents. Every
``kafka.errors.KafkaError`` is translated into ``BrokerError`` at this boundary.

Two Tansu quirks shape the code:

- the broker auto-creates a missing topic (4 partitions) on any produce, so ``produce``
  refuses a topic that does not exist instead of letting a typo create one;
- ListOffsets(latest) answers the base offset of the last record batch plus one, which is
  too low when that batch holds several records. The high watermark in a Fetch response is
  right, so end offsets are read from it (on a real Kafka cluster both agree).
"""

from __future__ import annotations

import socket
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from duoli.errors import BrokerError

with warnings.catch_warnings():
    # kafka-python 3.0 reads its protocol schemas with the deprecated
    # importlib.resources.read_text at import time; keep `-W error` runs importable.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import KafkaError, TopicAlreadyExistsError

__all__ = [
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
]

#: Every kafka-python error class derives from these; all become ``BrokerError``.
_KAFKA_ERRORS: tuple[type[Exception], ...] = (KafkaError,)

Offsets = dict[tuple[str, int], int]
Record = tuple[bytes | None, bytes]

LARGE_RECORD_BYTES = 64 * 1024 * 1024
_DEFAULT_PORT = 9092
_FETCH_WAIT_MS = 50
_TOOL_TIMEOUT = 20.0


@dataclass(frozen=True)
class TopicSpec:
    """A topic Duoli needs: its partition count is part of the contract with the workers."""

    name: str
    partitions: int
    compacted: bool = False
    large: bool = False  # records up to LARGE_RECORD_BYTES (model snapshots, checkpoints)


# -- error translation and clients ---------------------------------------------------------


@contextmanager
def _translate_errors(action: str) -> Iterator[None]:
    """Turn any kafka-python error raised inside the block into a ``BrokerError``."""
    try:
        yield
    except _KAFKA_ERRORS as exc:
        raise BrokerError(f"{action}: {exc}") from exc


def _bootstrap_addresses(url: str) -> list[tuple[str, int]]:
    """Split a bootstrap-servers string into (host, port) pairs.

    >>> _bootstrap_addresses("PLAINTEXT://k1:9093,[::1]:9094,k3")
    [('k1', 9093), ('::1', 9094), ('k3', 9092)]
    """
    return [_address(part.strip()) for part in url.split(",") if part.strip()]


def _address(server: str) -> tuple[str, int]:
    server = server.split("://", 1)[-1]
    host, sep, port = server.rpartition(":")
    if not sep or host.endswith(":") or not port.isdigit():
        host, port = server, str(_DEFAULT_PORT)
    return host.strip("[]"), int(port)


def _require_reachable(url: str, timeout: float) -> None:
    """Fail fast with a clear error; kafka-python would retry for its whole bootstrap timeout
    and leak the sockets of the failed attempts."""
    for host, port in _bootstrap_addresses(url):
        try:
            socket.create_connection((host, port), timeout=min(timeout, 2.0)).close()
        except OSError:
            continue
        return
    raise BrokerError(f"no Kafka broker reachable at {url!r}")


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1000)


@contextmanager
def _admin(url: str, timeout: float) -> Iterator[Any]:
    _require_reachable(url, timeout)
    admin = KafkaAdminClient(
        bootstrap_servers=url, bootstrap_timeout_ms=_ms(timeout), request_timeout_ms=_ms(timeout)
    )
    try:
        yield admin
    finally:
        admin.close()


@contextmanager
def _consumer(url: str, timeout: float, group: str | None = None) -> Iterator[Any]:
    _require_reachable(url, timeout)
    consumer = KafkaConsumer(
        bootstrap_servers=url,
        group_id=group,
        enable_auto_commit=False,
        allow_auto_create_topics=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=_FETCH_WAIT_MS,
        bootstrap_timeout_ms=_ms(timeout),
        fetch_max_bytes=LARGE_RECORD_BYTES,
        max_partition_fetch_bytes=LARGE_RECORD_BYTES,
    )
    try:
        yield consumer
    finally:
        consumer.close(autocommit=False)


# -- topics ----------------------------------------------------------------------------------


def ping(url: str, timeout: float = 5.0) -> None:
    """One metadata round trip: proves the broker speaks Kafka, not only that a port is open."""
    with _translate_errors(f"Kafka at {url!r} did not answer"), _admin(url, timeout) as admin:
        admin.describe_cluster()


def existing_topics(url: str, timeout: float = 20.0) -> set[str]:
    """The names of the topics the cluster has."""
    with _translate_errors("cannot list topics"), _admin(url, timeout) as admin:
        return set(admin.list_topics())


def ensure_topics(url: str, specs: Sequence[TopicSpec], timeout: float = 20.0) -> None:
    """Create the missing topics; refuse an existing one whose partition count differs,
    because keyed state would then land on the wrong worker."""
    names = [spec.name for spec in specs]
    with _translate_errors("cannot ensure topics"), _admin(url, timeout) as admin:
        missing = [spec for spec in specs if spec.name not in _partition_counts(admin, names)]
        if missing:
            result = admin.create_topics(
                _creation_request(missing), timeout_ms=_ms(timeout), raise_errors=False
            )
            _raise_creation_errors(result)
            admin.wait_for_topics([spec.name for spec in missing], timeout_ms=_ms(timeout))
        _check_partitions(specs, _partition_counts(admin, names))


def _creation_request(specs: Sequence[TopicSpec]) -> dict[str, dict[str, Any]]:
    # replication_factor -1 takes the cluster default: 1 on Tansu, 3 on a typical cluster.
    return {
        spec.name: {
            "num_partitions": spec.partitions,
            "replication_factor": -1,
            "configs": _configs(spec),
        }
        for spec in specs
    }


def _configs(spec: TopicSpec) -> dict[str, str]:
    configs = {"cleanup.policy": "compact"} if spec.compacted else {}
    if spec.large:
        configs["max.message.bytes"] = str(LARGE_RECORD_BYTES)
    return configs


def _raise_creation_errors(result: Mapping[str, Any]) -> None:
    # Another worker may have created the topic meanwhile; its partitions are checked next.
    failures = [
        f"{topic['name']!r}: {topic.get('error_message') or topic['error_code']}"
        for topic in result["topics"]
        if topic["error_code"] not in (0, TopicAlreadyExistsError.errno)
    ]
    if failures:
        raise BrokerError("cannot create topics: " + "; ".join(failures))


def _check_partitions(specs: Sequence[TopicSpec], counts: Mapping[str, int]) -> None:
    """Raise ``BrokerError`` naming every topic that is missing or has the wrong partition count.

    >>> _check_partitions([TopicSpec("events", 4)], {"events": 4})
    >>> _check_partitions([TopicSpec("events", 4)], {"events": 8})
    Traceback (most recent call last):
    ...
    duoli.errors.BrokerError: topic 'events' has 8 partitions, Duoli expects 4
    """
    problems = [_partition_problem(spec, counts.get(spec.name)) for spec in specs]
    if any(problems):
        raise BrokerError("; ".join(problem for problem in problems if problem))


def _partition_problem(spec: TopicSpec, actual: int | None) -> str:
    if actual is None:
        return f"topic {spec.name!r} does not exist"
    if actual != spec.partitions:
        return f"topic {spec.name!r} has {actual} partitions, Duoli expects {spec.partitions}"
    return ""


def _partition_counts(admin: Any, topics: Sequence[str]) -> dict[str, int]:
    """Partition counts of the topics that exist; describing never auto-creates on Tansu."""
    described = admin.describe_topics(list(topics))
    return {t["name"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


def _topic_partitions(counts: Mapping[str, int], topics: Sequence[str]) -> list[tuple[str, int]]:
    """Every (topic, partition) of ``topics``; a missing topic is an error, not an empty list.

    >>> _topic_partitions({"a": 2, "b": 1}, ["a", "b"])
    [('a', 0), ('a', 1), ('b', 0)]
    """
    unknown = [topic for topic in topics if not counts.get(topic)]
    if unknown:
        raise BrokerError(f"unknown topics: {', '.join(map(repr, unknown))}")
    return [(topic, p) for topic in topics for p in range(counts[topic])]


# -- offsets -------------------------------------------------------------------------------


def end_offsets(url: str, topics: Sequence[str]) -> Offsets:
    """The offset the next record of every partition will get (the high watermark)."""
    with _translate_errors("cannot read end offsets"), _consumer(url, _TOOL_TIMEOUT) as consumer:
        tps = _consumer_partitions(consumer, topics)
        return _high_watermarks(consumer, tps, _TOOL_TIMEOUT)


def _consumer_partitions(consumer: Any, topics: Sequence[str]) -> list[Any]:
    counts = {topic: len(consumer.partitions_for_topic(topic) or ()) for topic in topics}
    return [TopicPartition(t, p) for t, p in _topic_partitions(counts, topics)]


def _high_watermarks(consumer: Any, tps: Sequence[Any], timeout: float) -> Offsets:
    """Fetch once per partition from just below the ListOffsets answer to learn the real end."""
    consumer.assign(list(tps))
    hints = consumer.end_offsets(list(tps))
    for tp in tps:
        consumer.seek(tp, max(hints[tp] - 1, 0))
    deadline = time.monotonic() + timeout
    while any(consumer.highwater(tp) is None for tp in tps):
        if time.monotonic() > deadline:
            raise BrokerError(f"no fetch response within {timeout}s for {list(tps)}")
        consumer.poll(timeout_ms=_FETCH_WAIT_MS, max_records=1)
    return {(tp.topic, tp.partition): max(hints[tp], consumer.highwater(tp)) for tp in tps}


def committed_offsets(url: str, group: str, topics: Sequence[str]) -> Offsets:
    """The group's committed offsets; a partition it never committed counts as 0."""
    action = f"cannot read the offsets of group {group!r}"
    with _translate_errors(action), _admin(url, _TOOL_TIMEOUT) as admin:
        return _committed(admin, group, _admin_partitions(admin, topics))


def _admin_partitions(admin: Any, topics: Sequence[str]) -> list[Any]:
    counts = _partition_counts(admin, topics)
    return [TopicPartition(t, p) for t, p in _topic_partitions(counts, topics)]


def _committed(admin: Any, group: str, tps: Sequence[Any]) -> Offsets:
    found = admin.list_group_offsets({group: list(tps)}).get(group, {})
    # kafka-python reports -1 for a partition the group never committed.
    offsets = {(tp.topic, tp.partition): meta.offset for tp, meta in found.items()}
    return {key: max(offsets.get(key, 0), 0) for key in ((tp.topic, tp.partition) for tp in tps)}


def _lag(ends: Mapping[tuple[str, int], int], committed: Mapping[tuple[str, int], int]) -> Offsets:
    """Records still to be committed, only for the partitions that are behind.

    >>> _lag({("t", 0): 5, ("t", 1): 3}, {("t", 0): 5, ("t", 1): 1})
    {('t', 1): 2}
    """
    behind = {tp: end - committed.get(tp, 0) for tp, end in ends.items()}
    return {tp: n for tp, n in behind.items() if n > 0}


def wait_until_consumed(
    url: str, group: str, topics: Sequence[str], timeout: float, poll: float = 0.1
) -> None:
    """Block until ``group`` has committed every record that existed when the call started."""
    deadline = time.monotonic() + timeout
    ends = end_offsets(url, topics)
    with _translate_errors(f"cannot follow group {group!r}"), _admin(url, timeout) as admin:
        tps = [TopicPartition(topic, p) for topic, p in ends]
        while behind := _lag(ends, _committed(admin, group, tps)):
            if time.monotonic() >= deadline:
                raise BrokerError(f"{group!r} still behind after {timeout}s: {_describe(behind)}")
            time.sleep(poll)


def _describe(behind: Mapping[tuple[str, int], int]) -> str:
    return ", ".join(f"{topic}[{p}] lag {n}" for (topic, p), n in sorted(behind.items()))


# -- records -------------------------------------------------------------------------------


def _pace_delay(started: float, sent: int, rate: float | None, now: float) -> float:
    """Seconds to wait before record number ``sent`` so the average stays at ``rate`` per second.

    >>> _pace_delay(started=0.0, sent=10, rate=5.0, now=1.5)
    0.5
    >>> _pace_delay(started=0.0, sent=10, rate=None, now=1.5)
    0.0
    """
    if not rate:
        return 0.0
    return max(started + sent / rate - now, 0.0)


def produce(url: str, topic: str, records: Iterable[Record], rate: float | None = None) -> int:
    """Send (key, value) records, optionally paced, and flush; returns how many were sent."""
    with _producer(url, topic) as (producer, _):
        return _send_all(producer, topic, ((key, value, None) for key, value in records), rate)


def broadcast(url: str, topic: str, value: bytes) -> int:
    """Send the same record to every partition of the topic; returns the partition count."""
    with _producer(url, topic) as (producer, partitions):
        return _send_all(producer, topic, ((None, value, p) for p in range(partitions)), None)


@contextmanager
def _producer(url: str, topic: str) -> Iterator[tuple[Any, int]]:
    with _translate_errors(f"cannot produce to {topic!r}"):
        with _admin(url, _TOOL_TIMEOUT) as admin:  # refuse a missing topic: Tansu would create it
            partitions = len(_admin_partitions(admin, [topic]))
        producer = KafkaProducer(bootstrap_servers=url, linger_ms=5, allow_auto_create_topics=False)
        try:
            yield producer, partitions
        finally:
            producer.close(timeout=_TOOL_TIMEOUT)  # bounded, even if the broker went away


def _send_all(
    producer: Any, topic: str, records: Iterable[tuple[bytes | None, bytes, int | None]],
    rate: float | None,
) -> int:  # fmt: skip
    failures: list[BaseException] = []
    started, sent = time.monotonic(), 0
    for key, value, partition in records:
        time.sleep(_pace_delay(started, sent, rate, time.monotonic()))
        producer.send(topic, key=key, value=value, partition=partition).add_errback(failures.append)
        sent += 1
    producer.flush()
    if failures:
        raise BrokerError(f"{len(failures)} of {sent} records to {topic!r} failed") from failures[0]
    return sent


def consume_all(url: str, topic: str, timeout: float = 10.0) -> list[Record]:
    """Every record from the beginning up to the end offsets seen at the start, partition by
    partition in offset order; no consumer group, so nothing is committed."""
    with _translate_errors(f"cannot read {topic!r}"), _consumer(url, timeout) as consumer:
        tps = _consumer_partitions(consumer, [topic])
        ends = _high_watermarks(consumer, tps, timeout)
        consumer.seek_to_beginning(*tps)
        return _read_until(consumer, ends, time.monotonic() + timeout)


def follow(url: str, topic: str, from_beginning: bool = False) -> Iterator[Record]:
    """Every new record of the topic as it arrives (all of them with ``from_beginning``),
    partition by partition in offset order; runs until the caller stops iterating."""
    with _translate_errors(f"cannot follow {topic!r}"), _consumer(url, _TOOL_TIMEOUT) as consumer:
        tps = _consumer_partitions(consumer, [topic])
        if not from_beginning:
            ends = _high_watermarks(consumer, tps, _TOOL_TIMEOUT)
            for tp in tps:
                consumer.seek(tp, ends[(tp.topic, tp.partition)])
        else:
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
        while True:
            for _, batch in sorted(consumer.poll(timeout_ms=200).items()):
                yield from ((record.key, record.value) for record in batch)


def _read_until(consumer: Any, ends: Offsets, deadline: float) -> list[Record]:
    # Keyed by offset: the high-watermark probe may leave fetched records that arrive twice.
    found: dict[Any, dict[int, Record]] = {TopicPartition(*tp): {} for tp in ends}
    while behind := _behind(consumer, ends):
        if time.monotonic() > deadline:
            raise BrokerError(f"timed out reading to the end offsets: {_describe(behind)}")
        for tp, batch in consumer.poll(timeout_ms=100).items():
            end = ends[(tp.topic, tp.partition)]
            found[tp].update((r.offset, (r.key, r.value)) for r in batch if r.offset < end)
    return [found[tp][offset] for tp in sorted(found) for offset in sorted(found[tp])]


def _behind(consumer: Any, ends: Offsets) -> Offsets:
    positions = {tp: consumer.position(TopicPartition(*tp)) for tp in ends}
    return _lag(ends, positions)
