"""The analysts' control commands as pure decisions: what to publish, never how.

A command reads the folded control topic (:class:`~rules.control.ControlState`), the latest
control value per key and the audit log; the functions here turn that into
:class:`Change` values, which :mod:`connectors.control_topic` writes (audit record first,
then the control record).

Examples
--------
>>> from rules import parse_rules
>>> [base] = parse_rules('''
... rules:
...   - id: big
...     description: a large amount
...     expression: amount >= 1000
...     severity: medium
...     action: alert
...     mode: shadow
...     version: 1
... ''').rules
>>> [step] = plan_push([replace(base, mode="active")], {"big": base})
>>> step.status, step.published.version
('changed', 2)
>>> plan_push([base], {"big": base})[0].status
'unchanged'
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson
import yaml

from duoli.errors import RuleError
from rules._engine import Rule
from rules.control import (
    ControlError,
    NamedList,
    Snooze,
    list_key,
    rule_key,
    snooze_key,
)

__all__ = [
    "FILE_AUTHOR",
    "Change",
    "PushStep",
    "RuleVersion",
    "active_entries",
    "active_snoozes",
    "add_to_list",
    "audit_record",
    "control_value",
    "find_version",
    "history_diffs",
    "latest_values",
    "list_change",
    "plan_push",
    "remove_from_list",
    "require_rule",
    "rollback",
    "rule_change",
    "rule_history",
    "rule_rows",
    "rule_yaml",
    "same_definition",
    "snooze_change",
    "unsnooze_change",
]

FILE_AUTHOR = "file"


@dataclass(frozen=True)
class Change:
    """One control record to publish: ``value`` is what goes on the control topic."""

    key: str
    value: dict[str, Any]
    note: str


def control_value(author: str, at: str, **payload: Any) -> dict[str, Any]:
    return {"author": author, "at": at, **payload}


def audit_record(change: Change, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the audit topic keeps of a change: who, when, why, and the value it replaced."""
    return {
        "key": change.key,
        "author": change.value["author"],
        "at": change.value["at"],
        "previous": previous,
        "new": change.value,
        "note": change.note,
    }


def latest_values(records: Iterable[tuple[str, bytes | None]]) -> dict[str, Any]:
    """The latest decoded value per control key (``None`` for a tombstone or bad JSON)."""
    latest: dict[str, Any] = {}
    for key, value in records:
        latest[key] = _decoded(value)
    return latest


def _decoded(value: bytes | None) -> Any:
    try:
        return orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None


# -- rules -----------------------------------------------------------------------------------


def same_definition(a: Rule, b: Rule) -> bool:
    """Equal but for the version number: pushing it again would change nothing."""
    return replace(a, version=b.version) == b


def rule_change(rule: Rule, author: str, at: str, note: str) -> Change:
    return Change(rule_key(rule.id), control_value(author, at, rule=asdict(rule)), note)


@dataclass(frozen=True)
class PushStep:
    """One rule of a push: as written in the file, as it is now, and as it will be published."""

    candidate: Rule
    current: Rule | None
    published: Rule | None  # None: unchanged, nothing to publish

    @property
    def status(self) -> str:
        if self.published is None:
            return "unchanged"
        return "new" if self.current is None else "changed"

    @property
    def bumped(self) -> bool:
        return self.published is not None and self.published.version != self.candidate.version


def plan_push(candidates: Iterable[Rule], effective: Mapping[str, Rule]) -> list[PushStep]:
    """Per candidate, publish it only if its definition differs from the effective one,
    at a version above the current one even if the file forgot to bump it."""
    return [_push_step(rule, effective.get(rule.id)) for rule in candidates]


def _push_step(candidate: Rule, current: Rule | None) -> PushStep:
    if current is None:
        return PushStep(candidate, None, candidate)
    if same_definition(candidate, current):
        return PushStep(candidate, current, None)
    version = max(candidate.version, current.version + 1)
    return PushStep(candidate, current, replace(candidate, version=version))


@dataclass(frozen=True)
class RuleVersion:
    """One definition a rule has had, from the rule files or from the audit log."""

    rule: Rule
    author: str
    at: str | None
    note: str


def rule_history(
    rule_id: str, audit: Iterable[Mapping[str, Any]], base: Rule | None
) -> list[RuleVersion]:
    """Every definition of a rule in order: the file version (if any), then each push."""
    versions = [RuleVersion(base, FILE_AUTHOR, None, "from the rule files")] if base else []
    for record in audit:
        rule = _audited_rule(rule_key(rule_id), record)
        if rule is not None:
            versions.append(
                RuleVersion(rule, str(record["author"]), record.get("at"), record.get("note", ""))
            )
    return versions


def _audited_rule(key: str, record: Mapping[str, Any]) -> Rule | None:
    new = record.get("new")
    if record.get("key") != key or not isinstance(new, dict) or "rule" not in new:
        return None
    try:
        return Rule(**new["rule"])
    except (RuleError, TypeError):  # written by something else than Duoli: not a version
        return None


def rule_yaml(rule: Rule) -> str:
    return yaml.safe_dump(asdict(rule), sort_keys=False, allow_unicode=True, width=100)


