"""``duoli decisions tail`` and ``duoli ledger verify``: the credit decisions and their ledger."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from duoli.settings import Settings, load_settings

__all__ = ["decision_line", "decisions", "ledger"]


def _broker(settings: Settings) -> str:
    if not settings.kafka_url:
        raise click.UsageError("this command reads the cluster: set DUOLI_KAFKA_URL")
    return settings.kafka_url


def decision_line(record: dict[str, Any]) -> str:
    """One decision for a person to read.

    >>> decision_line({"effective_at": "2026-01-01T00:00:00Z", "account_id": "a1",
    ...     "action": "increase", "old_limit": 5000.0, "new_limit": 6000.0, "old_apr": 0.12,
    ...     "new_apr": 0.12, "frozen": False, "reasons": ["ON_TIME_STREAK"],
    ...     "decision_id": "d1"}).split("  ")
    ['2026-01-01T00:00:00Z', 'a1', 'increase', 'limit 5000 -> 6000', 'apr 0.1200 -> 0.1200', \
'ON_TIME_STREAK', '[d1]']
    """
    frozen = "  FROZEN" if record.get("frozen") else ""
    return (
        f"{record['effective_at']}  {record['account_id']}  {record['action']}  "
        f"limit {record['old_limit']:.0f} -> {record['new_limit']:.0f}  "
        f"apr {record['old_apr']:.4f} -> {record['new_apr']:.4f}{frozen}  "
        f"{','.join(record['reasons'])}  [{record['decision_id']}]"
    )


@click.group()
def decisions() -> None:
    """Credit decisions: the topic the limit-adjustment service applies."""


@decisions.command()
@click.option("--json", "as_json", is_flag=True, help="Print each record as raw JSON.")
@click.option("--from-beginning", is_flag=True, help="Start with the oldest decision.")
@click.option("--count", type=int, help="Stop after this many decisions.")
def tail(as_json: bool, from_beginning: bool, count: int | None) -> None:
    """Follow the decisions topic live, one line per decision (Ctrl-C stops)."""
    from connectors.kafka_admin import follow
    from streams.topics import TopicNames

    settings = load_settings()
    topic = TopicNames.of(settings).decisions
    if count is not None and count <= 0:
        return
    for shown, (_, value) in enumerate(follow(_broker(settings), topic, from_beginning), 1):
        record = json.loads(value)
        click.echo(json.dumps(record, sort_keys=True) if as_json else decision_line(record))
        sys.stdout.flush()
        if count is not None and shown >= count:
            break


@click.group()
def ledger() -> None:
    """The hash-chained ledger of every credit decision and alert."""


@ledger.command()
@click.option("--topic", help="Check this topic instead of DUOLI_TOPIC_PREFIX.ledger.")
def verify(topic: str | None) -> None:
    """Check the whole chain: OK with the entry count, or the first bad entry (exit 1)."""
    from connectors.kafka_admin import consume_all
    from duoli.ledger import verify as check
    from streams.topics import TopicNames

    settings = load_settings()
    name = topic or TopicNames.of(settings).ledger
    entries = [_entry(value) for _, value in consume_all(_broker(settings), name, timeout=120.0)]
    verdict = check(entries)
    if verdict.ok:
        click.echo(f"OK: {verdict.count} entries in {name}, every link holds")
        return
    click.echo(
        f"BROKEN at entry {verdict.index} (seq {verdict.seq}): {verdict.problem}: "
        f"{verdict.detail}; the {verdict.count} entries before it hold"
    )
    sys.exit(1)


def _entry(value: bytes) -> Any:
    """An entry as stored; a record that is not JSON is kept, and verify calls it malformed."""
    try:
        return json.loads(value)
    except ValueError:
        return value.decode("utf-8", errors="backslashreplace")
