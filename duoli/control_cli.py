"""``duoli rules push|list|history|rollback|snooze|unsnooze|stats`` and ``duoli lists``.

The analysts' run-time controls. Each command reads the control and audit topics of
``DUOLI_KAFKA_URL``, decides with the pure functions of :mod:`rules.control_ops`, and
publishes through :mod:`connectors.control_topic`; the workers pick the changes up from
the control topic.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from connectors import control_topic
from duoli.errors import ConfigError, RuleError
from duoli.settings import Settings, load_settings
from rules import Rule, RuleSet, load_rules
from rules import control_ops as ops
from rules.control import (
    LIST_KINDS,
    ControlError,
    ControlState,
    NamedList,
    Snooze,
    iso_time,
    parse_time,
    snooze_key,
)

if TYPE_CHECKING:
    from streams.topics import TopicNames

__all__ = ["RULE_COMMANDS", "lists"]

_NO_BROKER = (
    "set DUOLI_KAFKA_URL to the broker the workers use "
    "(an embedded broker would forget every change when the command exits)"
)


@dataclass(frozen=True)
class _Control:
    """The broker and topics a command works on."""

    settings: Settings
    url: str
    names: TopicNames

    def state(self) -> ControlState:
        return control_topic.read_control(self.url, self.names)

    def latest(self) -> dict[str, Any]:
        return ops.latest_values(control_topic.read_records(self.url, self.names))

    def audit(self) -> list[dict[str, Any]]:
        return control_topic.read_audit(self.url, self.names)

    def publish(self, changes: Sequence[ops.Change]) -> None:
        control_topic.publish(self.url, self.names, changes)

    def file_rules(self) -> RuleSet:
        return load_rules(self.settings.rules_path)


def _control() -> _Control:
    from streams.topics import TopicNames  # the streams package loads Faust: not for --help

    settings = load_settings()
    if not settings.kafka_url:
        raise ConfigError(_NO_BROKER)
    control_topic.prepare_control_topics(settings.kafka_url, settings)
    return _Control(settings, settings.kafka_url, TopicNames.of(settings))


def _author(given: str | None) -> str:
    author = (given or os.environ.get("DUOLI_USER", "")).strip()
    if not author:
        raise ControlError("who is making this change? pass --author NAME or set DUOLI_USER")
    return author


def _now() -> str:
    return iso_time(float(int(time.time())))  # people read it; the topic order orders changes


def _event_time(text: str | None) -> float | None:
    return None if text is None else parse_time(text)


def _effective(control: _Control, state: ControlState) -> dict[str, Rule]:
    return {rule.id: rule for rule in state.ruleset(control.file_rules().rules).rules}


def _applied(state: ControlState, changes: Iterable[ops.Change]) -> ControlState:
    """The state as the workers will fold it once ``changes`` are on the topic."""
    after = ControlState(dict(state.rules), dict(state.lists), dict(state.snoozes))
    for change in changes:
        after.apply(change.key, json.dumps(change.value).encode())
    return after


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _columns(rows: Sequence[Sequence[Any]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        )


_author_option = click.option("--author", help="Who makes the change (default: $DUOLI_USER).")


# -- rules -----------------------------------------------------------------------------------


@click.command("push")
@click.argument("rulefiles", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_author_option
@click.option("--note", default="", help="Why (kept in the audit log).")
def push(rulefiles: tuple[Path, ...], author: str | None, note: str) -> None:
    """Publish the rules of the RULEFILES that differ from the ones running."""
    candidates = _valid_candidates(rulefiles)
    control, who = _control(), _author(author)
    state = control.state()
    steps = ops.plan_push(candidates.rules, _effective(control, state))
    changes = [_push_change(step, who, note or f"push {_files(rulefiles)}") for step in steps]
    publishable = [change for change in changes if change is not None]
    control.publish(publishable)
    for step in steps:
        click.echo(_describe_step(step))
    after = _applied(state, publishable)
    click.echo(f"rule-set version {after.ruleset(control.file_rules().rules).version}")


def _valid_candidates(rulefiles: Sequence[Path]) -> RuleSet:
    """Every file checked before anything is published; a bad rule exits with status 1."""
    from duoli.backtest import load_candidates

    try:
        return load_candidates(rulefiles)
    except RuleError as error:
        click.echo(f"duoli: nothing pushed: {error}", err=True)
        sys.exit(1)


def _files(paths: Iterable[Path]) -> str:
    return " ".join(path.name for path in paths)


def _push_change(step: ops.PushStep, author: str, note: str) -> ops.Change | None:
    if step.published is None:
        return None
    return ops.rule_change(step.published, author, _now(), note)


def _describe_step(step: ops.PushStep) -> str:
    rule = step.candidate.id
    if step.published is None:
        return f"{rule}: unchanged (v{(step.current or step.candidate).version})"
    version = f"v{step.published.version}"
    if step.bumped:
        version += f" (auto-bumped from v{step.candidate.version})"
    if step.current is None:
        return f"{rule}: new, published {version}"
    return f"{rule}: changed v{step.current.version} -> {version}"


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--at", "at_text", help="Show the snoozes active at this event time (default now).")
def list_rules(as_json: bool, at_text: str | None) -> None:
    """The rules running now, where each comes from, and the active snoozes."""
    control = _control()
    state = control.state()
    ruleset = state.ruleset(control.file_rules().rules)
    rows = ops.rule_rows(ruleset.rules, control.latest())
    at = time.time() if at_text is None else parse_time(at_text)
    snoozes = [s.to_json() for s in ops.active_snoozes(state.snoozes.values(), at)]
    if as_json:
        _echo_json({"version": ruleset.version, "rules": rows, "snoozes": snoozes})
        return
    click.echo(f"rule-set version {ruleset.version}")
    _columns([("id", "mode", "version", "severity", "kind", "source"), *_rule_cells(rows)])
    click.echo("snoozes:" if snoozes else "snoozes: none")
    for snooze in snoozes:
        click.echo(
            f"  {snooze['rule_id']} for {snooze['scope']} {snooze['target']} "
            f"until {snooze['until']}: {snooze['reason']}"
        )


def _rule_cells(rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["id"], r["mode"], f"v{r['version']}", r["severity"], r["kind"], _source(r)) for r in rows
    ]


def _source(row: Mapping[str, Any]) -> str:
    if row["source"] == "pushed":
        return f"pushed by {row['author']} at {row['at']}"
    return "file"


@click.command("history")
@click.argument("rule_id")
def history(rule_id: str) -> None:
    """Every version of RULE_ID: who, when, why, and what changed."""
    control = _control()
    versions = _versions(control, rule_id)
    if not versions:
        raise ControlError(f"unknown rule {rule_id!r}: not in the rule files, never pushed")
    for version, diff in ops.history_diffs(versions):
        when = f" at {version.at}" if version.at else ""
        click.echo(f"v{version.rule.version} by {version.author}{when}: {version.note}")
        click.echo(diff)


def _versions(control: _Control, rule_id: str) -> list[ops.RuleVersion]:
    base = {rule.id: rule for rule in control.file_rules().rules}.get(rule_id)
    return ops.rule_history(rule_id, control.audit(), base)


@click.command("rollback")
@click.argument("rule_id")
@click.option("--to", "version", type=int, required=True, help="The version to restore.")
@_author_option
def rollback(rule_id: str, version: int, author: str | None) -> None:
    """Publish an earlier version of RULE_ID again, as a new version."""
    control, who = _control(), _author(author)
    current = _effective(control, control.state()).get(rule_id)
    restored = ops.rollback(rule_id, _versions(control, rule_id), version, current)
    control.publish([ops.rule_change(restored, who, _now(), f"rollback to v{version}")])
    click.echo(f"{rule_id}: v{restored.version} published, as v{version}")


def _target(account: str | None, merchant: str | None) -> tuple[str, str]:
    if (account is None) == (merchant is None):
        raise click.UsageError("give exactly one of --account ID or --merchant ID")
    return ("account", account) if account is not None else ("merchant", str(merchant))


@click.command("snooze")
@click.argument("rule_id")
@click.option("--account", help="Silence the rule for this account.")
@click.option("--merchant", help="Silence the rule for this merchant.")
@click.option("--until", "until", required=True, help="Event time (ISO 8601) it ends.")
@click.option("--reason", required=True, help="Why (kept with the snooze).")
@_author_option
def snooze(
    rule_id: str, account: str | None, merchant: str | None, until: str, reason: str,
    author: str | None,
) -> None:  # fmt: skip
    """Silence RULE_ID for one account or merchant until an event time."""
    scope, target = _target(account, merchant)
    control, who = _control(), _author(author)
    silenced = Snooze(rule_id, scope, target, parse_time(until), reason)
    known = _effective(control, control.state())
    control.publish([ops.snooze_change(silenced, known, who, _now())])
    click.echo(f"{rule_id} snoozed for {scope} {target} until {iso_time(silenced.until)}")


@click.command("unsnooze")
@click.argument("rule_id")
@click.option("--account", help="The account the snooze is for.")
@click.option("--merchant", help="The merchant the snooze is for.")
@_author_option
def unsnooze(rule_id: str, account: str | None, merchant: str | None, author: str | None) -> None:
    """Lift the snooze of RULE_ID for one account or merchant."""
    scope, target = _target(account, merchant)
    control, who = _control(), _author(author)
    state = control.state()
    key = snooze_key(rule_id, scope, target)
    known = _effective(control, state)
    control.publish([ops.unsnooze_change(key, known, state.snoozes, who, _now())])
    click.echo(f"{rule_id} no longer snoozed for {scope} {target}")


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def stats(as_json: bool) -> None:
    """Live statistics per rule, from the workers' counters in Redis."""
    from duoli.rule_stats import read_rule_stats

    settings = load_settings()
    rows = read_rule_stats(settings.redis_url, settings.redis_prefix, settings.label_maturity_days)
    if as_json:
        _echo_json(rows)
    elif not rows:
        click.echo("no rule has been evaluated yet")
    else:
        header = ("rule", "hits", "shadow", "snoozed", "errors", "last hit", "matured", "precision")
        _columns([header, *map(_stats_cells, rows)])


