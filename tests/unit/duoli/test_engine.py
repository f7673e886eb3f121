"""AccountEngine: what one event (or the clock) produces, as the risk team and analysts see it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

import rules
from duoli.account import DAY, AccountState
from duoli.engine import AccountEngine, Outcome, day_of
from duoli.errors import InvalidEvent
from duoli.events import Event, parse_event
from duoli.merchant import MerchantFact
from duoli.rule_stats import RuleActivity
from duoli.settings import Settings
from duoli.simulate import SimulationConfig, simulate
from rules.control import Controls, NamedList, Snooze

Parsed = Callable[..., Event]

# The amounts decide which rules hit: 500+ the low rule and the shadow rule, 1000+ the
# high rule too; any cash withdrawal blocks; any spending while overdue is delinquency.
RULES = """
rules:
  - id: large-amount
    description: 1000 yuan or more
    expression: amount >= 1000
    severity: high
    action: review
    mode: active
    version: 1
  - id: medium-amount
    description: 500 yuan or more
    expression: amount >= 500
    severity: low
    action: alert
    mode: active
    version: 1
  - id: trial-critical
    description: being tried in shadow
    expression: amount >= 500
    severity: critical
    action: block
    mode: shadow
    version: 3
  - id: switched-off
    description: disabled, must never show
    expression: amount >= 1
    severity: critical
    action: block
    mode: disabled
    version: 1
  - id: cash-out
    description: any cash withdrawal
    expression: kind == "cash_withdrawal"
    severity: medium
    action: block
    mode: active
    version: 1
  - id: spending-while-overdue
    description: spending while an installment is overdue
    expression: days_past_due >= 1
    severity: medium
    action: review
    mode: active
    version: 1
    kind: delinquency
"""

DUE = "2026-04-01T00:00:00Z"
DUE_AT = 1775001600.0
START_ISO = "2026-03-02T09:00:00Z"  # conftest's START
START_AT = datetime.fromisoformat(START_ISO).timestamp()


@pytest.fixture
def ruleset() -> rules.RuleSet:
    return rules.parse_rules(RULES)


@pytest.fixture
def engine(ruleset: rules.RuleSet) -> AccountEngine:
    return AccountEngine(Settings(), Controls(ruleset))


def run(engine: AccountEngine, state: AccountState, *events: Event) -> list[Outcome]:
    return [engine.handle(state, event) for event in events]


def billed(engine: AccountEngine, parsed: Parsed, amount_due: float = 500.0) -> AccountState:
    """An opened account that spent 100 yuan and owes ``amount_due`` on i-1, due on DUE."""
    state = engine.new_state("acc-1")
    run(
        engine,
        state,
        parsed("credit_line_opened"),
        parsed("transaction", amount=100.0),
        parsed("installment_due", installment_id="i-1", amount_due=amount_due, due_at=DUE),
    )
    return state


# Score records ----------------------------------------------------------------------------


def test_a_transaction_yields_a_complete_score_record(
    engine: AccountEngine, ruleset: rules.RuleSet, parsed: Parsed
) -> None:
    event = parsed("transaction", amount=1200.0)
    score = engine.handle(engine.new_state("acc-1"), event).score
    assert score is not None
    assert score["event_id"] == event.event_id
    assert score["account_id"] == "acc-1"
    assert score["occurred_at"] == START_ISO
    assert score["rules_hit"] == ["large-amount", "medium-amount"]
    assert score["action"] == "review"
    assert score["ruleset_version"] == ruleset.version
    assert score["model_versions"]["rules"] == ruleset.version
    assert score["rule_errors"] == []
    assert 0.0 <= score["fraud_score"] <= 1.0


def test_fraud_score_is_the_noisy_or_of_active_fraud_severities(
    engine: AccountEngine, parsed: Parsed
) -> None:
    [outcome] = run(engine, engine.new_state("acc-1"), parsed("transaction", amount=1200.0))
    assert outcome.score is not None
    assert outcome.score["fraud_score"] == pytest.approx(1 - 0.4 * 0.9)  # one high, one low


def test_shadow_hits_are_listed_but_change_nothing(engine: AccountEngine, parsed: Parsed) -> None:
    [outcome] = run(engine, engine.new_state("acc-1"), parsed("transaction", amount=600.0))
    assert outcome.score is not None
    assert outcome.score["shadow_hits"] == ["trial-critical"]
    assert "trial-critical" not in outcome.score["rules_hit"]
    assert outcome.score["fraud_score"] == pytest.approx(0.1)  # the low rule alone
    assert outcome.score["action"] == "alert"  # not the shadow rule's block
    assert all("trial-critical" not in r for a in outcome.alerts for r in a["reasons"])


def test_shadow_only_hits_raise_no_alert() -> None:
    shadow_only = rules.parse_rules(RULES.replace("mode: active", "mode: shadow"))
    engine = AccountEngine(Settings(), Controls(shadow_only))
    event = parse_event(
        json.dumps(
            {
                "type": "transaction",
                "event_id": "t-shadow",
                "account_id": "acc-1",
                "occurred_at": START_ISO,
                "amount": 5000.0,
                "merchant_id": "m-1",
                "kind": "cash_withdrawal",
            }
        )
    )
    outcome = engine.handle(engine.new_state("acc-1"), event)
    assert outcome.alerts == []
    assert outcome.score is not None
    assert (outcome.score["fraud_score"], outcome.score["action"]) == (0.0, "allow")
    assert set(outcome.score["shadow_hits"]) == {
        "large-amount",
        "medium-amount",
        "trial-critical",
        "cash-out",
    }


def test_disabled_rules_never_appear(engine: AccountEngine, parsed: Parsed) -> None:
    [outcome] = run(engine, engine.new_state("acc-1"), parsed("transaction", amount=5000.0))
    assert outcome.score is not None
    listed = outcome.score["rules_hit"] + outcome.score["shadow_hits"]
    assert "switched-off" not in listed


def test_quiet_transaction_is_allowed_with_zero_score(
    engine: AccountEngine, parsed: Parsed
) -> None:
    [outcome] = run(engine, engine.new_state("acc-1"), parsed("transaction", amount=20.0))
    assert outcome.score is not None
    assert (outcome.score["fraud_score"], outcome.score["action"]) == (0.0, "allow")
    assert outcome.score["rules_hit"] == []
    assert outcome.alerts == []


def test_action_is_the_strongest_active_hit(engine: AccountEngine, parsed: Parsed) -> None:
    event = parsed("transaction", amount=1200.0, kind="cash_withdrawal")
    [outcome] = run(engine, engine.new_state("acc-1"), event)
    assert outcome.score is not None
    assert outcome.score["action"] == "block"  # cash-out beats review and alert
    assert outcome.score["fraud_score"] == pytest.approx(1 - 0.4 * 0.9 * 0.7)


def test_a_failing_rule_is_reported_and_the_others_still_score(parsed: Parsed) -> None:
    broken = rules.parse_rules(
        RULES
        + """
  - id: divides-by-zero
    description: broken on purpose
    expression: amount / (credit_limit - credit_limit) > 1
    severity: low
    action: alert
    mode: active
    version: 1
