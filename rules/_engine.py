"""Rules as data, and the set that evaluates them against one event's facts.

A :class:`RuleSet` compiles every rule once; evaluating is then one ``eval`` of a code
object per rule, with each rule isolated so that one faulty rule cannot hide the others.
Only an event type with a rule that calls ``list("name")`` pays for the named lists: its
rules run with globals that answer from them, built once per event.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from types import CodeType
from typing import Any, Final

from duoli.errors import RuleError
from rules._language import EVAL_GLOBALS, Membership, compile_code, list_globals, uses_lists

__all__ = [
    "ACTIONS",
    "EVENT_TYPES",
    "KINDS",
    "MODES",
    "SEVERITIES",
    "Evaluation",
    "Rule",
    "RuleHit",
    "RuleSet",
    "rule_problem",
]

SEVERITIES: Final = ("low", "medium", "high", "critical")
ACTIONS: Final = ("alert", "review", "block")
MODES: Final = ("active", "shadow", "disabled")
EVENT_TYPES: Final = ("transaction", "repayment")
KINDS: Final = ("fraud", "delinquency")

_CHOICES: Final[dict[str, tuple[str, ...]]] = {
    "severity": SEVERITIES,
    "action": ACTIONS,
    "mode": MODES,
    "applies_to": EVENT_TYPES,
    "kind": KINDS,
}
_TEXT_FIELDS: Final = ("id", "description", "expression")
_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
"""Ids end up in Redis keys, metric labels and alert reasons: keep them plain."""
_VERSIONED_FIELDS: Final = (
    "id",
    "version",
    "mode",
    "expression",
    "severity",
    "action",
    "applies_to",
    "kind",
)
"""What identifies a rule set's behaviour; the description is only prose."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One analyst rule; invalid field values are refused on construction."""

    id: str
    description: str
    expression: str
    severity: str
    action: str
    mode: str
    version: int
    applies_to: str = "transaction"
    kind: str = "fraud"

    def __post_init__(self) -> None:
        problem = rule_problem(asdict(self))
        if problem is not None:
            rule_id = self.id if isinstance(self.id, str) else repr(self.id)
            raise RuleError(rule_id, problem)


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A rule that fired, with what the alerting side needs to act on it."""

    rule_id: str
    version: int
    severity: str
    action: str
    mode: str
    kind: str
    description: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The rules that hit, and ``(rule_id, message)`` for those that raised."""

    hits: tuple[RuleHit, ...]
    errors: tuple[tuple[str, str], ...]


def rule_problem(fields: Mapping[str, Any]) -> str | None:
    """What is wrong with a rule's field values, or ``None``; shared with the YAML loader."""
    for name in _TEXT_FIELDS:
        value = fields.get(name)
        if not isinstance(value, str) or not value.strip():
            return f"{name} must be a non-empty string"
    if not _ID_PATTERN.fullmatch(fields["id"]):
        return "id must be 1-100 letters, digits or _ . : - and start with a letter or digit"
    for name, choices in _CHOICES.items():
        if fields.get(name) not in choices:
            return f"{name} must be one of {', '.join(choices)}, not {fields.get(name)!r}"
    version = fields.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return f"version must be a positive integer, not {version!r}"
    return None


_Plan = tuple[tuple[CodeType, RuleHit], ...]


class RuleSet:
    """Compiled rules, evaluated per event.

    ``version`` is a short hash of what the rules do, so a score record says which rule
    set produced it; it does not depend on the order the rules were loaded in.
    """

    __slots__ = ("_list_users", "_plans", "_rules", "_version")

    def __init__(self, rules: Iterable[Rule], *, sources: Mapping[str, str] | None = None) -> None:
        """``sources`` maps a rule id to its file, only to name it in error messages."""
        self._rules: tuple[Rule, ...] = tuple(rules)
        _refuse_duplicates(self._rules)
        self._version = content_version(self._rules)
        self._plans: dict[str, _Plan] = _plans(self._rules, sources or {})
        self._list_users = frozenset(
            event_type
            for event_type, plan in self._plans.items()
            if any(uses_lists(code) for code, _ in plan)
        )

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules in load order; read-only, since the compiled plans derive from them."""
        return self._rules

    @property
    def version(self) -> str:
        """12 hex digits identifying what these rules do."""
        return self._version

    def evaluate(
        self,
        facts: Mapping[str, Any],
        event_type: str = "transaction",
        lists: Mapping[str, Membership] | None = None,
        at: float = 0.0,
    ) -> Evaluation:
        """Run the active and shadow rules for ``event_type``; a rule that raises is reported.

        ``list("name")`` answers from ``lists`` as of the event time ``at``; without
        ``lists`` every named list is empty.
        """
        hits: list[RuleHit] = []
        errors: list[tuple[str, str]] = []
        env = EVAL_GLOBALS
        if lists and event_type in self._list_users:
            env = list_globals(lists, at)
        for code, hit in self._plans.get(event_type, ()):
            try:
                if eval(code, env, facts):
                    hits.append(hit)
            except Exception as exc:  # one bad rule must not hide the others
                errors.append((hit.rule_id, f"{type(exc).__name__}: {exc}"))
        return Evaluation(tuple(hits), tuple(errors))

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"RuleSet(version={self.version!r}, rules={len(self.rules)})"

    def __reduce__(self) -> tuple[type[RuleSet], tuple[tuple[Rule, ...]]]:
        """Code objects do not pickle; rebuild from the rules instead."""
        return (RuleSet, (self.rules,))


def content_version(rules: Iterable[Rule]) -> str:
    """12 hex digits of sha256 over the rules' behaviour, sorted by id."""
    records = sorted(({f: getattr(r, f) for f in _VERSIONED_FIELDS} for r in rules), key=_by_id)
    canonical = json.dumps(records, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def _by_id(record: Mapping[str, Any]) -> str:
    return str(record["id"])


def _refuse_duplicates(rules: tuple[Rule, ...]) -> None:
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise RuleError(rule.id, "duplicate rule id")
        seen.add(rule.id)


def _plans(rules: tuple[Rule, ...], sources: Mapping[str, str]) -> dict[str, _Plan]:
    """Per event type, the rules to run; disabled rules are compiled (so checked) but skipped."""
    compiled = [(compile_code(r.id, r.expression, sources.get(r.id)), _hit(r)) for r in rules]
    return {
        event_type: tuple(
            (code, hit)
            for (code, hit), rule in zip(compiled, rules, strict=True)
            if rule.applies_to == event_type and rule.mode != "disabled"
        )
        for event_type in EVENT_TYPES
    }


def _hit(rule: Rule) -> RuleHit:
    """Built once per rule: a hit is immutable, so every event can share it."""
    return RuleHit(
        rule_id=rule.id,
        version=rule.version,
        severity=rule.severity,
        action=rule.action,
        mode=rule.mode,
        kind=rule.kind,
        description=rule.description,
    )