def history_diffs(versions: Sequence[RuleVersion]) -> list[tuple[RuleVersion, str]]:
    """Each version with the unified diff from the one before (the first from nothing)."""
    diffs = []
    previous: RuleVersion | None = None
    for version in versions:
        diffs.append((version, _diff(previous, version)))
        previous = version
    return diffs


def _diff(old: RuleVersion | None, new: RuleVersion) -> str:
    before = rule_yaml(old.rule).splitlines(keepends=True) if old else []
    after = rule_yaml(new.rule).splitlines(keepends=True)
    name = f"v{old.rule.version}" if old else "nothing"
    return "".join(difflib.unified_diff(before, after, name, f"v{new.rule.version}"))


def find_version(rule_id: str, versions: Sequence[RuleVersion], version: int) -> Rule:
    """The latest definition that had ``version``; an unknown one names the known ones."""
    for entry in reversed(versions):
        if entry.rule.version == version:
            return entry.rule
    if not versions:
        raise ControlError(f"rule {rule_id!r} has no history: not in the files, never pushed")
    known = ", ".join(f"v{v}" for v in sorted({e.rule.version for e in versions}))
    raise ControlError(f"rule {rule_id!r} has no version {version}; known versions: {known}")


def rollback(
    rule_id: str, versions: Sequence[RuleVersion], version: int, current: Rule | None
) -> Rule:
    """The definition of ``version`` again, as a new version above every one so far."""
    target = find_version(rule_id, versions, version)
    if current is not None and same_definition(target, current):
        raise ControlError(f"rule {rule_id!r} v{current.version} is already as v{version}")
    newest = max([e.rule.version for e in versions] + [current.version if current else 0])
    return replace(target, version=newest + 1)


def rule_rows(rules: Iterable[Rule], latest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The effective rules for display, each saying whether it was pushed, by whom, when."""
    return [_rule_row(rule, latest.get(rule_key(rule.id))) for rule in rules]


def _rule_row(rule: Rule, pushed: Any) -> dict[str, Any]:
    row = {f: getattr(rule, f) for f in ("id", "mode", "version", "severity", "kind")}
    if isinstance(pushed, dict) and "rule" in pushed:
        return row | {"source": "pushed", "author": pushed.get("author"), "at": pushed.get("at")}
    return row | {"source": FILE_AUTHOR, "author": None, "at": None}


# -- snoozes ---------------------------------------------------------------------------------


def require_rule(rule_id: str, known: Iterable[str]) -> None:
    if rule_id not in set(known):
        raise ControlError(f"unknown rule {rule_id!r}: not in the rule files, never pushed")


def snooze_change(snooze: Snooze, known: Iterable[str], author: str, at: str) -> Change:
    require_rule(snooze.rule_id, known)
    key = snooze_key(snooze.rule_id, snooze.scope, snooze.target)
    return Change(key, control_value(author, at, snooze=snooze.to_json()), snooze.reason)


def unsnooze_change(
    key: str, known: Iterable[str], snoozes: Mapping[str, Snooze], author: str, at: str
) -> Change:
    """Lift the snooze stored under ``key`` (``snooze:{rule}:{scope}:{target}``)."""
    rule_id = key.split(":")[1]
    require_rule(rule_id, known)
    if key.partition(":")[2] not in snoozes:
        raise ControlError(f"no snooze to lift: {key!r}")
    return Change(key, control_value(author, at, removed=True), "unsnooze")


def active_snoozes(snoozes: Iterable[Snooze], at: float) -> list[Snooze]:
    """The snoozes still silencing their rule for an event at ``at``."""
    return sorted((s for s in snoozes if at < s.until), key=lambda s: (s.rule_id, s.target))


# -- named lists -----------------------------------------------------------------------------


def add_to_list(
    existing: NamedList | None, name: str, kind: str, values: Iterable[str], expiry: float | None
) -> NamedList:
    """The list with ``values`` added (or their expiry replaced); a new list takes ``kind``."""
    if existing is not None and existing.kind != kind:
        raise ControlError(f"list {name!r} holds {existing.kind} values, not {kind}")
    entries = dict(existing.entries) if existing else {}
    entries.update(dict.fromkeys(values, expiry))
    return NamedList(name, kind, entries)


def remove_from_list(existing: NamedList | None, name: str, values: Iterable[str]) -> NamedList:
    if existing is None:
        raise ControlError(f"no list named {name!r}")
    values = list(values)
    absent = [value for value in values if value not in existing.entries]
    if absent:
        raise ControlError(f"not in list {name!r}: {', '.join(absent)}")
    entries = {v: e for v, e in existing.entries.items() if v not in values}
    return replace(existing, entries=entries)


def list_change(named: NamedList, author: str, at: str, note: str) -> Change:
    return Change(list_key(named.name), control_value(author, at, list=named.to_json()), note)


def active_entries(named: NamedList, at: float | None) -> dict[str, float | None]:
    """The entries that count for an event at ``at``; every entry when ``at`` is None."""
    if at is None:
        return dict(named.entries)
    return {value: expiry for value, expiry in named.entries.items() if named.contains(value, at)}
