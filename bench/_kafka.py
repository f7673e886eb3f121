"""Broker-side helpers of the bench: fresh names, events, processes and offset polling."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from duoli.processes import stop_pid
from duoli.simulate import SimulationConfig, simulate

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, TopicPartition

__all__ = [
    "CoresMeter",
    "OffsetPoller",
    "book_records",
    "cpu_seconds",
    "delete_redis_prefix",
    "fresh_prefix",
    "machine_busy_seconds",
    "python_module",
    "worker_env",
]

REPO = Path(__file__).resolve().parent.parent
Record = tuple[bytes | None, bytes]


def fresh_prefix(kind: str) -> str:
    """Topic, group and Redis prefix no other run uses."""
    return f"bench-{kind}-{uuid.uuid4().hex[:8]}"


def book_records(events: int, seed: int = 7) -> list[Record]:
    """The first ``events`` events of a simulated book, keyed by account as the contract says."""
    config = SimulationConfig(seed=seed, accounts=max(events // 20, 50), days=90)
    lines = islice(simulate(config), events)
    return [(e["account_id"].encode(), json.dumps(e).encode()) for e in lines]


def worker_env(prefix: str, redis_url: str, **extra: str) -> dict[str, str]:
    """A worker's variables: its own topics, group and Redis keys, no live clock."""
    return {
        "DUOLI_TOPIC_PREFIX": prefix,
        "DUOLI_REDIS_PREFIX": prefix,
        "DUOLI_REDIS_URL": redis_url,
        "DUOLI_LIVE_CLOCK": "false",
        **extra,
    }


@contextmanager
def python_module(
    module: str, env: Mapping[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m module`` from the repository root, stopped by pid on leaving."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module], cwd=REPO, env={**os.environ, **env},
            stdout=log, stderr=log,
        )  # fmt: skip
    try:
        yield process
    finally:
        stop_pid(process)


class OffsetPoller:
    """One admin connection reused for every poll: a new client per poll costs ~50 ms."""

    def __init__(self, url: str, group: str, topic: str, partitions: int) -> None:
        self.group = group
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.admin = KafkaAdminClient(bootstrap_servers=url, request_timeout_ms=10_000)

    def committed(self) -> int:
        """Sum of the group's committed offsets over the topic; never-committed counts as 0."""
        found = self.admin.list_group_offsets({self.group: self.partitions}).get(self.group, {})
        return sum(max(meta.offset, 0) for meta in found.values())

    def close(self) -> None:
        self.admin.close()

    def __enter__(self) -> OffsetPoller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def delete_redis_prefix(url: str, prefixes: Sequence[str]) -> int:
    """Delete the keys under our own prefixes, and only those; returns how many."""
    return asyncio.run(_delete(url, prefixes))


async def _delete(url: str, prefixes: Sequence[str]) -> int:
    client: Any = aioredis.from_url(url)
    deleted = 0
    try:
        for prefix in prefixes:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
            for start in range(0, len(keys), 1000):
                deleted += await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()
    return deleted


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process and of the processes it started, and they
    in turn, that still run: a worker's fork server and the trainer and ledger writer it
    forked (Linux ``/proc``); NaN elsewhere."""
    started = [seconds for seconds in map(_own_cpu_seconds, _descendants(pid)) if seconds >= 0]
    return _own_cpu_seconds(pid) + sum(started)  # a process that just ended is NaN: not >= 0


class CoresMeter:
    """The CPU cores some processes, and the whole machine, use from now on; each process
    is read by a function giving its CPU seconds (``cpu_seconds`` of a pid, say)."""

    def __init__(self, readers: Mapping[str, Callable[[], float]]) -> None:
        self.readers = dict(readers)
        self.started = time.monotonic()
        self.cpu = {name: read() for name, read in self.readers.items()}
        self.busy = machine_busy_seconds()

    def cores(self) -> dict[str, float]:
        """``{name}_cpu_cores`` for each process and ``machine_busy_cores``, so far."""
        elapsed = time.monotonic() - self.started
        used = {
            f"{name}_cpu_cores": (read() - self.cpu[name]) / elapsed
            for name, read in self.readers.items()
        }
        used["machine_busy_cores"] = (machine_busy_seconds() - self.busy) / elapsed
        return {name: round(cores, 2) for name, cores in used.items()}


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot (Linux ``/proc``)."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:]]
    except OSError:
        return math.nan
    idle = ticks[3] + ticks[4]  # idle and waiting for I/O
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guests are in user already


def _own_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children.extend(map(int, listing.read_text().split()))
        except OSError:  # the thread ended meanwhile
            continue
    return children + [grandchild for child in children for grandchild in _descendants(child)]
