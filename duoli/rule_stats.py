"""Live per-rule statistics in Redis: hits, shadow and snoozed hits, errors and precision.

Workers add to counters as they score; analysts read them with :func:`read_rule_stats`.
One hash per rule, ``{prefix}:rule_stats:{rule_id}``:

- ``hits``, ``shadow_hits``, ``snoozed_hits``, ``errors``: counters. ``hits`` counts the
  active hits that scored, as listed in ``rules_hit``; a snoozed hit counts only in
  ``snoozed_hits``, a shadow hit only in ``shadow_hits``;
- ``last_error`` (the message) and ``last_hit_at`` (event time, ISO 8601);
- ``hits:{day}`` and ``frauds:{day}`` (``day`` is the transaction's UTC date), for fraud
  rules on transactions: every transaction the rule matched, active, shadow or snoozed,
  and those of them later labelled fraud.

The hash ``{prefix}:rule_stats`` holds ``clock:{partition}``, each partition's event-time
clock; the latest of them is the clock precision is matured against. A day is matured
once all of it is older than the label maturity, and precision is confirmed frauds over
hits summed over matured days: recent hits still waiting for their labels are not
counted as false alarms.

Counters are added, not set, so a batch written again after a crash counts twice; these
are operational figures, and a backtest gives exact ones.

>>> activity = RuleActivity(86_400.0 * 3, hits=("r1",), shadow=("s1",), measured=("r1", "s1"))
>>> counters(activity)["rule_stats:s1"]
{'shadow_hits': 1, 'hits:1970-01-04': 1}
>>> latest(activity)["rule_stats:s1"]
{'last_hit_at': '1970-01-04T00:00:00Z'}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

import redis
from redis import exceptions as redis_errors

from connectors.redis_store import glob_escape
from duoli.errors import StoreError
from duoli.scoring import iso

__all__ = [
    "CLOCKS_KEY",
    "RuleActivity",
    "clock_fields",
    "counters",
    "latest",
    "read_rule_stats",
    "record",
    "rule_summary",
    "stats_key",
]

CLOCKS_KEY: Final = "rule_stats"
_DAY: Final = 86_400.0
_COUNTERS: Final = ("hits", "shadow_hits", "snoozed_hits", "errors")


def stats_key(rule_id: str) -> str:
    """The key (after the prefix) of one rule's statistics hash."""
    return f"{CLOCKS_KEY}:{rule_id}"


def day_label(at: float) -> str:
    """The UTC date of an event time, as the per-day fields name it."""
    return datetime.fromtimestamp(at, UTC).date().isoformat()


@dataclass(frozen=True, slots=True)
class RuleActivity:
    """What the rules did on one event, or which rules a fraud label credits.

    ``at`` is the event time, or for credits the labelled transaction's time;
    ``measured`` are the fraud rules that matched a transaction, whose precision the
    labels will measure.
    """

    at: float
    hits: tuple[str, ...] = ()
    shadow: tuple[str, ...] = ()
    snoozed: tuple[str, ...] = ()
    errors: tuple[tuple[str, str], ...] = ()
    frauds: tuple[str, ...] = ()
    measured: tuple[str, ...] = ()

    @property
    def matched(self) -> tuple[str, ...]:
        """Every rule whose expression held, whatever its mode or snooze."""
        return (*self.hits, *self.shadow, *self.snoozed)


def counters(activity: RuleActivity) -> dict[str, dict[str, int]]:
    """The counter increments one activity makes, by hash key."""
    found: dict[str, dict[str, int]] = {}
    for name, rule_ids in (
        ("hits", activity.hits),
        ("shadow_hits", activity.shadow),
        ("snoozed_hits", activity.snoozed),
        ("errors", [rule_id for rule_id, _ in activity.errors]),
    ):
        for rule_id in rule_ids:
            _add(found, rule_id, name)
    day = day_label(activity.at)
    for rule_id in activity.measured:
        _add(found, rule_id, f"hits:{day}")
    for rule_id in activity.frauds:
        _add(found, rule_id, f"frauds:{day}")
    return found


