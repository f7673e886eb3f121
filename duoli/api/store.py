"""What the API reads and writes in Redis, translated into ``StoreError`` at this boundary.

Keys, after ``{prefix}:`` (``DUOLI_REDIS_PREFIX``):

- ``alerts`` (stream) and ``alert:{alert_id}`` (the alert's JSON), written by the workers;
- ``account:{account_id}`` (hash), written by the workers;
- ``rule_stats:{rule_id}`` (hash) and ``rule_stats`` (the partitions' clocks);
- ``alert_state:{alert_id}`` (hash: ``status``, ``assignee``, ``resolution``,
  ``updated_at``, ``updated_by``), written here; no hash means ``open``;
- ``alert_transitions:{alert_id}`` (list of JSON), every workflow step in order, with who,
  when, and the status before and after.

A workflow step is one Lua script: the status check and both writes cannot be split, so
two analysts resolving at once give one resolution and one 409.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from connectors.redis_store import glob_escape, redact
from duoli.errors import StoreError
from duoli.rule_stats import CLOCKS_KEY, rule_summary

__all__ = ["ApiStore", "StepRefused", "UnknownAlert", "WorkflowStep"]

_SCAN_CHUNK: Final = 500

# KEYS: alert JSON key, state hash, transitions list. ARGV: allowed statuses (space
# separated, padded), new status ('' keeps it), transition JSON, assignee ('' keeps),
# resolution ('' keeps). Returns {1, previous status}, {0, status} if refused, {-1} unknown.
_STEP: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, ''}
end
local status = redis.call('HGET', KEYS[2], 'status') or 'open'
if not string.find(ARGV[1], ' ' .. status .. ' ', 1, true) then
  return {0, status}
end
local to = ARGV[2]
if to == '' then to = status end
local entry = cjson.decode(ARGV[3])
entry['from_status'] = status
entry['to_status'] = to
redis.call('HSET', KEYS[2], 'status', to, 'updated_at', entry['at'], 'updated_by', entry['user'])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'assignee', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], 'resolution', ARGV[5]) end
redis.call('RPUSH', KEYS[3], cjson.encode(entry))
return {1, status}
"""


class UnknownAlert(LookupError):
    """No alert with this id in Redis."""


class StepRefused(Exception):
    """The alert's status does not allow the step; ``status`` is the current one."""

    def __init__(self, action: str, status: str) -> None:
        super().__init__(f"cannot {action} an alert that is {status}")
        self.action = action
        self.status = status


@dataclass(frozen=True)
class WorkflowStep:
    """One life-cycle action: the statuses it may start from and the one it leads to."""

    action: str
    allowed_from: tuple[str, ...]
    to_status: str | None = None


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except redis_errors.RedisError as exc:
        raise StoreError(f"{action}: {exc}") from exc