"""
    )
    engine = AccountEngine(Settings(), Controls(broken))
    [outcome] = run(engine, engine.new_state("acc-1"), parsed("transaction", amount=1200.0))
    assert outcome.score is not None
    assert outcome.score["rule_errors"] == ["divides-by-zero"]
    assert outcome.score["rules_hit"] == ["large-amount", "medium-amount"]


def test_delinquency_rules_on_a_transaction_alert_but_are_not_fraud_evidence(
    engine: AccountEngine, parsed: Parsed
) -> None:
    state = billed(engine, parsed)
    late_spend = parsed("transaction", amount=50.0, occurred_at="2026-04-03T12:00:00Z")
    outcome = engine.handle(state, late_spend)
    assert outcome.score is not None
    assert outcome.score["rules_hit"] == ["spending-while-overdue"]
    assert outcome.score["fraud_score"] == 0.0
    assert [a["kind"] for a in outcome.alerts] == ["delinquency"]
    assert outcome.alerts[0]["account"]["days_past_due"] == 2


# Controls: snoozes, lists, swaps, runtime errors ------------------------------------------


def snoozed(ruleset: rules.RuleSet, *snoozes: tuple[str, str, str, float]) -> AccountEngine:
    """An engine with ``(rule_id, scope, target, until)`` snoozes."""
    made = tuple(Snooze(*fields, reason="known false positive") for fields in snoozes)
    return AccountEngine(Settings(), Controls(ruleset, snoozes=made))


def test_a_snoozed_hit_neither_scores_nor_alerts_but_is_counted(
    ruleset: rules.RuleSet, parsed: Parsed
) -> None:
    engine = snoozed(ruleset, ("large-amount", "account", "acc-1", START_AT + DAY))
    [outcome] = run(engine, engine.new_state("acc-1"), parsed("transaction", amount=1200.0))
    assert outcome.score is not None
    assert outcome.score["rules_hit"] == ["medium-amount"]
    assert outcome.score["snoozed_hits"] == ["large-amount"]
    assert outcome.score["fraud_score"] == pytest.approx(0.1)  # the low rule alone
    assert outcome.score["action"] == "alert"  # not large-amount's review
    [alert] = outcome.alerts
    assert alert["reasons"] == ["medium-amount: 500 yuan or more"]
    assert outcome.rule_activity is not None
    assert outcome.rule_activity.hits == ("medium-amount",)
    assert outcome.rule_activity.snoozed == ("large-amount",)


def test_a_snooze_ends_at_its_event_time_and_covers_only_its_target(
    ruleset: rules.RuleSet, parsed: Parsed
) -> None:
    engine = snoozed(ruleset, ("large-amount", "merchant", "m-9", START_AT + DAY))
    state = engine.new_state("acc-1")
    at_m9, elsewhere, later = run(
        engine,
        state,
        parsed("transaction", amount=1200.0, merchant_id="m-9"),
        parsed("transaction", amount=1200.0, merchant_id="m-1", minutes=5),
        parsed("transaction", amount=1200.0, merchant_id="m-9", days=1),
    )
    assert at_m9.score is not None and at_m9.score["snoozed_hits"] == ["large-amount"]
    for outcome in (elsewhere, later):
        assert outcome.score is not None
        assert outcome.score["snoozed_hits"] == []
        assert outcome.score["rules_hit"] == ["large-amount", "medium-amount"]


def test_a_fully_snoozed_event_raises_no_alert(ruleset: rules.RuleSet, parsed: Parsed) -> None:
    far = START_AT + 30 * DAY
    engine = snoozed(
        ruleset,
        ("large-amount", "account", "acc-1", far),
        ("medium-amount", "account", "acc-1", far),
    )
    [outcome] = run(engine, engine.new_state("acc-1"), parsed("transaction", amount=1200.0))
    assert outcome.alerts == []
    assert outcome.score is not None
    assert (outcome.score["fraud_score"], outcome.score["action"]) == (0.0, "allow")
    assert outcome.score["shadow_hits"] == ["trial-critical"]  # a snooze leaves shadow alone


def test_a_shadow_hit_is_counted_but_never_alerts_nor_scores(
    engine: AccountEngine, parsed: Parsed
) -> None:
    [outcome] = run(engine, engine.new_state("acc-1"), parsed("transaction", amount=600.0))
    assert outcome.rule_activity is not None
    assert outcome.rule_activity.shadow == ("trial-critical",)
    assert outcome.rule_activity.hits == ("medium-amount",)
    assert [alert["severity"] for alert in outcome.alerts] == ["low"]  # not critical


def test_a_rule_failing_at_run_time_is_counted_with_its_message(parsed: Parsed) -> None:
    broken = rules.parse_rules(
        RULES
        + """
  - id: log-of-zero
    description: log of a zero amount difference, broken on purpose
    expression: log(amount - amount) > 1
    severity: critical
    action: block
    mode: active
    version: 1
