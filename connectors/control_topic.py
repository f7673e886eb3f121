"""The control and audit topics: read the analysts' controls, publish their changes.

Blocking tool calls over :mod:`connectors.kafka_admin`, for the ``duoli rules`` and
``duoli lists`` commands and for workers at start-up. Both topics have one partition, so
their records are read in the order they were written.

Every change is written twice: first its audit record (who, when, why, the value it
replaced), then the control record. A crash in between leaves an audited change that
never took effect, never a change nobody can account for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from connectors.kafka_admin import TopicSpec, consume_all, ensure_topics, produce
from duoli.settings import Settings
from rules.control import ControlError, ControlState
from rules.control_ops import Change, audit_record, latest_values

if TYPE_CHECKING:
    from streams.topics import TopicNames

__all__ = [
    "control_specs",
    "fold",
    "prepare_control_topics",
    "publish",
    "read_audit",
    "read_control",
    "read_records",
]

log = logging.getLogger(__name__)

ControlRecord = tuple[str, bytes | None]


def control_specs(settings: Settings) -> list[TopicSpec]:
    from streams.topics import TopicNames, topic_specs  # the streams package loads Faust

    names = TopicNames.of(settings)
    return [spec for spec in topic_specs(settings) if spec.name in (names.control, names.audit)]


def prepare_control_topics(url: str, settings: Settings) -> None:
    """Create the control and audit topics if missing; reading and publishing need them."""
    ensure_topics(url, control_specs(settings))


def read_records(url: str, names: TopicNames) -> list[ControlRecord]:
    """Every control record in topic order, keys decoded; a record without a key is skipped."""
    records: list[ControlRecord] = []
    for key, value in consume_all(url, names.control):
        if key is None:
            log.warning("control record without a key skipped")
            continue
        records.append((key.decode("utf-8", "replace"), value))
    return records


def fold(records: Sequence[ControlRecord]) -> ControlState:
    """The records folded in order; one that is refused is skipped with a warning."""
    state = ControlState()
    for key, value in records:
        try:
            state.apply(key, value)
        except ControlError as error:
            log.warning("skipped: %s", error)
    return state


def read_control(url: str, names: TopicNames) -> ControlState:
    return fold(read_records(url, names))


def read_audit(url: str, names: TopicNames) -> list[dict[str, Any]]:
    """Every audit record, oldest first; one that is not a JSON object is skipped."""
    audit = []
    for _, value in consume_all(url, names.audit):
        record = _json_object(value)
        if record is None:
            log.warning("audit record that is not a JSON object skipped")
            continue
        audit.append(record)
    return audit


def _json_object(value: bytes | None) -> dict[str, Any] | None:
    try:
        record = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def publish(url: str, names: TopicNames, changes: Sequence[Change]) -> None:
    """Audit every change, then apply it; ``previous`` is read from the control topic now."""
    if not changes:
        return
    latest = latest_values(read_records(url, names))
    audits = []
    for change in changes:
        audits.append(audit_record(change, latest.get(change.key)))
        latest[change.key] = change.value
    keys = [change.key.encode() for change in changes]
    produce(url, names.audit, [(k, orjson.dumps(a)) for k, a in zip(keys, audits, strict=True)])
    values = [orjson.dumps(change.value) for change in changes]
    produce(url, names.control, list(zip(keys, values, strict=True)))
