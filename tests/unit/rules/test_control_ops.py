"""The control commands' decisions: version bumps, history, rollback, list edits, snoozes."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import orjson
import pytest

from rules import Rule
from rules import control_ops as ops
from rules.control import ControlError, ControlState, NamedList, Snooze, parse_time

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


def audited(rule: Rule, author: str, note: str = "") -> dict[str, Any]:
    return ops.audit_record(ops.rule_change(rule, author, "2026-03-02T09:00:00Z", note), None)


# -- push ------------------------------------------------------------------------------------


def test_a_new_rule_is_published_at_its_own_version() -> None:
    [step] = ops.plan_push([replace(BASE, version=3)], {})
    assert (step.status, step.published, step.bumped) == ("new", replace(BASE, version=3), False)


def test_a_changed_rule_is_bumped_above_the_current_version() -> None:
    current = replace(BASE, version=4)
    [step] = ops.plan_push([replace(BASE, mode="active", version=1)], {"big": current})
    assert step.status == "changed"
    assert step.published == replace(BASE, mode="active", version=5)
    assert step.bumped


def test_a_file_version_above_the_current_one_is_kept() -> None:
    [step] = ops.plan_push([replace(BASE, mode="active", version=9)], {"big": BASE})
    assert step.published is not None and step.published.version == 9
    assert not step.bumped


def test_an_unchanged_rule_is_not_published_whatever_its_version_says() -> None:
    steps = ops.plan_push(
        [BASE, replace(BASE, id="other", version=7)],
        {"big": BASE, "other": replace(BASE, id="other")},
    )
    assert [(s.status, s.published) for s in steps] == [("unchanged", None), ("unchanged", None)]


def test_a_new_description_is_a_change() -> None:
    [step] = ops.plan_push([replace(BASE, description="clearer")], {"big": BASE})
    assert step.status == "changed"


# -- history and rollback ----------------------------------------------------------------------


def test_history_starts_from_the_file_rule_and_follows_the_audit() -> None:
    v2 = replace(BASE, mode="active", version=2)
    audit = [
        audited(v2, "alice", "go live"),
        audited(replace(BASE, id="other"), "bob"),
        audited(replace(BASE, version=3), "carol", "rollback to v1"),
    ]
    history = ops.rule_history("big", audit, BASE)
    assert [(v.rule.version, v.author, v.note) for v in history] == [
        (1, ops.FILE_AUTHOR, "from the rule files"),
        (2, "alice", "go live"),
        (3, "carol", "rollback to v1"),
    ]


def test_history_skips_audit_records_that_are_not_rule_versions() -> None:
    lifted = {"key": "rule:big", "author": "x", "new": {"removed": True}}
    broken = {"key": "rule:big", "author": "x", "new": {"rule": {"id": "big"}}}
    assert ops.rule_history("big", [lifted, broken], None) == []


def test_history_diffs_show_what_changed_between_consecutive_versions() -> None:
    v2 = replace(BASE, mode="active", version=2)
    history = ops.rule_history("big", [audited(v2, "alice")], BASE)
    (_, first), (_, second) = ops.history_diffs(history)
    assert "+expression: amount >= 1000" in first
    assert second.splitlines()[:2] == ["--- v1", "+++ v2"]
    changed = [
        line for line in second.splitlines() if line[:1] in "+-" and line[:3] not in ("---", "+++")
    ]
    assert sorted(changed) == ["+mode: active", "+version: 2", "-mode: shadow", "-version: 1"]


def test_rollback_republishes_an_old_definition_as_the_next_version() -> None:
    v2 = replace(BASE, mode="active", version=2)
    history = ops.rule_history("big", [audited(v2, "alice")], BASE)
    restored = ops.rollback("big", history, 1, current=v2)
    assert restored == replace(BASE, version=3)


def test_rollback_to_an_unknown_version_lists_the_known_ones() -> None:
    history = ops.rule_history("big", [audited(replace(BASE, version=2, mode="active"), "a")], BASE)
    with pytest.raises(ControlError, match="no version 7; known versions: v1, v2"):
        ops.rollback("big", history, 7, current=history[-1].rule)


def test_rollback_of_a_rule_without_history_is_refused() -> None:
    with pytest.raises(ControlError, match="no history"):
        ops.rollback("ghost", [], 1, current=None)


def test_rollback_to_the_definition_already_running_is_refused() -> None:
    history = ops.rule_history("big", [], BASE)
    with pytest.raises(ControlError, match="already as v1"):
        ops.rollback("big", history, 1, current=BASE)


# -- control and audit records -----------------------------------------------------------------


def test_a_rule_change_folds_back_to_the_same_rule() -> None:
    change = ops.rule_change(BASE, "alice", "2026-03-02T09:00:00Z", "why")
    state = ControlState()
    state.apply(change.key, orjson.dumps(change.value))
    assert state.rules == {"big": BASE}


def test_the_audit_record_keeps_the_previous_value_and_the_note() -> None:
    change = ops.rule_change(BASE, "alice", "2026-03-02T09:00:00Z", "why")
    previous = {"author": "bob", "at": "2026-03-01T00:00:00Z", "rule": asdict(BASE)}
    assert ops.audit_record(change, previous) == {
        "key": "rule:big",
        "author": "alice",
        "at": "2026-03-02T09:00:00Z",
        "previous": previous,
        "new": change.value,
        "note": "why",
    }


def test_latest_values_keep_the_last_value_per_key() -> None:
    records = [("rule:a", b'{"v": 1}'), ("rule:b", b'{"v": 1}'), ("rule:a", b'{"v": 2}')]
    records.append(("rule:b", None))
    assert ops.latest_values(records) == {"rule:a": {"v": 2}, "rule:b": None}


def test_rule_rows_say_who_pushed_a_rule() -> None:
    pushed = replace(BASE, id="new")
    latest = {"rule:new": ops.rule_change(pushed, "alice", "2026-03-02T09:00:00Z", "").value}
    rows = ops.rule_rows([BASE, pushed], latest)
    assert [(r["id"], r["source"], r["author"]) for r in rows] == [
        ("big", "file", None),
        ("new", "pushed", "alice"),
    ]


# -- snoozes ---------------------------------------------------------------------------------


def test_a_snooze_of_an_unknown_rule_is_refused() -> None:
    snooze = Snooze("ghost", "account", "acc-1", NOON, "VIP")
    with pytest.raises(ControlError, match="unknown rule 'ghost'"):
        ops.snooze_change(snooze, ["big"], "alice", "2026-03-02T09:00:00Z")


def test_a_snooze_change_and_its_lifting_fold_as_expected() -> None:
    snooze = Snooze("big", "merchant", "m-1", NOON, "bulk buyer")
    change = ops.snooze_change(snooze, ["big"], "alice", "2026-03-02T09:00:00Z")
    state = ControlState()
    state.apply(change.key, orjson.dumps(change.value))
    assert list(state.snoozes.values()) == [snooze]
    lift = ops.unsnooze_change(change.key, ["big"], state.snoozes, "bob", "2026-03-02T10:00:00Z")
    state.apply(lift.key, orjson.dumps(lift.value))
    assert state.snoozes == {}


def test_lifting_a_snooze_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ControlError, match="no snooze to lift"):
        ops.unsnooze_change("snooze:big:account:acc-1", ["big"], {}, "bob", "now")


def test_active_snoozes_are_those_not_yet_expired_at_the_event_time() -> None:
    early = Snooze("big", "account", "acc-1", NOON - 60, "short")
    late = Snooze("big", "account", "acc-2", NOON + 60, "long")
    assert ops.active_snoozes([early, late], NOON) == [late]


# -- named lists -----------------------------------------------------------------------------


def test_adding_creates_a_list_and_then_extends_it() -> None:
    created = ops.add_to_list(None, "vip", "account", ["acc-1"], None)
    extended = ops.add_to_list(created, "vip", "account", ["acc-2", "acc-1"], NOON)
    assert extended == NamedList("vip", "account", {"acc-1": NOON, "acc-2": NOON})


def test_adding_values_of_another_kind_is_refused() -> None:
    existing = NamedList("vip", "account", {"acc-1": None})
    with pytest.raises(ControlError, match="holds account values, not device"):
        ops.add_to_list(existing, "vip", "device", ["d-1"], None)


def test_removing_values_keeps_the_others() -> None:
    existing = NamedList("vip", "account", {"acc-1": None, "acc-2": NOON})
    assert ops.remove_from_list(existing, "vip", ["acc-1"]).entries == {"acc-2": NOON}


def test_removing_from_an_unknown_list_or_an_absent_value_is_refused() -> None:
    with pytest.raises(ControlError, match="no list named 'vip'"):
        ops.remove_from_list(None, "vip", ["acc-1"])
    with pytest.raises(ControlError, match="not in list 'vip': acc-9"):
        ops.remove_from_list(NamedList("vip", "account", {"acc-1": None}), "vip", ["acc-9"])


def test_active_entries_at_an_event_time_leave_out_expired_ones() -> None:
    named = NamedList("vip", "account", {"acc-1": NOON, "acc-2": None})
    assert ops.active_entries(named, NOON) == {"acc-2": None}
    assert ops.active_entries(named, NOON - 1) == {"acc-1": NOON, "acc-2": None}
    assert ops.active_entries(named, None) == {"acc-1": NOON, "acc-2": None}


def test_a_list_change_folds_back_to_the_same_list() -> None:
    named = NamedList("vip", "account", {"acc-1": NOON})
    change = ops.list_change(named, "alice", "2026-03-02T09:00:00Z", "add acc-1")
    state = ControlState()
    state.apply(change.key, orjson.dumps(change.value))
    assert state.lists == {"vip": named}