"""
    )
    engine = AccountEngine(Settings(), Controls(broken))
    [outcome] = run(engine, engine.new_state("acc-1"), parsed("transaction", amount=1200.0))
    assert outcome.score is not None
    assert outcome.score["rule_errors"] == ["log-of-zero"]
    assert outcome.score["rules_hit"] == ["large-amount", "medium-amount"]
    assert outcome.score["action"] == "review"
    assert len(outcome.alerts) == 1
    assert outcome.rule_activity is not None
    assert outcome.rule_activity.errors == (("log-of-zero", "ValueError: math domain error"),)


BLOCKED = """
rules:
  - id: blocked-merchant
    description: the merchant is on the blocked list
    expression: merchant_id in list("blocked_merchants")
    severity: critical
    action: block
    mode: active
    version: 1
"""


def test_a_list_entry_counts_until_its_event_time_expiry(parsed: Parsed) -> None:
    blocked = NamedList("blocked_merchants", "merchant", {"m-9": START_AT + DAY})
    controls = Controls(rules.parse_rules(BLOCKED), {blocked.name: blocked})
    engine = AccountEngine(Settings(), controls)
    state = engine.new_state("acc-1")
    before, after = run(
        engine,
        state,
        parsed("transaction", merchant_id="m-9", hours=23),
        parsed("transaction", merchant_id="m-9", hours=24),
    )
    assert before.score is not None and before.score["action"] == "block"
    assert after.score is not None and after.score["rules_hit"] == []


def test_swapped_controls_apply_from_the_next_event(engine: AccountEngine, parsed: Parsed) -> None:
    state = engine.new_state("acc-1")
    [first] = run(engine, state, parsed("transaction", amount=1200.0))
    stricter = rules.parse_rules(RULES.replace("amount >= 1000", "amount >= 5000"))
    engine.controls = Controls(stricter)
    [second] = run(engine, state, parsed("transaction", amount=1200.0, minutes=5))
    assert first.score is not None and second.score is not None
    assert first.score["rules_hit"] == ["large-amount", "medium-amount"]
    assert second.score["rules_hit"] == ["medium-amount"]
    assert engine.ruleset is stricter
    assert second.score["ruleset_version"] == stricter.version


# Alerts -----------------------------------------------------------------------------------


def test_fraud_alert_carries_severity_reasons_and_event_time(
    engine: AccountEngine, parsed: Parsed
) -> None:
    event = parsed("transaction", amount=1200.0, minutes=5)
    [outcome] = run(engine, engine.new_state("acc-1"), event)
    [alert] = outcome.alerts
    assert alert["kind"] == "fraud"
    assert alert["severity"] == "high"  # the worst of high and low
    assert alert["account_id"] == "acc-1"
    assert alert["event_ids"] == [event.event_id]
    assert alert["reasons"] == [
        "large-amount: 1000 yuan or more",
        "medium-amount: 500 yuan or more",
    ]
    assert alert["created_at"] == "2026-03-02T09:05:00Z"
    assert outcome.score is not None
    assert alert["score"] == outcome.score["fraud_score"]
    assert alert["account"]["credit_limit"] == 5000.0


def test_the_same_event_gives_the_same_alert_id_in_fresh_engines(
    ruleset: rules.RuleSet, parsed: Parsed
) -> None:
    event = parsed("transaction", amount=1200.0)
    first, second = (
        AccountEngine(Settings(), Controls(ruleset)).handle(
            AccountState.fresh("acc-1", 5000.0, 0.18), event
        )
        for _ in range(2)
    )
    assert [a["alert_id"] for a in first.alerts] == [a["alert_id"] for a in second.alerts]
    other = parsed("transaction", amount=1200.0)
    third = AccountEngine(Settings(), Controls(ruleset)).handle(
        AccountState.fresh("acc-1", 5000.0, 0.18), other
    )
    assert third.alerts[0]["alert_id"] != first.alerts[0]["alert_id"]


def test_one_event_can_raise_a_fraud_and_a_delinquency_alert(
    engine: AccountEngine, parsed: Parsed
) -> None:
    state = billed(engine, parsed)
    event = parsed("transaction", amount=1200.0, occurred_at="2026-04-10T00:00:00Z")
    alerts = engine.handle(state, event).alerts
    assert sorted(a["kind"] for a in alerts) == ["delinquency", "fraud"]
    assert len({a["alert_id"] for a in alerts}) == 2


# check() ----------------------------------------------------------------------------------


def test_a_repeated_event_id_is_refused(engine: AccountEngine, parsed: Parsed) -> None:
    state = engine.new_state("acc-1")
    event = parsed("transaction")
    engine.check(state, event, clock=event.at)
    engine.handle(state, event)
    with pytest.raises(InvalidEvent) as info:
        engine.check(state, event, clock=event.at)
    assert info.value.reason == "duplicate_event_id"


def test_an_event_beyond_the_allowed_lateness_is_too_late(
    settings_factory: Callable[..., Settings], ruleset: rules.RuleSet, parsed: Parsed
) -> None:
    engine = AccountEngine(settings_factory(allowed_lateness_seconds=600), Controls(ruleset))
    event = parsed("transaction")
    with pytest.raises(InvalidEvent) as info:
        engine.check(engine.new_state("acc-1"), event, clock=event.at + 601)
    assert info.value.reason == "too_late"


@pytest.mark.parametrize("behind", [0.0, 599.0, 600.0])
def test_an_event_within_the_allowed_lateness_passes(
    settings_factory: Callable[..., Settings],
    ruleset: rules.RuleSet,
    parsed: Parsed,
    behind: float,
) -> None:
    engine = AccountEngine(settings_factory(allowed_lateness_seconds=600), Controls(ruleset))
    event = parsed("repayment")
    engine.check(engine.new_state("acc-1"), event, clock=event.at + behind)


def test_a_fraud_label_is_never_too_late(engine: AccountEngine, parsed: Parsed) -> None:
    label = parsed("fraud_label")
    engine.check(engine.new_state("acc-1"), label, clock=label.at + 60 * DAY)


def test_a_repeated_fraud_label_is_still_a_duplicate(engine: AccountEngine, parsed: Parsed) -> None:
    state = engine.new_state("acc-1")
    label = parsed("fraud_label")
    engine.handle(state, label)
    with pytest.raises(InvalidEvent) as info:
        engine.check(state, label, clock=label.at + 60 * DAY)
    assert info.value.reason == "duplicate_event_id"


# Accounts never opened --------------------------------------------------------------------


def test_a_never_opened_account_gets_the_default_terms(
    settings_factory: Callable[..., Settings], ruleset: rules.RuleSet, parsed: Parsed
) -> None:
    settings = settings_factory(default_credit_limit=2000.0, default_apr=0.21)
    engine = AccountEngine(settings, Controls(ruleset))
    state = engine.new_state("ghost")
    outcome = engine.handle(state, parsed("transaction", account_id="ghost", amount=500.0))
    assert outcome.account is not None
    (decision,) = outcome.decisions  # the policy starts from the default terms
    assert (decision["old_limit"], decision["old_apr"]) == (2000.0, 0.21)
    assert outcome.account["credit_limit"] == 2000.0
    assert outcome.account["apr"] == decision["new_apr"] != 0.21  # the pd band's rate
    assert outcome.account["utilisation"] == 0.25
    assert outcome.alerts[0]["account"]["credit_limit"] == 2000.0
    assert outcome.score is not None and outcome.score["account_id"] == "ghost"


def test_opening_replaces_the_default_terms(engine: AccountEngine, parsed: Parsed) -> None:
    state = engine.new_state("acc-1")
    [outcome] = run(engine, state, parsed("credit_line_opened", credit_limit=8000, apr=0.12))
    assert outcome.account is not None
    assert (outcome.account["credit_limit"], outcome.account["apr"]) == (8000.0, 0.12)
    assert outcome.score is None  # only transactions are scored


# Repayment rules --------------------------------------------------------------------------


@pytest.fixture
def library_engine() -> AccountEngine:
    return AccountEngine(Settings(), Controls(rules.load_rules(rules.LIBRARY_DIR)))


def test_a_minimum_repayment_raises_a_delinquency_alert(
    library_engine: AccountEngine, parsed: Parsed
) -> None:
    state = billed(library_engine, parsed)
    repayment = parsed("repayment", amount=40.0, installment_id="i-1", days=5)
    outcome = library_engine.handle(state, repayment)
    [alert] = outcome.alerts
    assert (alert["kind"], alert["severity"]) == ("delinquency", "medium")
    assert alert["reasons"][0].startswith("minimum-only-repayment: ")
    assert alert["event_ids"] == [repayment.event_id]
    assert outcome.score is None


def test_a_partial_repayment_while_overdue_raises_a_delinquency_alert(
    library_engine: AccountEngine, parsed: Parsed
) -> None:
    state = billed(library_engine, parsed)
    repayment = parsed("repayment", amount=200.0, occurred_at="2026-04-03T12:00:00Z")
    [alert] = library_engine.handle(state, repayment).alerts
    assert (alert["kind"], alert["severity"]) == ("delinquency", "low")
    assert alert["reasons"][0].startswith("partial-repayment-while-overdue: ")
    assert alert["account"]["days_past_due"] == 2


@pytest.mark.parametrize("when", ["2026-03-20T00:00:00Z", "2026-04-03T12:00:00Z"])
def test_a_full_repayment_raises_nothing(
    library_engine: AccountEngine, parsed: Parsed, when: str
) -> None:
    state = billed(library_engine, parsed)
    assert (
        library_engine.handle(state, parsed("repayment", amount=500.0, occurred_at=when)).alerts
        == []
    )


# Merchant facts ---------------------------------------------------------------------------


def epoch_day(text: str) -> int:
    return (datetime.fromisoformat(text).date() - datetime(1970, 1, 1, tzinfo=UTC).date()).days


def test_a_transaction_counts_for_its_merchant_on_its_day(
    engine: AccountEngine, parsed: Parsed
) -> None:
    event = parsed(
        "transaction", amount=80.0, merchant_id="m-7", occurred_at="2026-03-05T23:59:59Z"
    )
    [outcome] = run(engine, engine.new_state("acc-1"), event)
    assert outcome.merchant_facts == [MerchantFact("m-7", epoch_day("2026-03-05"), 80.0)]
    assert day_of(event.at) == epoch_day("2026-03-05")


def test_a_late_transaction_counts_for_its_merchant_on_the_day_it_became_known(
    engine: AccountEngine, parsed: Parsed
) -> None:
    """Once its partition's clock is past midnight, yesterday's features of the merchant
    may already have been read: the late sale counts today, so a replay never depends on
    which came first."""
    late = parsed("transaction", merchant_id="m-7", occurred_at="2026-03-05T23:48:22Z")
    clock = datetime.fromisoformat("2026-03-06T00:30:00+00:00").timestamp()
    outcome = engine.handle(engine.new_state("acc-1"), late, None, clock)
    assert [fact.day for fact in outcome.merchant_facts] == [epoch_day("2026-03-06")]


@pytest.mark.parametrize("is_fraud", [True, False])
def test_a_label_counts_for_the_labelled_transactions_merchant(
    engine: AccountEngine, parsed: Parsed, is_fraud: bool
) -> None:
    state = engine.new_state("acc-1")
    tx = parsed("transaction", merchant_id="m-9")
    run(engine, state, tx, parsed("transaction", merchant_id="m-other", minutes=5))
    label = parsed("fraud_label", transaction_id=tx.event_id, is_fraud=is_fraud, days=12)
    [outcome] = run(engine, state, label)
    assert outcome.merchant_facts == [
        MerchantFact("m-9", epoch_day("2026-03-14"), 0.0, label=is_fraud)
    ]
    assert outcome.account is not None
    assert outcome.account["status"] == ("fraud_confirmed" if is_fraud else "active")


def test_a_label_for_an_unknown_transaction_gives_no_merchant_fact(
    engine: AccountEngine, parsed: Parsed
) -> None:
    state = engine.new_state("acc-1")
    run(engine, state, parsed("transaction"))
    [outcome] = run(engine, state, parsed("fraud_label", transaction_id="never-seen", minutes=5))
    assert outcome.merchant_facts == []


def test_a_label_for_a_transaction_gone_from_history_gives_no_merchant_fact(
    engine: AccountEngine, parsed: Parsed
) -> None:
    state = engine.new_state("acc-1")
    old = parsed("transaction", merchant_id="m-old")
    run(engine, state, old, parsed("transaction", days=40))
    [outcome] = run(engine, state, parsed("fraud_label", transaction_id=old.event_id, days=41))
    assert outcome.merchant_facts == []


def test_a_fraud_label_credits_the_fraud_rules_that_matched_its_transaction_once(
    ruleset: rules.RuleSet, parsed: Parsed
) -> None:
    engine = snoozed(ruleset, ("medium-amount", "account", "acc-1", START_AT + 60 * DAY))
    state = billed(engine, parsed)
    tx = parsed("transaction", amount=1200.0, occurred_at="2026-04-03T12:00:00Z")
    [scored, _] = run(
        engine, state, tx, parsed("transaction", amount=10.0, occurred_at="2026-04-03T13:00:00Z")
    )
    assert scored.score is not None and "spending-while-overdue" in scored.score["rules_hit"]
    label = parsed("fraud_label", transaction_id=tx.event_id, occurred_at="2026-04-12T00:00:00Z")
    [credit] = run(engine, state, label)
    assert credit.rule_activity is not None
    assert credit.rule_activity.at == tx.at  # the transaction's day, not the label's
    # active, shadow and snoozed alike; not the delinquency rule, which labels do not measure
    assert sorted(credit.rule_activity.frauds) == [
        "large-amount",
        "medium-amount",
        "trial-critical",
    ]
    again = parsed("fraud_label", transaction_id=tx.event_id, occurred_at="2026-04-13T00:00:00Z")
    [repeat] = run(engine, state, again)
    assert repeat.rule_activity is None


def test_what_a_label_credits_survives_a_restart(ruleset: rules.RuleSet, parsed: Parsed) -> None:
    engine = snoozed(ruleset, ("large-amount", "account", "acc-1", START_AT + DAY))
    state = engine.new_state("acc-1")
    tx = parsed("transaction", amount=1200.0)
    [scored] = run(engine, state, tx)
    assert scored.rule_activity is not None
    assert scored.rule_activity.measured == ("medium-amount", "trial-critical", "large-amount")
    [credit] = run(engine, reborn(state), parsed("fraud_label", transaction_id=tx.event_id, days=9))
    assert credit.rule_activity == RuleActivity(at=tx.at, frauds=scored.rule_activity.measured)


@pytest.mark.parametrize("case", ["legitimate", "no rule matched", "gone from history"])
def test_a_label_credits_nothing_without_a_remembered_hit(
    engine: AccountEngine, parsed: Parsed, case: str
) -> None:
    state = engine.new_state("acc-1")
    tx = parsed("transaction", amount=10.0 if case == "no rule matched" else 1200.0)
    run(engine, state, tx, parsed("transaction", days=40 if case == "gone from history" else 1))
    is_fraud = case != "legitimate"
    label_day = 41 if case == "gone from history" else 2
    label = parsed("fraud_label", transaction_id=tx.event_id, is_fraud=is_fraud, days=label_day)
    [outcome] = run(engine, state, label)
    assert outcome.rule_activity is None
    assert len(state.hit_ids) == len(state.hit_rules) == (1 if case == "legitimate" else 0)


# advance(): delinquency over time ---------------------------------------------------------


def test_installment_due_announces_the_first_crossing(
    engine: AccountEngine, parsed: Parsed
) -> None:
    state = engine.new_state("acc-1")
    [outcome] = run(engine, state, parsed("installment_due", due_at=DUE))
    assert outcome.next_crossing == DUE_AT + DAY


def test_each_threshold_alerts_once_at_its_exact_moment(
    engine: AccountEngine, parsed: Parsed
) -> None:
    state = engine.new_state("acc-1")
    bill = parsed("installment_due", installment_id="i-1", amount_due=500.0, due_at=DUE)
    run(engine, state, parsed("transaction", amount=1000.0), bill)
    assert engine.advance(state, DUE_AT + DAY - 1).alerts == []
    first = engine.advance(state, DUE_AT + DAY)
    [alert] = first.alerts
    assert alert["created_at"] == "2026-04-02T00:00:00Z"
    assert (alert["kind"], alert["severity"], alert["score"]) == ("delinquency", "low", 1.0)
    assert alert["event_ids"] == [bill.event_id]
    assert alert["reasons"] == ["dpd_1: installment i-1 is 1 days past due with 500.00 yuan owed"]
    assert alert["account"]["days_past_due"] == 1
    assert alert["account"]["status"] == "overdue"
    assert first.next_crossing == DUE_AT + 7 * DAY
    assert engine.advance(state, DUE_AT + 3 * DAY).alerts == []


def test_later_thresholds_alert_with_growing_severity(
    engine: AccountEngine, parsed: Parsed
) -> None:
    state = billed(engine, parsed)
    engine.advance(state, DUE_AT + DAY)
    seven = engine.advance(state, DUE_AT + 7 * DAY).alerts
    thirty = engine.advance(state, DUE_AT + 30 * DAY).alerts
    assert [(a["severity"], a["created_at"]) for a in seven + thirty] == [
        ("medium", "2026-04-08T00:00:00Z"),
        ("high", "2026-05-01T00:00:00Z"),
    ]
    assert [a["account"]["days_past_due"] for a in seven + thirty] == [7, 30]
    assert engine.advance(state, DUE_AT + 400 * DAY).alerts == []
    assert engine.advance_preview(state) is None


def test_a_clock_jump_fires_every_passed_threshold_with_its_own_moment(
    engine: AccountEngine, parsed: Parsed
) -> None:
    state = billed(engine, parsed)
    alerts = engine.advance(state, DUE_AT + 40 * DAY).alerts
    assert [a["created_at"] for a in alerts] == [
        "2026-04-02T00:00:00Z",
        "2026-04-08T00:00:00Z",
        "2026-05-01T00:00:00Z",
    ]
    assert [a["severity"] for a in alerts] == ["low", "medium", "high"]
    assert len({a["alert_id"] for a in alerts}) == 3


def test_each_delinquency_alert_shows_the_account_as_of_its_own_crossing(
    engine: AccountEngine, parsed: Parsed
) -> None:
    """Live, the ticking clock fires dpd 1, 7 and 30 one by one; a replay over a quiet
    partition fires them in one advance. Event time everywhere: both must say the same."""
    one_by_one = billed(engine, parsed)
    live = [engine.advance(one_by_one, DUE_AT + days * DAY).alerts[0] for days in (1, 7, 30)]
    replayed = engine.advance(billed(engine, parsed), DUE_AT + 30 * DAY).alerts
    assert [a["account"]["days_past_due"] for a in replayed] == [1, 7, 30]

    def without_bill_id(alerts: list[dict]) -> list[dict]:  # the two bills have their own ids
        return [{k: v for k, v in alert.items() if k != "event_ids"} for alert in alerts]

    assert without_bill_id(replayed) == without_bill_id(live)


def test_grace_and_thresholds_come_from_the_settings(
    settings_factory: Callable[..., Settings], ruleset: rules.RuleSet, parsed: Parsed
) -> None:
    engine = AccountEngine(
        settings_factory(overdue_grace_days=2, dpd_thresholds=(3, 90)), Controls(ruleset)
    )
    state = billed(engine, parsed)
    assert engine.advance(state, DUE_AT + 5 * DAY - 1).alerts == []
    [early] = engine.advance(state, DUE_AT + 5 * DAY).alerts
    assert (early["created_at"], early["severity"]) == ("2026-04-06T00:00:00Z", "low")
    assert early["account"]["days_past_due"] == 3
    assert engine.advance(state, DUE_AT + 91 * DAY).alerts == []
    [late] = engine.advance(state, DUE_AT + 92 * DAY).alerts
    assert (late["created_at"], late["severity"]) == ("2026-07-02T00:00:00Z", "critical")


def test_a_repaid_installment_never_alerts(engine: AccountEngine, parsed: Parsed) -> None:
    state = billed(engine, parsed)
    outcome = engine.handle(state, parsed("repayment", amount=500.0, days=10))
    assert outcome.next_crossing is None
    assert engine.advance(state, DUE_AT + 100 * DAY).alerts == []


def test_a_partly_repaid_installment_alerts_with_what_is_still_owed(
    engine: AccountEngine, parsed: Parsed
) -> None:
    state = billed(engine, parsed)
    engine.handle(state, parsed("repayment", amount=120.0, days=10))
    [alert] = engine.advance(state, DUE_AT + DAY).alerts
    assert "380.00 yuan owed" in alert["reasons"][0]


def test_each_installment_alerts_separately(engine: AccountEngine, parsed: Parsed) -> None:
    state = billed(engine, parsed)
    engine.handle(
        state, parsed("installment_due", installment_id="i-2", amount_due=90.0, due_at=DUE)
    )
    alerts = engine.advance(state, DUE_AT + DAY).alerts
    assert [a["reasons"][0].split(" is ")[0] for a in alerts] == [
        "dpd_1: installment i-1",
        "dpd_1: installment i-2",
    ]
    assert alerts[0]["event_ids"] != alerts[1]["event_ids"]
    assert alerts[0]["alert_id"] != alerts[1]["alert_id"]


# Determinism ------------------------------------------------------------------------------


def drive(engine: AccountEngine, events: list[dict[str, Any]], restart: bool) -> list[Any]:
    """Feed a book through one engine as a single partition would; with ``restart``, each
    state written to the table goes through its changelog form, as after a worker restart."""
    states: dict[str, AccountState] = {}
    clock = 0.0
    records: list[Any] = []
    for raw in events:
        event = parse_event(json.dumps(raw))
        state = states.get(event.account_id) or engine.new_state(event.account_id)
        try:
            engine.check(state, event, clock)
        except InvalidEvent as error:
            records.append({"dead_letter": error.reason, "event_id": event.event_id})
            continue
        outcome = engine.handle(state, event)
        states[event.account_id] = reborn(state) if restart else state
        clock = max(clock, event.at)
        records.append(_as_json(outcome))
        for account_id in sorted(states):
            advanced = engine.advance(states[account_id], clock)
            if advanced.account is not None and restart:  # thresholds passed: state moved
                states[account_id] = reborn(states[account_id])
            records.append(_as_json(advanced))
    return records


def reborn(state: AccountState) -> AccountState:
    """The state as a restarted worker reads it back from the table's changelog."""
    return AccountState.from_json(json.loads(json.dumps(state.to_json())))


