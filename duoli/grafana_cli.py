"""``duoli grafana push|follow``: Duoli's dashboards and changes in an operator's Grafana.

``push`` creates or overwrites the dashboards of ``deploy/grafana/dashboards``. ``follow``
reads the audit topic (every ``duoli rules push`` and rollback) and the models topic (the
trainer's status, which lists its recent promotions) and posts one annotation per change,
at the event time the record carries.

Every change has a unique tag, ``push:<id>`` or ``promotion:<champion>-<epoch>``, and the
follower asks Grafana for it before posting: a restart, even ``--from-beginning``, posts
nothing twice. Grafana failing or unreachable: the follower warns and retries with backoff.
A record it cannot read is logged and skipped. The broker failing stops it (exit 2); being
idempotent, it can simply be restarted.

A push has no id of its own: its audit records (one per rule) share author, time and note,
so those make the id. They are written together, so the follower gathers them until the
audit topic has been quiet for ``QUIET_SECONDS``.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import click
import orjson

from duoli.errors import ConfigError, DuoliError
from duoli.settings import Settings, load_settings
from rules.control import ControlError, parse_time, rule_key

if TYPE_CHECKING:
    from grafana_client import GrafanaApi

__all__ = [
    "MalformedRecord",
    "ModelPromotion",
    "RulePush",
    "changes_for",
    "coalesce",
    "follow_changes",
    "grafana",
]

log = logging.getLogger(__name__)

AUDIT, MODELS = "audit", "models"
QUIET_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 60.0

#: A record of a followed topic: which one (``AUDIT`` or ``MODELS``), its key and value.
Item = tuple[str, bytes | None, bytes | None]


class MalformedRecord(DuoliError):
    """A record of the audit or models topic that does not read as what Duoli writes."""


@dataclass(frozen=True)
class RulePush:
    """One ``duoli rules push`` (or rollback): who, when, why, each rule's new version."""

    key: str
    author: str
    note: str
    at: datetime
    versions: Mapping[str, int]

    def merged(self, other: RulePush) -> RulePush:
        return replace(self, versions={**self.versions, **other.versions})


@dataclass(frozen=True)
class ModelPromotion:
    """The trainer made ``champion`` the fraud model in place of ``previous``."""

    key: str
    champion: str
    previous: str
    labels: int
    at: datetime


Change = RulePush | ModelPromotion


# -- which annotations a record calls for (pure) ----------------------------------------------


def changes_for(source: str, key: bytes | None, value: bytes | None) -> list[Change]:
    """The changes one record announces: the push of an audit record of a rule, the
    promotions of a trainer status; none for any other record.

    >>> value = orjson.dumps({"key": "rule:big", "author": "al", "at": "2026-03-01T12:30:00Z",
    ...                       "note": "n", "new": {"rule": {"id": "big", "version": 2}}})
    >>> [push] = changes_for(AUDIT, b"rule:big", value)
    >>> push.key, dict(push.versions), push.at.isoformat()
    ('push:37196d9973e9', {'big': 2}, '2026-03-01T12:30:00+00:00')
    >>> changes_for(MODELS, b"snapshot:1", b"not json")
    []
    """
    from streams.models import STATUS_KEY  # the streams package loads Faust: not for --help

    if source == AUDIT:
        push = rule_push(_json_object(value))
        return [] if push is None else [push]
    if source == MODELS and key == STATUS_KEY:
        return list(promotions(_json_object(value)))
    return []


def push_key(author: str, at: str, note: str) -> str:
    """The unique tag of a push, from what its audit records share."""
    digest = hashlib.sha256(orjson.dumps([author, at, note])).hexdigest()
    return f"push:{digest[:12]}"


def rule_push(record: Mapping[str, Any]) -> RulePush | None:
    """The push an audit record is part of, with its one rule; None for a list or snooze."""
    if not str(record.get("key", "")).startswith(rule_key("")):
        return None
    try:
        rule = record["new"]["rule"]
        author, at, note = str(record["author"]), str(record["at"]), str(record.get("note", ""))
        versions = {str(rule["id"]): _count(rule["version"])}
        when = _moment(parse_time(at))
    except (KeyError, TypeError, ValueError, ControlError) as exc:
        raise MalformedRecord(f"audit record {record.get('key')!r}: {exc!r}") from exc
    return RulePush(push_key(author, at, note), author, note, when, versions)