class ApiStore:
    """The API's Redis reads and workflow writes, on one asyncio client."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self._redis: aioredis.Redis | None = None

    def key(self, suffix: str) -> str:
        return f"{self.prefix}:{suffix}"

    @property
    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise StoreError("ApiStore.start() was not awaited")
        return self._redis

    async def start(self) -> None:
        """Make the client; Redis is not contacted until the first request."""
        try:
            self._redis = aioredis.from_url(self.url, decode_responses=True)
        except ValueError as exc:
            raise StoreError(f"invalid Redis URL {redact(self.url)}: {exc}") from exc

    async def close(self) -> None:
        client, self._redis = self._redis, None
        if client is not None:
            with _translated("cannot close the Redis connection"):
                await client.aclose()

    async def ping(self) -> bool:
        with _translated(f"cannot reach Redis at {redact(self.url)}"):
            return bool(await self._client.ping())

    # -- alerts ----------------------------------------------------------------------------

    async def alert_pages(
        self, matches: Mapping[str, str], scan_limit: int
    ) -> AsyncIterator[tuple[list[dict[str, Any]], bool]]:
        """Pages of alerts, newest first, whose stream fields equal ``matches``, reading at
        most ``scan_limit`` stream entries; each page says whether the stream ended there."""
        last = "+"
        read = 0
        while read < scan_limit:
            count = min(_SCAN_CHUNK, scan_limit - read)
            with _translated("cannot read the alerts stream"):
                raw = await self._client.xrevrange(self.key("alerts"), last, "-", count)
            entries = cast(list[tuple[str, dict[str, str]]], raw or [])
            read += len(entries)
            exhausted = len(entries) < count
            page = [
                _alert_json(fields.get("data", "{}"))
                for _, fields in entries
                if all(fields.get(name) == value for name, value in matches.items())
            ]
            yield page, exhausted
            if exhausted:
                return
            last = f"({entries[-1][0]}"  # exclusive: the next page starts below it

    async def last_alert_entry(self) -> str:
        """The id of the newest entry in the alerts stream, ``0-0`` if it is empty."""
        with _translated("cannot read the alerts stream"):
            raw = await self._client.xrevrange(self.key("alerts"), "+", "-", 1)
        entries = cast(list[tuple[str, dict[str, str]]], raw or [])
        return entries[0][0] if entries else "0-0"

    async def alerts_after(
        self, entry_id: str, block_ms: int, count: int = 100
    ) -> list[tuple[str, dict[str, Any]]]:
        """Alerts that entered the stream after ``entry_id``, with their entry ids, waiting
        up to ``block_ms`` for the first one (XREAD BLOCK); empty if none came."""
        with _translated("cannot read the alerts stream"):
            raw = await self._client.xread({self.key("alerts"): entry_id}, count, block_ms)
        streams = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], raw or [])
        return [
            (entry, _alert_json(fields.get("data", "{}")))
            for _, entries in streams
            for entry, fields in entries
        ]

    async def alert(self, alert_id: str) -> dict[str, Any]:
        with _translated(f"cannot read alert {alert_id!r}"):
            data = cast(str | None, await self._client.get(self.key(f"alert:{alert_id}")))
        if data is None:
            raise UnknownAlert(alert_id)
        return _alert_json(data)

    async def workflows(self, alert_ids: Sequence[str]) -> list[dict[str, str]]:
        """The workflow hashes of several alerts, in order; empty for an untouched alert."""
        pipe = self._client.pipeline(transaction=False)
        for alert_id in alert_ids:
            pipe.hgetall(self.key(f"alert_state:{alert_id}"))
        with _translated("cannot read alert states"):
            return cast(list[dict[str, str]], await pipe.execute())

    async def transitions(self, alert_id: str) -> list[dict[str, Any]]:
        with _translated(f"cannot read the transitions of {alert_id!r}"):
            raw = await self._client.lrange(self.key(f"alert_transitions:{alert_id}"), 0, -1)
        return [json.loads(entry) for entry in raw]

    async def step(
        self,
        alert_id: str,
        step: WorkflowStep,
        entry: Mapping[str, Any],
        *,
        assignee: str = "",
        resolution: str = "",
    ) -> str:
        """Apply one workflow step atomically; returns the status before it."""
        keys = [self.key(f"{name}:{alert_id}") for name in _STEP_KEYS]
        allowed = f" {' '.join(step.allowed_from)} "
        args = [allowed, step.to_status or "", json.dumps(dict(entry)), assignee, resolution]
        with _translated(f"cannot {step.action} alert {alert_id!r}"):
            outcome, status = await self._client.eval(_STEP, len(keys), *keys, *args)
        if outcome == -1:
            raise UnknownAlert(alert_id)
        if outcome == 0:
            raise StepRefused(step.action, str(status))
        return str(status)

    # -- accounts and rules ----------------------------------------------------------------

    async def account(self, account_id: str) -> dict[str, str]:
        with _translated(f"cannot read account {account_id!r}"):
            return cast(
                dict[str, str], await self._client.hgetall(self.key(f"account:{account_id}"))
            )

    async def rule_stats(self, maturity_days: float) -> dict[str, dict[str, Any]]:
        """Every rule with statistics, by id, summarised as ``duoli rules stats`` does."""
        start = self.key(f"{CLOCKS_KEY}:")
        with _translated("cannot read the rule statistics"):
            clocks = cast(dict[str, str], await self._client.hgetall(self.key(CLOCKS_KEY)))
            keys = sorted(
                [key async for key in self._client.scan_iter(f"{glob_escape(start)}*", 1000)]
            )
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            hashes = await pipe.execute()
        clock = max(
            (float(at) for name, at in clocks.items() if name.startswith("clock:")), default=None
        )
        return {
            key[len(start) :]: rule_summary(key[len(start) :], fields, clock, maturity_days)
            for key, fields in zip(keys, hashes, strict=True)
        }


_STEP_KEYS: Final = ("alert", "alert_state", "alert_transitions")


def _alert_json(data: str) -> dict[str, Any]:
    try:
        alert = json.loads(data)
    except ValueError as exc:
        raise StoreError(f"an alert in Redis is not JSON: {exc}") from exc
    if not isinstance(alert, dict):
        raise StoreError("an alert in Redis is not a JSON object")
    return alert