def _as_json(outcome: Outcome) -> str:
    return json.dumps(
        {
            "score": outcome.score,
            "alerts": outcome.alerts,
            "facts": [dataclasses.astuple(fact) for fact in outcome.merchant_facts],
            "account": outcome.account,
            "next": outcome.next_crossing,
            "rules": dataclasses.asdict(outcome.rule_activity) if outcome.rule_activity else None,
            "decisions": outcome.decisions,
        },
        sort_keys=True,
    )


@pytest.fixture(scope="module")
def book() -> list[dict[str, Any]]:
    return list(simulate(SimulationConfig(accounts=20, days=40, seed=5)))


def test_the_same_events_give_the_same_outcomes_in_fresh_engines(
    book: list[dict[str, Any]],
) -> None:
    library = rules.load_rules(rules.LIBRARY_DIR)
    first = drive(AccountEngine(Settings(), Controls(library)), book, restart=False)
    second = drive(AccountEngine(Settings(), Controls(library)), book, restart=False)
    assert first == second
    outputs = [json.loads(record) for record in first if isinstance(record, str)]
    assert sum(1 for o in outputs if o["score"]) == sum(
        1 for e in book if e["type"] == "transaction"
    )
    assert {a["kind"] for o in outputs for a in o["alerts"]} == {"fraud", "delinquency"}
    actions = {d["action"] for o in outputs for d in o["decisions"]}
    assert {"freeze", "decrease"} <= actions  # the book's delinquents and frauds