def _add(found: dict[str, dict[str, int]], rule_id: str, name: str) -> None:
    fields = found.setdefault(stats_key(rule_id), {})
    fields[name] = fields.get(name, 0) + 1


def latest(activity: RuleActivity) -> dict[str, dict[str, str]]:
    """The fields one activity overwrites: the last hit's time, the last error's message."""
    found: dict[str, dict[str, str]] = {}
    for rule_id in activity.matched:
        found.setdefault(stats_key(rule_id), {})["last_hit_at"] = iso(activity.at)
    for rule_id, message in activity.errors:
        found.setdefault(stats_key(rule_id), {})["last_error"] = message
    return found


def record(writes: Any, activity: RuleActivity) -> None:
    """Add one activity's writes to a batch's :class:`connectors.redis_store.RedisWrites`."""
    for suffix, fields in counters(activity).items():
        for name, amount in fields.items():
            writes.increment(suffix, name, amount)
    for suffix, values in latest(activity).items():
        writes.put_hash(suffix, values)


def clock_fields(clocks: Iterable[tuple[str | int, float]]) -> dict[str, float]:
    """``clock:{partition}`` fields of the ``rule_stats`` hash."""
    return {f"clock:{partition}": at for partition, at in clocks}


def rule_summary(
    rule_id: str, fields: Mapping[str, str], clock: float | None, maturity_days: float
) -> dict[str, Any]:
    """One rule's figures from its hash; precision is None until a hit day has matured."""
    matured_before = None if clock is None else clock - maturity_days * _DAY
    matured_hits = _sum_matured(fields, "hits:", matured_before)
    frauds = _sum_matured(fields, "frauds:", matured_before)
    return {
        "rule_id": rule_id,
        **{name: int(fields.get(name, 0)) for name in _COUNTERS},
        "last_error": fields.get("last_error"),
        "last_hit_at": fields.get("last_hit_at"),
        "matured_hits": matured_hits,
        "confirmed_frauds": frauds,
        "precision": frauds / matured_hits if matured_hits else None,
    }


def _sum_matured(fields: Mapping[str, str], prefix: str, matured_before: float | None) -> int:
    if matured_before is None:
        return 0
    return sum(
        int(value)
        for name, value in fields.items()
        if name.startswith(prefix) and _day_end(name[len(prefix) :]) <= matured_before
    )


def _day_end(label: str) -> float:
    start = datetime.combine(date.fromisoformat(label), datetime.min.time(), UTC)
    return start.timestamp() + _DAY


def read_rule_stats(
    redis_url: str, redis_prefix: str, maturity_days: float
) -> list[dict[str, Any]]:
    """Every rule with statistics, by id, with precision over the matured days."""
    try:
        with redis.Redis.from_url(redis_url, decode_responses=True) as client:
            clocks: dict[str, str] = client.hgetall(f"{redis_prefix}:{CLOCKS_KEY}")
            hashes = dict(_rule_hashes(client, redis_prefix))
    except (redis_errors.RedisError, ValueError) as exc:
        raise StoreError(f"cannot read the rule statistics: {exc}") from exc
    clock = max(
        (float(at) for name, at in clocks.items() if name.startswith("clock:")), default=None
    )
    return [
        rule_summary(rule_id, fields, clock, maturity_days)
        for rule_id, fields in sorted(hashes.items())
    ]


def _rule_hashes(client: redis.Redis, prefix: str) -> Iterator[tuple[str, dict[str, str]]]:
    start = f"{prefix}:{CLOCKS_KEY}:"
    keys = sorted(client.scan_iter(match=f"{glob_escape(start)}*", count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    for key, fields in zip(keys, pipe.execute(), strict=True):
        yield key[len(start) :], fields
