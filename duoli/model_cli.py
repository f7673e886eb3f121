"""``duoli models status``: what the trainer last published, read from the models topic."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import click

from duoli.errors import ConfigError
from duoli.settings import load_settings

__all__ = ["models", "read_status"]


def read_status(url: str, topic: str) -> dict[str, Any] | None:
    """The trainer's last status record, or None before its first model version."""
    from connectors.kafka_admin import consume_all
    from streams.models import STATUS_KEY

    statuses = [value for key, value in consume_all(url, topic) if key == STATUS_KEY]
    return json.loads(statuses[-1]) if statuses else None


@click.group()
def models() -> None:
    """The online models: versions, labels, metrics, promotions."""


@models.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    """Model versions, label counts, pending-store size, prequential metrics, promotions."""
    from connectors.kafka_admin import ensure_topics
    from streams.topics import TopicNames, topic_specs

    settings = load_settings()
    if not settings.kafka_url:
        raise ConfigError("set DUOLI_KAFKA_URL to the broker the workers use")
    ensure_topics(settings.kafka_url, topic_specs(settings))
    found = read_status(settings.kafka_url, TopicNames.of(settings).models)
    if as_json:
        click.echo(json.dumps(found, indent=2, sort_keys=True))
    elif found is None:
        click.echo("no model version yet: the trainer has not closed a day")
    else:
        click.echo(_describe(found))


def _describe(found: Mapping[str, Any]) -> str:
    fraud, pd, pending = found["fraud"], found["delinquency"], found["pending"]
    lines = [
        f"trained through {found['trained_through']}",
        f"fraud: champion {fraud['champion']}, {fraud['labels']} labels "
        f"({fraud['positives']} frauds)",
        *(_candidate_line(name, figures) for name, figures in fraud["candidates"].items()),
        f"delinquency: {pd['labels']} outcomes ({pd['positives']} defaults), "
        f"ROC AUC {_figure(pd.get('roc_auc'))}",
        f"pending store: {pending['pending']} waiting, {pending['resolved']} resolved, "
        f"limit {pending['limit']}, {pending['evicted']} evicted, ~{pending['bytes']:,} bytes",
        f"counters: {found['counters']}",
    ]
    for promotion in fraud["promotions"]:
        day = datetime.fromtimestamp(promotion["at"], UTC).date()
        lines.append(
            f"promoted {promotion['champion']} over {promotion['previous']} on {day} "
            f"after {promotion['labels']} labels: {promotion['metrics']}"
        )
    return "\n".join(lines)


def _candidate_line(name: str, figures: Mapping[str, Any]) -> str:
    return (
        f"  {name} ({figures.get('role', '?')}): ROC AUC {_figure(figures.get('roc_auc'))}, "
        f"average precision {_figure(figures.get('average_precision'))} over "
        f"{figures.get('window_labels', 0)} labels"
    )


def _figure(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"
