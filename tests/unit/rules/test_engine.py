"""RuleSet: which rules run, what a hit carries, isolation of faulty rules, and the version."""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import pytest

from duoli.errors import RuleError
from rules import Evaluation, Rule, RuleHit, RuleSet
from rules.control import NamedList

RuleFactory = Callable[..., Rule]


@pytest.fixture
def make_rule() -> RuleFactory:
    """A valid rule, with any field overridden."""

    def make(**overrides: Any) -> Rule:
        fields: dict[str, Any] = {
            "id": "big-amount",
            "description": "a big amount",
            "expression": "amount >= 1000",
            "severity": "high",
            "action": "review",
            "mode": "active",
            "version": 1,
        }
        return Rule(**{**fields, **overrides})

    return make


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("severity", "urgent"),
        ("action", "ban"),
        ("mode", "on"),
        ("applies_to", "purchase"),
        ("kind", "aml"),
        ("version", 0),
        ("version", -3),
        ("version", True),
        ("version", "1"),
        ("id", ""),
        ("id", "has space"),
        ("description", "  "),
        ("expression", ""),
    ],
)
def test_rule_refuses_bad_field_values(make_rule: RuleFactory, field: str, value: Any) -> None:
    with pytest.raises(RuleError, match=field):
        make_rule(**{field: value})


def test_rule_defaults_to_a_fraud_rule_on_transactions(make_rule: RuleFactory) -> None:
    rule = make_rule()
    assert (rule.applies_to, rule.kind) == ("transaction", "fraud")


def test_hit_carries_what_alerting_needs(make_rule: RuleFactory) -> None:
    rule = make_rule(version=3, kind="delinquency", severity="critical", action="block")
    evaluation = RuleSet([rule]).evaluate({"amount": 2000.0})
    assert evaluation == Evaluation(
        hits=(
            RuleHit("big-amount", 3, "critical", "block", "active", "delinquency", "a big amount"),
        ),
        errors=(),
    )


def test_disabled_rules_are_not_evaluated(make_rule: RuleFactory) -> None:
    ruleset = RuleSet([make_rule(mode="disabled", expression="amount / 0 > 1")])
    assert ruleset.evaluate({"amount": 2000.0}) == Evaluation((), ())


def test_disabled_rules_are_still_checked_at_load(make_rule: RuleFactory) -> None:
    with pytest.raises(RuleError, match="unknown feature"):
        RuleSet([make_rule(mode="disabled", expression="amont > 1")])


def test_shadow_hits_are_returned_marked_shadow(make_rule: RuleFactory) -> None:
    ruleset = RuleSet([make_rule(), make_rule(id="shadowed", mode="shadow")])
    hits = ruleset.evaluate({"amount": 2000.0}).hits
    assert [(hit.rule_id, hit.mode) for hit in hits] == [
        ("big-amount", "active"),
        ("shadowed", "shadow"),
    ]


def test_only_rules_for_the_event_type_run(make_rule: RuleFactory) -> None:
    ruleset = RuleSet(
        [
            make_rule(),
            make_rule(id="low-repayment", applies_to="repayment", expression="repayment_ratio < 1"),
        ]
    )
    facts = {"amount": 2000.0, "repayment_ratio": 0.5}
    assert [h.rule_id for h in ruleset.evaluate(facts).hits] == ["big-amount"]
    assert [h.rule_id for h in ruleset.evaluate(facts, "repayment").hits] == ["low-repayment"]
    assert ruleset.evaluate(facts, "installment_due") == Evaluation((), ())


def test_a_rule_that_raises_is_reported_and_the_others_still_run(make_rule: RuleFactory) -> None:
    ruleset = RuleSet(
        [
            make_rule(id="divides", expression="amount / days_past_due > 1"),
            make_rule(id="adds-text", expression="kind + 1 > 0"),
            make_rule(),
        ]
    )
    facts = {"amount": 2000.0, "days_past_due": 0, "kind": "purchase"}
    evaluation = ruleset.evaluate(facts)
    assert [hit.rule_id for hit in evaluation.hits] == ["big-amount"]
    assert evaluation.errors[0] == ("divides", "ZeroDivisionError: float division by zero")
    assert evaluation.errors[1][0] == "adds-text"
    assert evaluation.errors[1][1].startswith("TypeError: ")


def test_a_missing_fact_is_a_run_time_error_not_a_crash(make_rule: RuleFactory) -> None:
    evaluation = RuleSet([make_rule()]).evaluate({})
    assert evaluation.errors == (("big-amount", "NameError: name 'amount' is not defined"),)


@pytest.mark.parametrize(("amount", "hit"), [(5.0, True), (0.0, False)])
def test_a_truthy_result_is_a_hit(make_rule: RuleFactory, amount: float, hit: bool) -> None:
    evaluation = RuleSet([make_rule(expression="amount")]).evaluate({"amount": amount})
    assert bool(evaluation.hits) is hit


def test_evaluate_reads_any_mapping_and_does_not_change_it(make_rule: RuleFactory) -> None:
    facts = {"amount": 2000.0}
    evaluation = RuleSet([make_rule()]).evaluate(MappingProxyType(facts))
    assert len(evaluation.hits) == 1
    assert facts == {"amount": 2000.0}