def _stats_cells(row: Mapping[str, Any]) -> tuple[Any, ...]:
    precision = "-" if row["precision"] is None else f"{row['precision']:.2f}"
    return (
        row["rule_id"], row["hits"], row["shadow_hits"], row["snoozed_hits"], row["errors"],
        row["last_hit_at"] or "-", row["matured_hits"], precision,
    )  # fmt: skip


RULE_COMMANDS: tuple[click.Command, ...] = (
    push, list_rules, history, rollback, snooze, unsnooze, stats,
)  # fmt: skip


# -- lists -----------------------------------------------------------------------------------


@click.group()
def lists() -> None:
    """Named lists (accounts, devices, merchants, cities) the rules can test against."""


@lists.command("add")
@click.argument("name")
@click.argument("values", nargs=-1, required=True)
@click.option("--kind", required=True, type=click.Choice(LIST_KINDS), help="What the values are.")
@click.option("--expires", help="Event time (ISO 8601) the values stop counting.")
@_author_option
def add(
    name: str, values: tuple[str, ...], kind: str, expires: str | None, author: str | None
) -> None:
    """Add the VALUES to list NAME (created if new); the whole list is published."""
    edit = partial(
        ops.add_to_list, name=name, kind=kind, values=values, expiry=_event_time(expires)
    )
    _edit_list(name, author, f"add {' '.join(values)}", edit)