def test_a_restart_from_the_changelog_changes_no_outcome(book: list[dict[str, Any]]) -> None:
    library = rules.load_rules(rules.LIBRARY_DIR)
    assert drive(AccountEngine(Settings(), Controls(library)), book, restart=True) == drive(
        AccountEngine(Settings(), Controls(library)), book, restart=False
    )


# Credit decisions ---------------------------------------------------------------------------


def test_a_confirmed_fraud_label_freezes_the_account_on_that_event(
    engine: AccountEngine, parsed: Parsed
) -> None:
    state = engine.new_state("acc-1")
    run(engine, state, parsed("credit_line_opened", credit_limit=8000.0, apr=0.2))
    spend = parsed("transaction", amount=100.0, minutes=1)
    run(engine, state, spend)
    label = parsed("fraud_label", transaction_id=spend.event_id, is_fraud=True, days=3)
    (decision,) = engine.handle(state, label).decisions
    assert decision["action"] == "freeze" and decision["event_id"] == label.event_id
    assert "CONFIRMED_FRAUD" in decision["reasons"] and decision["new_limit"] == 8000.0
    assert state.frozen and state.frozen_at == label.at


def test_a_legitimate_label_freezes_nothing(engine: AccountEngine, parsed: Parsed) -> None:
    state = engine.new_state("acc-1")
    spend = parsed("transaction", amount=100.0)
    run(engine, state, spend)
    label = parsed("fraud_label", transaction_id=spend.event_id, is_fraud=False, days=3)
    assert engine.handle(state, label).decisions == [] and not state.frozen


