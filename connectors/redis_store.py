"""Redis as Duoli's serving store: the ``{prefix}:alerts`` stream and the live-state hashes.

Redis can be rebuilt from Kafka, so every write here is idempotent: hashes are overwritten
field by field, and an alert enters the stream only if its ``{prefix}:alert:{alert_id}``
key did not exist (one Lua script, so the check and the XADD cannot be split by a crash).
The one exception is counters (HINCRBY, the live rule statistics): a batch written again
after a crash counts twice, which operational statistics can afford.
Every ``redis.exceptions`` error is translated into ``StoreError`` at this boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import hiredis
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from duoli.errors import StoreError

__all__ = ["BufferedRedisSink", "RedisStore", "encode_alert"]

log = logging.getLogger(__name__)

Value = str | int | float
Fields = Mapping[str, Value]
Counts = Mapping[str, Mapping[str, int]]
_HashBuffer = dict[str, dict[str, Value]]
_CountBuffer = dict[str, dict[str, int]]

_NO_HASHES: Mapping[str, Fields] = MappingProxyType({})
_NO_COUNTS: Counts = MappingProxyType({})

# redis-py has several roots: RedisError, plus the cluster and policy errors beside it.
_REDIS_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.RedisError,
    redis_errors.RedisClusterException,
    redis_errors.ChildDeadlockedError,
    redis_errors.IncorrectPolicyType,
)

ROUND_TRIP_TIMEOUT = 5.0  # seconds, as redis-py's default for one reply
_ALERT_FIELDS = ("kind", "severity", "account_id", "created_at")

# KEYS: alert key, stream. ARGV: alert JSON, maxlen, alert_id, kind, severity, account_id,
# created_at. Returns 1 for a new alert, 0 for one already written.
_ADD_ALERT = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
  'alert_id', ARGV[3], 'kind', ARGV[4], 'severity', ARGV[5],
  'account_id', ARGV[6], 'created_at', ARGV[7], 'data', ARGV[1])
return 1
"""


def encode_alert(alert: Mapping[str, Any]) -> str:
    """The canonical JSON of an alert: the same alert always gives the same bytes.

    >>> encode_alert({"severity": "high", "alert_id": "a1"})
    '{"alert_id":"a1","severity":"high"}'
    """
    return json.dumps(alert, sort_keys=True, separators=(",", ":"))


def redact(url: str) -> str:
    """The URL with its password masked, for error messages and logs.

    >>> redact("redis://user:hunter2@cache:6379/0")
    'redis://user:***@cache:6379/0'
    """
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}{port}"
    return urlunsplit(parts._replace(netloc=netloc))


@contextlib.contextmanager
def _translate_errors(action: str) -> Iterator[None]:
    """Turn any redis-py error raised inside the block into a ``StoreError``."""
    try:
        yield
    except _REDIS_ERRORS as exc:
        raise StoreError(f"{action}: {exc}") from exc


@dataclass(frozen=True)
class _Alert:
    """An alert encoded once, when it is accepted, so a bad one fails at the caller."""

    alert_id: str
    data: str
    fields: tuple[str, ...]

    @classmethod
    def of(cls, alert: Mapping[str, Any]) -> _Alert:
        if not alert.get("alert_id"):
            raise ValueError(f"an alert needs an alert_id: {alert!r}")
        fields = tuple(_text(alert.get(name)) for name in _ALERT_FIELDS)
        return cls(str(alert["alert_id"]), encode_alert(alert), fields)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _check_fields(suffix: str, fields: Fields) -> None:
    """Reject values Redis would refuse, here at the caller rather than in every retry."""
    bad = {k: v for k, v in fields.items() if isinstance(v, bool) or not isinstance(v, Value)}
    if bad:
        raise TypeError(f"hash {suffix!r}: values must be str, int or float, got {bad!r}")


