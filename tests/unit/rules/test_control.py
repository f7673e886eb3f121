"""The control topic folded into state: pushed rules, named lists and snoozes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import orjson
import pytest

from rules import Rule
from rules.control import (
    ControlError,
    ControlState,
    NamedList,
    Snooze,
    list_key,
    parse_time,
    rule_key,
    snooze_key,
)

AT = "2026-03-02T09:00:00Z"
NOON = parse_time("2026-03-02T12:00:00Z")
BASE = Rule(
    id="big",
    description="a large amount",
    expression="amount >= 1000",
    severity="medium",
    action="alert",
    mode="shadow",
    version=1,
)


def record(**payload: Any) -> bytes:
    return orjson.dumps({"author": "alice", "at": AT, **payload})


@pytest.fixture
def make_rule() -> Callable[..., Rule]:
    def build(**overrides: Any) -> Rule:
        return replace(BASE, **overrides)

    return build


def snooze_json(**overrides: Any) -> dict[str, Any]:
    fields = {"rule_id": "big", "scope": "account", "target": "acc-1", "reason": "VIP"}
    return {**fields, "until": "2026-03-02T12:00:00Z", **overrides}


def test_a_pushed_rule_replaces_the_file_rule_with_the_same_id(make_rule) -> None:
    state = ControlState()
    pushed = make_rule(mode="active", version=2)
    state.apply(rule_key("big"), record(rule=asdict(pushed)))
    other = make_rule(id="other")
    ruleset = state.ruleset([BASE, other])
    assert [(r.id, r.mode, r.version) for r in ruleset.rules] == [
        ("big", "active", 2),
        ("other", "shadow", 1),
    ]
    assert ruleset.version != ControlState().ruleset([BASE, other]).version


def test_a_new_pushed_rule_joins_the_file_rules(make_rule) -> None:
    state = ControlState()
    state.apply(rule_key("fresh"), record(rule=asdict(make_rule(id="fresh"))))
    assert [r.id for r in state.ruleset([BASE]).rules] == ["big", "fresh"]


def test_the_latest_record_per_key_wins(make_rule) -> None:
    state = ControlState()
    for version in (2, 3, 4):
        state.apply(rule_key("big"), record(rule=asdict(make_rule(version=version))))
    assert state.ruleset([BASE]).rules[0].version == 4


def test_a_removed_rule_falls_back_to_the_file_rule(make_rule) -> None:
    state = ControlState()
    state.apply(rule_key("big"), record(rule=asdict(make_rule(version=5))))
    state.apply(rule_key("big"), record(removed=True))
    assert state.ruleset([BASE]).rules == (BASE,)
    state.apply(rule_key("big"), None)  # a tombstone as well
    assert state.rules == {}


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("rule:big", b"not json", "refused"),
        ("rule:big", b"[1, 2]", "not a JSON object"),
        ("rule:big", record(rule={"id": "big"}), "refused"),
        ("rule:big", record(rule={**asdict(BASE), "expression": "amount.__class__"}), "attribute"),
        ("rule:big", record(rule={**asdict(BASE), "severity": "huge"}), "severity"),
        ("rule:big", record(rule=asdict(replace(BASE, id="other"))), "holds 'rule:other'"),
        ("list:vip", record(list={"name": "vip", "kind": "planet", "entries": {}}), "kind"),
        ("list:vip", record(list={"name": "vip", "kind": "city", "entries": {"x": 5}}), "ISO"),
        ("list:vip", record(list={"name": "other", "kind": "city", "entries": {}}), "holds"),
        ("snooze:big:account:acc-1", record(snooze=snooze_json(reason=" ")), "reason"),
        ("snooze:big:account:acc-1", record(snooze=snooze_json(until="soon")), "ISO"),
        ("snooze:big:account:acc-1", record(snooze=snooze_json(target="acc-2")), "holds"),
        ("weather:today", record(), "unknown control key"),
    ],
)
def test_a_bad_record_is_refused_and_leaves_the_state_as_it_was(key, value, message) -> None:
    state = ControlState()
    state.apply(rule_key("big"), record(rule=asdict(replace(BASE, version=2))))
    before = ControlState(dict(state.rules), dict(state.lists), dict(state.snoozes))
    with pytest.raises(ControlError, match=message):
        state.apply(key, value)
    assert state == before


def test_lists_fold_to_their_latest_snapshot() -> None:
    state = ControlState()
    first = NamedList("vip", "account", {"acc-1": None, "acc-2": None})
    state.apply(list_key("vip"), record(list=first.to_json()))
    state.apply(
        list_key("vip"), record(list=NamedList("vip", "account", {"acc-2": None}).to_json())
    )
    assert dict(state.lists["vip"].entries) == {"acc-2": None}
    state.apply(list_key("vip"), record(removed=True))
    assert state.lists == {}


def test_a_list_entry_counts_only_for_events_before_its_expiry() -> None:
    named = NamedList("blocked", "device", {"d-1": NOON, "d-2": None})
    assert named.contains("d-1", NOON - 1)
    assert not named.contains("d-1", NOON)  # expired at that event time
    assert named.contains("d-2", NOON + 10**9)
    assert not named.contains("d-3", NOON - 1)
    assert not named.contains(None, NOON - 1)


def test_a_list_survives_its_json_round_trip() -> None:
    named = NamedList("blocked", "device", {"d-1": NOON, "d-2": None})
    assert NamedList.from_json(orjson.loads(orjson.dumps(named.to_json()))) == named


def test_a_snooze_covers_its_rule_and_target_until_its_event_time() -> None:
    state = ControlState()
    state.apply(snooze_key("big", "account", "acc-1"), record(snooze=snooze_json()))
    controls = state.controls([BASE])
    assert controls.snoozed("big", "acc-1", "m-1", NOON - 1)
    assert not controls.snoozed("big", "acc-1", "m-1", NOON)  # ends at its event time
    assert not controls.snoozed("big", "acc-2", "m-1", NOON - 1)
    assert not controls.snoozed("other", "acc-1", "m-1", NOON - 1)


def test_a_merchant_snooze_covers_the_merchant_not_the_account() -> None:
    snooze = Snooze("big", "merchant", "m-9", NOON, "known bulk buyer")
    assert snooze.covers("big", "acc-1", "m-9", NOON - 1)
    assert not snooze.covers("big", "m-9", None, NOON - 1)


def test_a_lifted_snooze_no_longer_covers() -> None:
    state = ControlState()
    key = snooze_key("big", "account", "acc-1")
    state.apply(key, record(snooze=snooze_json()))
    state.apply(key, record(removed=True))
    assert not state.controls([BASE]).snoozed("big", "acc-1", None, NOON - 1)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-03-02T12:00:00Z", NOON),
        ("2026-03-02T20:00:00+08:00", NOON),
        ("2026-03-02T12:00:00", NOON),
        ("2026-03-02", NOON - 12 * 3600),
    ],
)
def test_times_are_iso_8601_and_utc_without_a_zone(text, expected) -> None:
    assert parse_time(text) == expected


def test_a_time_that_is_not_iso_8601_is_refused() -> None:
    with pytest.raises(ControlError, match="ISO 8601"):
        parse_time("next tuesday")