def test_a_blocking_rule_freezes_but_a_shadow_one_does_not(
    engine: AccountEngine, parsed: Parsed
) -> None:
    state = engine.new_state("acc-1")
    shadowed = engine.handle(state, parsed("transaction", amount=600.0))  # shadow rule blocks
    assert all(d["action"] != "freeze" for d in shadowed.decisions) and not state.frozen
    cash = engine.handle(state, parsed("transaction", amount=50.0, kind="cash_withdrawal"))
    assert [d["reasons"][0] for d in cash.decisions] == ["RULE_BLOCK"] and state.frozen


def test_an_unpaid_bill_is_cut_at_the_policys_threshold_then_frozen_without_new_events(
    engine: AccountEngine, parsed: Parsed
) -> None:
    state = billed(engine, parsed)
    engine.advance(state, DUE_AT + 14 * DAY)
    cut = engine.advance(state, DUE_AT + 15 * DAY)  # the default policy cuts at 15 days
    assert cut.alerts == []  # 15 is not an alert threshold
    assert [(d["action"], d["effective_at"]) for d in cut.decisions] == [
        ("decrease", "2026-04-16T00:00:00Z")
    ]
    assert cut.decisions[0]["event_id"].endswith("#dpd15") and cut.account is not None
    frozen = engine.advance(state, DUE_AT + 31 * DAY)
    assert [d["action"] for d in frozen.decisions] == ["freeze"]
    assert [a["kind"] for a in frozen.alerts] == ["delinquency"]
    assert frozen.account is not None and frozen.account["status"] == "frozen"


