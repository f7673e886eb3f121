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
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import hiredis
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from duoli.errors import StoreError

__all__ = ["RedisStore", "RedisWrites", "encode_alert", "glob_escape"]

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


def glob_escape(text: str) -> str:
    """``text`` matched literally in a ``SCAN MATCH`` pattern.

    >>> glob_escape("duoli*[1]")
    'duoli\\\\*\\\\[1\\\\]'
    """
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


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

    async def apply(self, writes: RedisWrites) -> int:
        """Write a batch's :class:`RedisWrites` in one pipeline; returns how many alerts
        were new."""
        if not writes:
            return 0
        return await self._write(writes.alerts, writes.hashes, writes.counts)

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


@dataclass
class RedisWrites:
    """One batch's Redis writes, collected while it is processed and written by
    :meth:`RedisStore.apply` only once the batch's Kafka records are stored, so Redis never
    holds what the topics may yet lose. Later fields for a hash win; increments to a field
    are summed. Bad values fail here, at the caller."""

    alerts: list[_Alert] = field(default_factory=list)
    hashes: _HashBuffer = field(default_factory=dict)
    counts: _CountBuffer = field(default_factory=dict)

    def __len__(self) -> int:
        """Alerts, hashes and counted hashes to write."""
        return len(self.alerts) + len(self.hashes) + len(self.counts)

    def put_alert(self, alert: Mapping[str, Any]) -> None:
        """Add an alert; raises at once if it has no alert_id or is not JSON."""
        self.alerts.append(_Alert.of(alert))

    def put_hash(self, suffix: str, fields: Fields) -> None:
        """Set fields of ``{prefix}:{suffix}``."""
        _check_fields(suffix, fields)
        self.hashes.setdefault(suffix, {}).update(fields)

    def increment(self, suffix: str, name: str, amount: int = 1) -> None:
        """Add ``HINCRBY {prefix}:{suffix} name amount``."""
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise TypeError(f"hash {suffix!r}: an increment must be an int, got {amount!r}")
        fields = self.counts.setdefault(suffix, {})
        fields[name] = fields.get(name, 0) + amount
