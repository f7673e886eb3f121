"""Output records: event-time stamps, deterministic ids, the rules score and the live state."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from duoli.account import DAY, AccountState, Installment
from duoli.delinquency import Crossing
from duoli.events import event_time
from duoli.scoring import (
    SEVERITY_WEIGHT,
    account_fields,
    alert_id,
    delinquency_alert,
    iso,
    rule_alerts,
    rules_score,
    score_record,
    strongest_action,
)
from rules import RuleHit

DUE = 1775001600.0  # 2026-04-01T00:00:00Z
SEVERITY_NAMES = list(SEVERITY_WEIGHT)
ACTION_NAMES = ["alert", "review", "block"]


def hit(
    rule_id: str = "r",
    severity: str = "low",
    action: str = "alert",
    mode: str = "active",
    kind: str = "fraud",
) -> RuleHit:
    return RuleHit(rule_id, 1, severity, action, mode, kind, f"{rule_id} fired")


severities = st.lists(st.sampled_from(SEVERITY_NAMES), max_size=30)


# iso ---------------------------------------------------------------------------------------


def test_iso_is_utc_with_a_z_suffix() -> None:
    assert iso(DUE) == "2026-04-01T00:00:00Z"
    assert iso(DUE + 0.25) == "2026-04-01T00:00:00.250000Z"


@given(st.integers(min_value=946_684_800, max_value=4_102_444_799))
def test_iso_reads_back_as_the_same_instant(seconds: int) -> None:
    assert event_time(iso(float(seconds))) == seconds


# alert_id ----------------------------------------------------------------------------------


def test_alert_id_is_stable_and_short_hex() -> None:
    first = alert_id("fraud", "tx-1")
    assert first == alert_id("fraud", "tx-1")
    assert re.fullmatch(r"[0-9a-f]{24}", first)


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_different_causes_give_different_alert_ids(cause: str, other: str) -> None:
    if cause != other:
        assert alert_id("fraud", cause) != alert_id("fraud", other)
    assert alert_id("fraud", cause) != alert_id("delinquency", cause)


# rules_score -------------------------------------------------------------------------------


def test_no_hit_scores_zero_and_one_hit_scores_its_weight() -> None:
    assert rules_score([]) == 0.0
    for severity, weight in SEVERITY_WEIGHT.items():
        assert rules_score([hit(severity=severity)]) == pytest.approx(weight)


def test_hits_combine_by_noisy_or() -> None:
    score = rules_score([hit("a", "high"), hit("b", "low")])
    assert score == pytest.approx(1 - 0.4 * 0.9)


@given(severities)
def test_score_stays_within_zero_and_one(names: list[str]) -> None:
    score = rules_score([hit(severity=name) for name in names])
    assert 0.0 <= score <= 1.0
    assert (score == 0.0) == (not names)


def test_many_hits_approach_but_never_reach_certainty() -> None:
    assert rules_score([hit(f"r{i}", "critical") for i in range(7)]) < 1.0


@given(severities, st.sampled_from(SEVERITY_NAMES))
def test_another_hit_never_lowers_the_score(names: list[str], extra: str) -> None:
    before = rules_score([hit(severity=name) for name in names])
    after = rules_score([hit(severity=name) for name in [*names, extra]])
    assert after >= before
    if before < 0.99:  # far from saturation, every hit adds visible evidence
        assert after > before


@given(severities, st.randoms(use_true_random=False))
def test_score_does_not_depend_on_rule_order(names: list[str], rng) -> None:
    shuffled = list(names)
    rng.shuffle(shuffled)
    assert rules_score([hit(severity=n) for n in shuffled]) == pytest.approx(
        rules_score([hit(severity=n) for n in names]), abs=1e-6
    )


# strongest_action --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        ([], "allow"),
        (["alert"], "alert"),
        (["alert", "review"], "review"),
        (["review", "block", "alert"], "block"),
        (["block", "alert"], "block"),
    ],
)
def test_strongest_action_wins(actions: list[str], expected: str) -> None:
    assert strongest_action([hit(f"r{i}", action=a) for i, a in enumerate(actions)]) == expected


@given(st.lists(st.sampled_from(ACTION_NAMES), min_size=1), st.randoms(use_true_random=False))
def test_strongest_action_is_order_free_and_one_of_the_hits(actions: list[str], rng) -> None:
    hits = [hit(f"r{i}", action=a) for i, a in enumerate(actions)]
    shuffled = list(hits)
    rng.shuffle(shuffled)
    assert strongest_action(hits) == strongest_action(shuffled)
    assert strongest_action(hits) in actions


# score_record and rule_alerts ---------------------------------------------------------------


class _Event:
    event_id = "tx-9"
    account_id = "acc-9"
    at = DUE + 3600.0


def test_score_record_separates_shadow_hits_and_ignores_them_for_the_action() -> None:
    hits = [
        hit("live", action="alert"),
        hit("trial", severity="critical", action="block", mode="shadow"),
    ]
    record = score_record(_Event(), hits, 0.1, {"rules": "abc123"})
    assert record["rules_hit"] == ["live"]
    assert record["shadow_hits"] == ["trial"]
    assert record["action"] == "alert"
    assert (record["ruleset_version"], record["model_versions"]) == ("abc123", {"rules": "abc123"})
    assert record["occurred_at"] == "2026-04-01T01:00:00Z"


def test_rule_alerts_one_per_kind_with_worst_severity() -> None:
    hits = [
        hit("a", "low"),
        hit("b", "high"),
        hit("c", "medium", kind="delinquency"),
        hit("d", "critical", mode="shadow"),
    ]
    alerts = rule_alerts(_Event(), hits, 0.64, {"balance": 1.0})
    by_kind = {alert["kind"]: alert for alert in alerts}
    assert sorted(by_kind) == ["delinquency", "fraud"]
    assert by_kind["fraud"]["severity"] == "high"
    assert by_kind["fraud"]["reasons"] == ["a: a fired", "b: b fired"]
    assert by_kind["delinquency"]["severity"] == "medium"
    assert by_kind["fraud"]["alert_id"] != by_kind["delinquency"]["alert_id"]


def test_shadow_hits_alone_raise_no_alert() -> None:
    assert rule_alerts(_Event(), [hit(mode="shadow", severity="critical")], 0.0, {}) == []


# delinquency_alert -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "severity"),
    [
        (1, "low"),
        (6, "low"),
        (7, "medium"),
        (29, "medium"),
        (30, "high"),
        (89, "high"),
        (90, "critical"),
    ],
)
def test_delinquency_severity_grows_with_days_past_due(threshold: int, severity: str) -> None:
    crossing = Crossing("acc-1", "i-1", threshold, DUE + threshold * DAY, 120.0, "bill-1")
    alert = delinquency_alert(crossing, {})
    assert alert["severity"] == severity
    assert alert["created_at"] == iso(DUE + threshold * DAY)
    assert alert["reasons"] == [
        f"dpd_{threshold}: installment i-1 is {threshold} days past due with 120.00 yuan owed"
    ]


def test_delinquency_alert_id_is_per_account_installment_and_threshold() -> None:
    def make(account: str, installment: str, threshold: int) -> str:
        crossing = Crossing(account, installment, threshold, DUE, 1.0, "e")
        return delinquency_alert(crossing, {})["alert_id"]

    ids = {make(a, i, t) for a in ("a1", "a2") for i in ("i1", "i2") for t in (1, 7)}
    assert len(ids) == 8
    assert make("a1", "i1", 1) == make("a1", "i1", 1)


# account_fields ----------------------------------------------------------------------------


def state_with(balance: float = 0.0, frauds: int = 0) -> AccountState:
    state = AccountState.fresh("acc-1", credit_limit=4000.0, apr=0.2)
    state.balance = balance
    state.confirmed_frauds = frauds
    return state


@pytest.mark.parametrize(
    ("dpd", "frauds", "status"),
    [(0, 0, "active"), (3, 0, "overdue"), (0, 1, "fraud_confirmed"), (12, 2, "fraud_confirmed")],
)
def test_account_status(dpd: int, frauds: int, status: str) -> None:
    fields = account_fields(state_with(frauds=frauds), {"days_past_due": dpd}, DUE)
    assert fields["status"] == status
    assert fields["days_past_due"] == dpd


def test_account_fields_show_terms_balance_and_time() -> None:
    state = state_with(balance=1234.5678)
    state.installments["i-1"] = Installment(due_at=DUE, amount_due=10.0)
    fields = account_fields(state, {}, DUE)
    assert fields["balance"] == 1234.57
    assert fields["utilisation"] == pytest.approx(0.3086)
    assert (fields["credit_limit"], fields["apr"]) == (4000.0, 0.2)
    assert fields["outstanding_installments"] == 1
    assert fields["updated_at"] == "2026-04-01T00:00:00Z"