def test_the_same_event_decides_the_same_in_a_fresh_engine(
    ruleset: rules.RuleSet, parsed: Parsed
) -> None:
    event = parsed("transaction", amount=50.0, kind="cash_withdrawal")
    first = AccountEngine(Settings(), Controls(ruleset))
    second = AccountEngine(Settings(), Controls(ruleset))
    decided = [e.handle(e.new_state("acc-1"), event).decisions for e in (first, second)]
    assert decided[0] == decided[1] != []


def test_the_policy_file_comes_from_the_settings(
    tmp_path: Any, ruleset: rules.RuleSet, parsed: Parsed
) -> None:
    from importlib import resources

    text = resources.files("duoli").joinpath("policies/default.yaml").read_text("utf-8")
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace('version: "2026-11-29.1"', 'version: "mine"'))
    engine = AccountEngine(Settings(policy_file=path), Controls(ruleset))
    outcome = engine.handle(engine.new_state("acc-1"), parsed("transaction", amount=50.0))
    assert engine.policy.version == "mine"
    assert [d["policy_version"] for d in outcome.decisions] == ["mine"]


def test_a_rules_only_engine_neither_scores_with_models_nor_decides(
    ruleset: rules.RuleSet, parsed: Parsed
) -> None:
    engine = AccountEngine(Settings(), Controls(ruleset), rules_only=True)
    state = engine.new_state("acc-1")
    outcome = engine.handle(state, parsed("transaction", amount=50.0, kind="cash_withdrawal"))
    assert outcome.decisions == [] and not state.frozen
    assert outcome.score is None and outcome.training == []
    assert outcome.facts is not None and outcome.merchant_facts
    assert outcome.account is None