def promotions(status: Mapping[str, Any]) -> list[ModelPromotion]:
    """Every promotion a trainer status lists (its last few, oldest first)."""
    try:
        return [_promotion(promotion) for promotion in status["fraud"]["promotions"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedRecord(f"trainer status: {exc!r}") from exc


def _promotion(promotion: Mapping[str, Any]) -> ModelPromotion:
    champion, previous = str(promotion["champion"]), str(promotion["previous"])
    at = promotion["at"]
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise ValueError(f"promotion time {at!r} is not a number")
    key = f"promotion:{champion}-{int(at)}"
    return ModelPromotion(key, champion, previous, _count(promotion["labels"]), _moment(at))


def _json_object(value: bytes | None) -> dict[str, Any]:
    try:
        record = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError as exc:
        raise MalformedRecord(f"not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise MalformedRecord(f"not a JSON object: {str(record)[:80]!r}")
    return record


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a whole number")
    return value


def _moment(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def coalesce(changes: Iterable[Change | None]) -> Iterator[Change]:
    """The changes, the parts of each rule push merged into one; ``None`` marks a quiet
    moment, by which the push being gathered is complete. Promotions pass straight on.

    >>> def part(rule_id, version):
    ...     return RulePush("push:1", "al", "", _moment(0), {rule_id: version})
    >>> parts = [part("a", 2), part("b", 1), None, part("a", 3)]
    >>> [dict(push.versions) for push in coalesce(parts)]
    [{'a': 2, 'b': 1}, {'a': 3}]
    """
    pending: RulePush | None = None
    for change in changes:
        if isinstance(change, ModelPromotion):
            yield change
        elif change is not None and pending is not None and change.key == pending.key:
            pending = pending.merged(change)
        else:
            if pending is not None:
                yield pending
            pending = change
    if pending is not None:
        yield pending


# -- the follower -----------------------------------------------------------------------------


def follow_changes(
    api: GrafanaApi,
    items: Iterable[Item | None],
    report: Callable[[Change, bool], None] = lambda change, posted: None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Annotate each change the records call for, unless Grafana has it; returns when
    ``items`` end (``None`` is a quiet moment). ``report`` hears of each change and
    whether it was posted."""
    done: set[str] = set()  # a status repeats its promotions: ask Grafana once per run
    for change in coalesce(_changes(items)):
        if change.key not in done:
            report(change, _annotate_once(api, change, sleep))
            done.add(change.key)


def _changes(items: Iterable[Item | None]) -> Iterator[Change | None]:
    for item in items:
        if item is None:
            yield None
            continue
        try:
            yield from changes_for(*item)
        except MalformedRecord as error:
            log.warning("%s record skipped: %s", item[0], error)


def _annotate_once(api: GrafanaApi, change: Change, sleep: Callable[[float], None]) -> bool:
    """Post the change's annotation unless Grafana has it (True when posted); until
    Grafana answers, warn and retry with a doubling wait."""
    from connectors import grafana

    delay = 1.0
    while True:
        try:
            if grafana.is_annotated(api, change.key):
                return False
            _post(api, change)
            return True
        except grafana.GrafanaError as error:
            log.warning("%s; %s retried in %.0f s", error, change.key, delay)
            sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)


def _post(api: GrafanaApi, change: Change) -> None:
    from connectors import grafana

    if isinstance(change, RulePush):
        grafana.annotate_rule_push(
            api, change.versions, change.author, change.note, change.at, key=change.key
        )
    else:
        grafana.annotate_model_promotion(
            api, change.champion, change.previous, change.labels, change.at, key=change.key
        )


def _records(url: str, topics: Mapping[str, str], from_beginning: bool) -> Iterator[Item | None]:
    """The records of the topics as they arrive (one reader thread each), and ``None``
    whenever none came for ``QUIET_SECONDS``; a reader's error is raised here."""
    arrived: queue.Queue[Item | Exception] = queue.Queue(maxsize=1000)
    for source, topic in topics.items():
        reader = threading.Thread(
            target=_read, args=(url, source, topic, from_beginning, arrived), daemon=True
        )
        reader.start()
    while True:
        try:
            item = arrived.get(timeout=QUIET_SECONDS)
        except queue.Empty:
            yield None
            continue
        if isinstance(item, Exception):
            raise item
        yield item


def _read(
    url: str, source: str, topic: str, from_beginning: bool, arrived: queue.Queue[Any]
) -> None:
    from connectors.kafka_admin import follow

    try:
        for key, value in follow(url, topic, from_beginning):
            arrived.put((source, key, value))
    except Exception as error:  # handed to the main thread, which stops
        arrived.put(error)


# -- commands ---------------------------------------------------------------------------------


def _connector() -> ModuleType:
    try:
        from connectors import grafana as connector
    except ImportError as exc:  # the extra is not installed
        raise ConfigError(str(exc)) from exc
    return connector


@contextmanager
def _connected(settings: Settings) -> Iterator[tuple[ModuleType, GrafanaApi, str]]:
    """The connector, a client of DUOLI_GRAFANA_URL with DUOLI_GRAFANA_TOKEN, and the URL."""
    if not settings.grafana_url:
        raise ConfigError("set DUOLI_GRAFANA_URL to the Grafana to write to (http://host:3000)")
    connector = _connector()
    token = settings.grafana_token.get_secret_value() if settings.grafana_token else None
    api = connector.connect(settings.grafana_url, token)
    try:
        yield connector, api, settings.grafana_url
    finally:
        connector.close(api)


@click.group()
def grafana() -> None:
    """Duoli's dashboards and change annotations in the Grafana at DUOLI_GRAFANA_URL."""


@grafana.command()
@click.option("--message", default="pushed by duoli", show_default=True, help="Version note.")
def push(message: str) -> None:
    """Create or overwrite the dashboards of deploy/grafana/dashboards; print their URLs."""
    with _connected(load_settings()) as (connector, api, base):
        for path in connector.push_dashboards(api, message=message):
            click.echo(urljoin(base, path))


@grafana.command()
@click.option(
    "--from-beginning", is_flag=True,
    help="Read both topics from their start; what Grafana already has is skipped.",
)  # fmt: skip
def follow(from_beginning: bool) -> None:
    """Annotate each rule push and model promotion as it happens (Ctrl-C stops)."""
    from connectors.kafka_admin import ensure_topics
    from streams.topics import TopicNames, topic_specs

    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(message)s")
    if not settings.kafka_url:
        raise ConfigError("set DUOLI_KAFKA_URL to the broker the workers use")
    names = TopicNames.of(settings)
    topics = {AUDIT: names.audit, MODELS: names.models}
    specs = [spec for spec in topic_specs(settings) if spec.name in topics.values()]
    with _connected(settings) as (_, api, _):
        ensure_topics(settings.kafka_url, specs)
        follow_changes(api, _records(settings.kafka_url, topics, from_beginning), _echo)


def _echo(change: Change, posted: bool) -> None:
    state = "annotated" if posted else "already annotated"
    click.echo(f"{state} {change.key} at {change.at.isoformat()}")
