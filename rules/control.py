"""What analysts control at run time: pushed rule versions, named lists and snoozes.

Every change is one record on the compacted control topic, keyed so the latest record per
key is the current state:

- ``rule:{rule_id}``: ``{"author", "at", "rule": {Rule fields}}``;
- ``list:{name}``: ``{"author", "at", "list": {"name", "kind", "entries": {value: expiry}}}``;
- ``snooze:{rule_id}:{scope}:{target}``: ``{"author", "at", "snooze": {...}}``, or
  ``{"author", "at", "removed": true}`` once lifted.

``at`` is the wall time of the change (ISO 8601). Expiries of list entries and snoozes are
in event time: an entry counts for an event that happened before it expires, so a
backtest of last month sees the lists as they were meant to apply then.

Workers fold the records into a :class:`ControlState` and score with its
:meth:`ControlState.controls`: the rules from files (``DUOLI_RULES_PATH``) overridden, id
by id, by pushed versions, plus the lists and snoozes. A record that does not parse is
refused by :meth:`ControlState.apply` with a :class:`ControlError`, and the state stays
as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import orjson

from duoli.errors import DuoliError, RuleError
from rules._engine import Rule, RuleSet

__all__ = [
    "LIST_KINDS",
    "SNOOZE_SCOPES",
    "ControlError",
    "ControlState",
    "Controls",
    "NamedList",
    "Snooze",
    "iso_time",
    "list_key",
    "parse_time",
    "rule_key",
    "snooze_key",
]

LIST_KINDS: Final = ("account", "device", "merchant", "city")
SNOOZE_SCOPES: Final = ("account", "merchant")


class ControlError(DuoliError):
    """A control record or command that cannot be applied; the state is unchanged."""


def rule_key(rule_id: str) -> str:
    return f"rule:{rule_id}"


def list_key(name: str) -> str:
    return f"list:{name}"


def snooze_key(rule_id: str, scope: str, target: str) -> str:
    return f"snooze:{rule_id}:{scope}:{target}"


def parse_time(text: str) -> float:
    """ISO 8601 (``Z`` or an offset; a bare date is midnight UTC) to epoch seconds."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, TypeError, ValueError) as error:  # AttributeError: not a string
        raise ControlError(f"not an ISO 8601 time: {text!r}") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class NamedList:
    """An analyst list: values of one kind, each with an optional event-time expiry."""

    name: str
    kind: str
    entries: Mapping[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in LIST_KINDS:
            raise ControlError(f"list kind must be one of {', '.join(LIST_KINDS)}: {self.kind!r}")

    def contains(self, value: Any, at: float) -> bool:
        if not isinstance(value, str) or value not in self.entries:
            return False
        expiry = self.entries[value]
        return expiry is None or at < expiry

    def to_json(self) -> dict[str, Any]:
        entries = {v: None if e is None else iso_time(e) for v, e in sorted(self.entries.items())}
        return {"name": self.name, "kind": self.kind, "entries": entries}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NamedList:
        entries = {
            str(value): None if expiry is None else parse_time(expiry)
            for value, expiry in dict(data["entries"]).items()
        }
        return cls(name=str(data["name"]), kind=str(data["kind"]), entries=entries)


@dataclass(frozen=True)
class Snooze:
    """One rule silenced for one account or merchant until an event time."""

    rule_id: str
    scope: str
    target: str
    until: float
    reason: str

    def __post_init__(self) -> None:
        if self.scope not in SNOOZE_SCOPES:
            raise ControlError(f"snooze scope must be account or merchant: {self.scope!r}")
        if not self.reason.strip():
            raise ControlError("a snooze needs a reason")

    def covers(self, rule_id: str, account_id: str, merchant_id: str | None, at: float) -> bool:
        target = account_id if self.scope == "account" else merchant_id
        return rule_id == self.rule_id and target == self.target and at < self.until

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"until": iso_time(self.until)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Snooze:
        fields = {name: str(data[name]) for name in ("rule_id", "scope", "target", "reason")}
        return cls(**fields, until=parse_time(str(data["until"])))


@dataclass(frozen=True)
class Controls:
    """Everything a worker scores with; replaced as a whole, never changed in place."""

    ruleset: RuleSet
    lists: Mapping[str, NamedList] = field(default_factory=dict)
    snoozes: tuple[Snooze, ...] = ()

    def snoozed(self, rule_id: str, account_id: str, merchant_id: str | None, at: float) -> bool:
        return any(s.covers(rule_id, account_id, merchant_id, at) for s in self.snoozes)


@dataclass
class ControlState:
    """The control topic folded: the latest pushed rule, list and snooze per key."""

    rules: dict[str, Rule] = field(default_factory=dict)
    lists: dict[str, NamedList] = field(default_factory=dict)
    snoozes: dict[str, Snooze] = field(default_factory=dict)

    def apply(self, key: str, value: bytes | None) -> None:
        """Fold one control record; refuse it whole (ControlError) if it does not parse."""
        try:
            record = orjson.loads(value) if value is not None else None
            self._apply(key, record)
        except ControlError:
            raise
        except (RuleError, KeyError, TypeError, ValueError, orjson.JSONDecodeError) as error:
            raise ControlError(f"control record {key!r} refused: {error}") from error

    def _apply(self, key: str, record: Any) -> None:
        record = {"removed": True} if record is None else record  # a tombstone removes
        if not isinstance(record, dict):
            raise ControlError(f"control record {key!r} refused: not a JSON object")
        kind, _, name = key.partition(":")
        removed = bool(record.get("removed"))
        if kind == "rule":
            if removed:
                self.rules.pop(name, None)
            else:
                self.rules[name] = _pushed_rule(name, record["rule"])
        elif kind == "list":
            if removed:
                self.lists.pop(name, None)
            else:
                self.lists[name] = _keyed(key, NamedList.from_json(record["list"]))
        elif kind == "snooze":
            if removed:
                self.snoozes.pop(name, None)
            else:
                self.snoozes[name] = _keyed(key, Snooze.from_json(record["snooze"]))
        else:
            raise ControlError(f"unknown control key {key!r}")

    def ruleset(self, base: Iterable[Rule]) -> RuleSet:
        """The file rules with the pushed versions in their place, then new pushed rules."""
        merged = {rule.id: rule for rule in base} | self.rules
        return RuleSet(merged.values())

    def controls(self, base: Iterable[Rule]) -> Controls:
        return Controls(self.ruleset(base), dict(self.lists), tuple(self.snoozes.values()))


def _pushed_rule(rule_id: str, fields: Mapping[str, Any]) -> Rule:
    rule = _keyed(rule_key(rule_id), Rule(**fields))
    RuleSet([rule])  # compiles it: an unsafe expression is refused here too
    return rule


_Keyed = TypeVar("_Keyed", Rule, NamedList, Snooze)


def _keyed(key: str, value: _Keyed) -> _Keyed:
    """Refuse a value stored under another key: a rule filed as ``rule:a`` but naming ``b``
    would sit beside the real ``b`` and break the merged set."""
    if _key_of(value) != key:
        raise ControlError(f"control record {key!r} holds {_key_of(value)!r}")
    return value


def _key_of(value: Rule | NamedList | Snooze) -> str:
    if isinstance(value, Rule):
        return rule_key(value.id)
    if isinstance(value, NamedList):
        return list_key(value.name)
    return snooze_key(value.rule_id, value.scope, value.target)