@lists.command("remove")
@click.argument("name")
@click.argument("values", nargs=-1, required=True)
@_author_option
def remove(name: str, values: tuple[str, ...], author: str | None) -> None:
    """Remove the VALUES from list NAME; the whole list is published."""
    edit = partial(ops.remove_from_list, name=name, values=values)
    _edit_list(name, author, f"remove {' '.join(values)}", edit)


def _edit_list(
    name: str, author: str | None, note: str, edit: Callable[[NamedList | None], NamedList]
) -> None:
    control, who = _control(), _author(author)
    edited = edit(control.state().lists.get(name))
    control.publish([ops.list_change(edited, who, _now(), note)])
    click.echo(f"list {name!r} ({edited.kind}): {len(edited.entries)} values")


@lists.command("show")
@click.argument("name", required=False)
@click.option("--at", "at_text", help="Only the values that count at this event time (ISO 8601).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def show(name: str | None, at_text: str | None, as_json: bool) -> None:
    """Show every list, or list NAME, with each value's expiry."""
    found = _control().state().lists
    if name is not None:
        if name not in found:
            raise ControlError(f"no list named {name!r}; lists: {', '.join(found) or 'none'}")
        found = {name: found[name]}
    at = _event_time(at_text)
    shown = {
        n: {**named.to_json(), "entries": _expiries(ops.active_entries(named, at))}
        for n, named in sorted(found.items())
    }
    if as_json:
        _echo_json(shown)
        return
    for listed in shown.values():
        click.echo(f"{listed['name']} ({listed['kind']}): {len(listed['entries'])} values")
        for value, expiry in listed["entries"].items():
            click.echo(f"  {value}  {'expires ' + expiry if expiry else 'no expiry'}")


def _expiries(entries: Mapping[str, float | None]) -> dict[str, str | None]:
    return {v: None if e is None else iso_time(e) for v, e in sorted(entries.items())}
