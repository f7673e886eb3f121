"""Redis rebuilt from Kafka: Redis is a serving store, the topics are the record.

What the workers write to Redis comes back from the topics that hold it:

- every alert of the alerts topic: the stream in ``created_at`` order, trimmed as the
  workers trim it, and an alert already in Redis is not added again;
- each account's hash, from its state in the accounts changelog, as of its partition's
  clock, with the model version for that moment from the models topic;
- each merchant's day buckets (merchants changelog) and each partition's clock.

Not rebuilt: the rule statistics counters, operational counts that start again from zero,
and the alert workflow (acknowledgements, assignments, resolutions), which lives in Redis
only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

from faust.serializers import codecs

from connectors.kafka_admin import Record, consume_all, existing_topics
from connectors.redis_store import RedisStore
from duoli.engine import AccountEngine
from duoli.rule_stats import CLOCKS_KEY, clock_fields
from duoli.settings import Settings
from rules import load_rules
from rules.control import Controls
from streams.app import create_app
from streams.models import ModelFollower
from streams.processing import merchant_hash
from streams.tables import define_tables
from streams.topics import TopicNames

__all__ = ["Rebuilt", "rebuild_redis", "summary"]

Reader = Callable[[str], list[Record]]

CHUNK = 1000  # writes per Redis pipeline
READ_TIMEOUT = 120.0  # seconds to read one topic to its end


@dataclass(frozen=True)
class Rebuilt:
    alerts: int  # alerts on the topic
    new_alerts: int  # of those, missing from Redis before
    accounts: int
    merchants: int
    partitions: int  # clocks


class _Record(NamedTuple):
    """A record as the model follower reads it."""

    key: bytes | None
    value: bytes
    offset: int


async def rebuild_redis(settings: Settings, url: str) -> Rebuilt:
    """Write back to Redis everything the topics at ``url`` hold for it."""
    names = TopicNames.of(settings)
    tables = define_tables(create_app(settings, url), settings)
    read = partial(_read, url, existing_topics(url))
    clocks = {int(key): float(at) for key, at in _table(read, tables.clocks).items()}
    states = _table(read, tables.accounts)
    merchants = _table(read, tables.merchants)
    alerts = sorted(
        (json.loads(value) for _, value in read(names.alerts)),
        key=lambda alert: (str(alert.get("created_at")), str(alert.get("alert_id"))),
    )
    controls = Controls(load_rules(settings.rules_path))
    engine = AccountEngine(settings, controls, _models(read, names))
    hashes = {
        **{
            f"account:{account_id}": engine.account_view(
                state, max(state.latest_at, clocks.get(state.partition, 0.0))
            )
            for account_id, state in states.items()
        },
        **{
            merchant_hash(settings.topic_prefix, merchant): {"buckets": buckets}
            for merchant, buckets in merchants.items()
        },
        CLOCKS_KEY: clock_fields(sorted(clocks.items())),
    }
    new_alerts = await _write(settings, alerts, hashes)
    return Rebuilt(len(alerts), new_alerts, len(states), len(merchants), len(clocks))


async def _write(settings: Settings, alerts: list[Any], hashes: dict[str, Any]) -> int:
    """Alerts, then hashes, a pipeline per chunk; how many alerts were new."""
    store = RedisStore(settings.redis_url, settings.redis_prefix, settings.alerts_maxlen)
    await store.start()
    try:
        new_alerts = 0
        for chunk in _chunks(alerts):
            new_alerts += await store.write(alerts=chunk)
        for keys in _chunks(list(hashes)):
            await store.write(hashes={key: hashes[key] for key in keys})
        return new_alerts
    finally:
        await store.close()


def _read(url: str, existing: set[str], topic: str) -> list[Record]:
    """Every record of ``topic``; none if nothing ever created it (nothing was written)."""
    return consume_all(url, topic, READ_TIMEOUT) if topic in existing else []


def _table(read: Reader, table: Any) -> dict[Any, Any]:
    """A table's latest value per key, read from its changelog; a tombstone deletes."""
    found: dict[Any, Any] = {}
    for key, value in read(table.changelog_topic.get_topic_name()):
        decoded = codecs.loads(table.key_serializer, key or b"null")
        if value is None:
            found.pop(decoded, None)
        else:
            found[decoded] = codecs.loads(table.value_serializer, value)
    return found


def _models(read: Reader, names: TopicNames) -> ModelFollower:
    """The model versions the topic holds, picked by time as the workers pick them."""
    models = ModelFollower("", names.models)  # never started: it only holds and picks
    records = read(names.models)
    models.apply([_Record(key, value, offset) for offset, (key, value) in enumerate(records)])
    return models


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def summary(rebuilt: Rebuilt) -> Iterable[str]:
    yield f"alerts: {rebuilt.alerts} on the topic, {rebuilt.new_alerts} were missing from Redis"
    yield f"accounts: {rebuilt.accounts} hashes, as of their partition's clock"
    yield f"merchants: {rebuilt.merchants} hashes; clocks: {rebuilt.partitions} partitions"
    yield "not rebuilt: rule statistics counters, and the alert workflow (Redis only)"