def test_duplicate_ids_are_refused(make_rule: RuleFactory) -> None:
    with pytest.raises(RuleError, match="duplicate") as info:
        RuleSet([make_rule(), make_rule(expression="amount > 1")])
    assert info.value.rule_id == "big-amount"


def test_a_bad_expression_names_its_rule(make_rule: RuleFactory) -> None:
    with pytest.raises(RuleError) as info:
        RuleSet([make_rule(), make_rule(id="bad", expression="amount.real > 1")])
    assert (info.value.rule_id, info.value.line, info.value.column) == ("bad", 1, 0)


def test_version_is_12_hex_and_ignores_rule_order(make_rule: RuleFactory) -> None:
    rules = [make_rule(), make_rule(id="other", expression="amount > 5")]
    version = RuleSet(rules).version
    assert re.fullmatch(r"[0-9a-f]{12}", version)
    assert RuleSet(reversed(rules)).version == version


@pytest.mark.parametrize(
    "change",
    [
        {"expression": "amount >= 999"},
        {"severity": "low"},
        {"action": "block"},
        {"mode": "shadow"},
        {"version": 2},
        {"applies_to": "repayment"},
        {"kind": "delinquency"},
        {"id": "renamed"},
    ],
)
def test_version_changes_with_behaviour(make_rule: RuleFactory, change: dict[str, Any]) -> None:
    rule = make_rule()
    assert RuleSet([rule]).version != RuleSet([dataclasses.replace(rule, **change)]).version


def test_version_ignores_the_description(make_rule: RuleFactory) -> None:
    rule = make_rule()
    reworded = dataclasses.replace(rule, description="reworded")
    assert RuleSet([rule]).version == RuleSet([reworded]).version


def test_ruleset_survives_a_pickle_round_trip(make_rule: RuleFactory) -> None:
    ruleset = RuleSet([make_rule()])
    clone = pickle.loads(pickle.dumps(ruleset))
    assert (clone.rules, clone.version) == (ruleset.rules, ruleset.version)
    assert clone.evaluate({"amount": 2000.0}) == ruleset.evaluate({"amount": 2000.0})


# Named lists ------------------------------------------------------------------------------


@pytest.fixture
def blocked_merchants() -> dict[str, NamedList]:
    """m-1 blocked for good; m-2 until event time 1000."""
    entries: dict[str, float | None] = {"m-1": None, "m-2": 1000.0}
    return {"blocked": NamedList("blocked", "merchant", entries)}


@pytest.mark.parametrize(
    ("merchant_id", "at", "blocked"),
    [("m-1", 5000.0, True), ("m-2", 999.0, True), ("m-2", 1000.0, False), ("m-3", 0.0, False)],
)
def test_a_list_is_read_as_of_the_event_time(
    make_rule: RuleFactory,
    blocked_merchants: dict[str, NamedList],
    merchant_id: str,
    at: float,
    blocked: bool,
) -> None:
    ruleset = RuleSet([make_rule(expression='merchant_id in list("blocked")')])
    evaluation = ruleset.evaluate({"merchant_id": merchant_id}, lists=blocked_merchants, at=at)
    assert [hit.rule_id for hit in evaluation.hits] == (["big-amount"] if blocked else [])


def test_not_in_a_list_and_an_unknown_list_is_empty(
    make_rule: RuleFactory, blocked_merchants: dict[str, NamedList]
) -> None:
    ruleset = RuleSet(
        [
            make_rule(id="not-blocked", expression='merchant_id not in list("blocked")'),
            make_rule(id="unknown-list", expression='device_id in list("no such list")'),
            make_rule(id="no-device", expression='device_id not in list("no such list")'),
        ]
    )
    facts = {"merchant_id": "m-1", "device_id": ""}
    hits = ruleset.evaluate(facts, lists=blocked_merchants, at=0.0).hits
    assert [hit.rule_id for hit in hits] == ["no-device"]
    without_lists = ruleset.evaluate(facts).hits
    assert [hit.rule_id for hit in without_lists] == ["not-blocked", "no-device"]


def test_rules_without_lists_ignore_them(
    make_rule: RuleFactory, blocked_merchants: dict[str, NamedList]
) -> None:
    ruleset = RuleSet([make_rule()])
    plain = ruleset.evaluate({"amount": 2000.0})
    assert ruleset.evaluate({"amount": 2000.0}, lists=blocked_merchants, at=1.0) == plain


def test_a_list_rule_survives_a_pickle_round_trip(
    make_rule: RuleFactory, blocked_merchants: dict[str, NamedList]
) -> None:
    ruleset = RuleSet([make_rule(expression='merchant_id in list("blocked")')])
    clone = pickle.loads(pickle.dumps(ruleset))
    facts = {"merchant_id": "m-2"}
    assert clone.evaluate(facts, lists=blocked_merchants, at=10.0).hits
    assert clone.evaluate(facts, lists=blocked_merchants, at=10.0) == ruleset.evaluate(
        facts, lists=blocked_merchants, at=10.0
    )