class _HiredisPacking:
    """Packs commands in C with ``hiredis.pack_command``, as redis-py's sync client does;
    its asyncio connections pack in Python, which cost a worker about 5% of its CPU.
    Floats come out as ``repr`` writes them, as redis-py's own encoder does."""

    def pack_command(self, *args: Any) -> list[bytes]:
        command = args[0].encode() if isinstance(args[0], str) else args[0]
        if b" " in command:  # e.g. "SCRIPT LOAD": Redis wants the words apart
            args = (*command.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise redis_errors.DataError(str(exc)) from exc


def _packing_in_c(client: aioredis.Redis) -> aioredis.Redis:
    """The client, its connections (plain, TLS or Unix socket alike) packing with hiredis."""
    pool = client.connection_pool
    base = pool.connection_class
    pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    return client


class RedisStore:
    """Idempotent writes of alerts and live-state hashes, one pipeline per batch."""

    def __init__(
        self,
        url: str,
        prefix: str = "duoli",
        alerts_maxlen: int = 100_000,
        timeout: float = ROUND_TRIP_TIMEOUT,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.alerts_maxlen = alerts_maxlen
        self.timeout = timeout
        self._redis: aioredis.Redis | None = None
        self._sha = ""

    @property
    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise StoreError("RedisStore.start() was not awaited")
        return self._redis

    @contextlib.asynccontextmanager
    async def _round_trip(self, action: str) -> AsyncIterator[None]:
        """One deadline for a whole round trip, and its errors as ``StoreError``.

        redis-py arms a timer for every reply it reads; for a pipeline of hash writes that
        cost more than the writes. So the connection has no reply timeout and the round
        trip has one: an unanswered pipeline is cancelled, and redis-py drops the connection.
        """
        try:
            async with asyncio.timeout(self.timeout):
                with _translate_errors(action):
                    yield
        except TimeoutError as exc:
            raise StoreError(f"{action}: no answer within {self.timeout:g} s") from exc

    async def start(self) -> None:
        """Connect, check the server answers and register the alert script."""
        if self._redis is not None:
            return
        try:
            client = _packing_in_c(
                aioredis.from_url(
                    self.url,
                    decode_responses=True,
                    socket_timeout=None,  # the round trips have one deadline each instead
                    socket_connect_timeout=self.timeout,
                )
            )
        except ValueError as exc:
            raise StoreError(f"invalid Redis URL {redact(self.url)}: {exc}") from exc
        try:
            async with self._round_trip(f"cannot reach Redis at {redact(self.url)}"):
                await client.ping()
                self._sha = await client.script_load(_ADD_ALERT)
        except BaseException:
            await client.aclose()
            raise
        self._redis = client

    async def close(self) -> None:
        """Release the connections; the store can be started again."""
        client, self._redis = self._redis, None
        if client is not None:
            with _translate_errors("cannot close the Redis connection"):
                await client.aclose()

    def key(self, suffix: str) -> str:
        """The full Redis key of ``suffix``, e.g. ``duoli:account:a1``."""
        return f"{self.prefix}:{suffix}"

    async def write(
        self,
        *,
        alerts: Sequence[Mapping[str, Any]] = (),
        hashes: Mapping[str, Fields] = _NO_HASHES,
        counts: Counts = _NO_COUNTS,
    ) -> int:
        """Write alerts, hashes and counter increments in one pipeline; returns how many
        alerts were new."""
        return await self._write([_Alert.of(alert) for alert in alerts], hashes, counts)

    async def _write(
        self, alerts: Sequence[_Alert], hashes: Mapping[str, Fields], counts: Counts = _NO_COUNTS
    ) -> int:
        async with self._round_trip(f"cannot write to Redis at {redact(self.url)}"):
            try:
                results = await self._pipeline(alerts, hashes, counts)
            except redis_errors.NoScriptError:
                # Redis restarted or SCRIPT FLUSH ran; alerts and hashes are idempotent, so
                # they are replayed whole. The counters were applied: a pipeline runs every
                # command, and a missing script fails only its own.
                self._sha = await self._client.script_load(_ADD_ALERT)
                results = await self._pipeline(alerts, hashes, _NO_COUNTS)
        return sum(results[: len(alerts)])

    async def _pipeline(
        self, alerts: Sequence[_Alert], hashes: Mapping[str, Fields], counts: Counts
    ) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for alert in alerts:
            keys = (self.key(f"alert:{alert.alert_id}"), self.key("alerts"))
            args = (alert.data, str(self.alerts_maxlen), alert.alert_id, *alert.fields)
            pipe.evalsha(self._sha, len(keys), *keys, *args)
        for suffix, fields in hashes.items():
            if fields:  # HSET without fields is a Redis error, and a no-op anyway
                mapping: dict[Any, Any] = dict(fields)
                pipe.hset(self.key(suffix), mapping=mapping)
        for suffix, amounts in counts.items():
            for name, amount in amounts.items():
                pipe.hincrby(self.key(suffix), name, amount)
        results: list[Any] = await pipe.execute()
        return results

    async def read_hash(self, suffix: str) -> dict[str, str]:
        """All fields of one hash; empty when it does not exist."""
        async with self._round_trip(f"cannot read {self.key(suffix)!r}"):
            # decode_responses=True: Redis answers str, not bytes.
            return cast(dict[str, str], await self._client.hgetall(self.key(suffix)))

    async def read_hashes(self, suffixes: Sequence[str]) -> list[dict[str, str]]:
        """Several hashes in one pipeline, in the order asked."""
        pipe = self._client.pipeline(transaction=False)
        for suffix in suffixes:
            pipe.hgetall(self.key(suffix))
        async with self._round_trip(f"cannot read {len(suffixes)} hashes"):
            found: list[dict[str, str]] = await pipe.execute()
            return found


class BufferedRedisSink:
    """Buffers alerts, hash updates and counter increments from stream agents and writes
    them in batches.

    ``put_*`` and ``increment`` never block the agent; a background task flushes every
    ``max_delay`` seconds, or as soon as ``max_items`` are pending. While Redis is down the
    items wait and the flush is retried with backoff; past ``max_pending`` items the
    oldest hash updates are dropped (Redis is rebuilt from Kafka), alerts and counters
    never are (increments to one hash are summed, so they stay few). Call it from the
    event loop.
    """

    def __init__(
        self,
        store: RedisStore,
        max_delay: float = 0.01,
        max_items: int = 500,
        *,
        max_pending: int = 100_000,
    ) -> None:
        self.store = store
        self.max_delay = max_delay
        self.max_items = max_items
        self.max_pending = max_pending
        self._alerts: list[_Alert] = []
        self._hashes: _HashBuffer = {}
        self._counts: _CountBuffer = {}
        self._dropped = 0
        self._ready = asyncio.Event()
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Alerts, hashes and counted hashes waiting to be written."""
        return len(self._alerts) + len(self._hashes) + len(self._counts)

    async def start(self) -> None:
        """Start the background flusher."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="duoli-redis-sink")

    async def stop(self) -> None:
        """Stop the flusher and write what is pending; StoreError if that last write fails."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()

    def put_alert(self, alert: Mapping[str, Any]) -> None:
        """Queue an alert; raises at once if it has no alert_id or is not JSON."""
        self._alerts.append(_Alert.of(alert))
        self._added()

    def put_hash(self, suffix: str, fields: Fields) -> None:
        """Queue fields for ``{prefix}:{suffix}``; later fields for the same hash win."""
        _check_fields(suffix, fields)
        merged = {**self._hashes.pop(suffix, {}), **fields}
        self._hashes[suffix] = merged  # re-inserted: dict order is the age of the last update
        self._added()

    def increment(self, suffix: str, name: str, amount: int = 1) -> None:
        """Queue ``HINCRBY {prefix}:{suffix} name amount``; increments are summed meanwhile."""
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise TypeError(f"hash {suffix!r}: an increment must be an int, got {amount!r}")
        fields = self._counts.setdefault(suffix, {})
        fields[name] = fields.get(name, 0) + amount
        self._added()

    def _added(self) -> None:
        self._trim()
        self._ready.set()
        if self.pending >= self.max_items:
            self._full.set()

    def _trim(self) -> None:
        while self.pending > self.max_pending and self._hashes:
            del self._hashes[next(iter(self._hashes))]
            if self._dropped == 0:
                log.warning("Redis is behind: dropping the oldest hash updates")
            self._dropped += 1

    async def flush(self) -> None:
        """Write everything pending in one ``RedisStore.write``; on failure nothing is lost."""
        async with self._lock:  # batches land in order, so an older hash never wins
            alerts, hashes, counts = self._alerts, self._hashes, self._counts
            self._alerts, self._hashes, self._counts = [], {}, {}
            if not alerts and not hashes and not counts:
                return
            try:
                await self.store._write(alerts, hashes, counts)
            except BaseException:
                self._restore(alerts, hashes, counts)
                raise
        self._report_drops()

    def _restore(self, alerts: list[_Alert], hashes: _HashBuffer, counts: _CountBuffer) -> None:
        """Put a failed batch back in front of what arrived meanwhile."""
        self._alerts[:0] = alerts
        newer, self._hashes = self._hashes, hashes
        for suffix, fields in newer.items():
            self.put_hash(suffix, fields)
        newer_counts, self._counts = self._counts, counts
        for suffix, amounts in newer_counts.items():
            for name, amount in amounts.items():
                self.increment(suffix, name, amount)
        self._trim()

    def _report_drops(self) -> None:
        if self._dropped:
            log.warning("Redis caught up; %d hash updates were dropped meanwhile", self._dropped)
            self._dropped = 0

    async def _run(self) -> None:
        backoff = self.max_delay
        while True:
            await self._next_batch()
            try:
                await self.flush()
            except StoreError as exc:
                backoff = min(max(backoff * 2, 0.05), 5.0)
                log.warning("Redis write failed, retry in %.2fs: %s", backoff, exc)
                self._ready.set()
                await asyncio.sleep(backoff)
            except Exception:
                log.exception("the Redis sink stopped flushing; stop() will raise this")
                raise
            else:
                backoff = self.max_delay

    async def _next_batch(self) -> None:
        """Wait for a first item, then up to ``max_delay`` for the batch to fill."""
        await self._ready.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._full.wait(), self.max_delay)
        self._ready.clear()
        self._full.clear()
