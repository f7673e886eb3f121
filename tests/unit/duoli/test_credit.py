"""duoli.credit: the account as the policy sees it, and the decision moved into the state."""

from __future__ import annotations

import dataclasses
import itertools
import json

from duoli.account import DAY, AccountState
from duoli.credit import Signals, credit_decision, credit_view, policy_hits
from duoli.engine import AccountEngine
from duoli.errors import InvalidEvent
from duoli.events import parse_event
from duoli.policy import CreditView, load_policy
from duoli.settings import Settings
from duoli.simulate import SimulationConfig, simulate
from rules import LIBRARY_DIR, RuleHit, load_rules
from rules.control import Controls

POLICY = load_policy()


def healthy_signals(at: float = 100 * DAY) -> Signals:
    return Signals(at=at, pd=0.01, days_past_due=0, utilisation=0.4)


def reliable_state() -> AccountState:
    state = AccountState.fresh("acc-1", credit_limit=5000.0, apr=0.09)
    state.on_time_streak = 6
    return state


def test_an_increase_is_published_and_moves_the_state() -> None:
    state = reliable_state()
    record = credit_decision(POLICY, state, healthy_signals(), cause="e1")
    assert record is not None and record["action"] == "increase"
    assert (record["old_limit"], record["new_limit"]) == (5000.0, 6000.0)
    assert record["explanations"][0].startswith("Recent bills were all repaid on time")
    assert (state.credit_limit, state.last_increase_at, state.last_pd) == (6000.0, 100 * DAY, 0.01)


def test_nothing_changed_publishes_nothing_but_the_cooldown_holds() -> None:
    state = reliable_state()
    credit_decision(POLICY, state, healthy_signals(), cause="e1")
    assert credit_decision(POLICY, state, healthy_signals(110 * DAY), cause="e2") is None
    assert state.credit_limit == 6000.0
    later = credit_decision(POLICY, state, healthy_signals(131 * DAY), cause="e3")
    assert later is not None and later["new_limit"] == 7200.0


def test_the_decision_id_depends_on_the_cause_only() -> None:
    first = credit_decision(POLICY, reliable_state(), healthy_signals(), cause="e1")
    again = credit_decision(POLICY, reliable_state(), healthy_signals(), cause="e1")
    other = credit_decision(POLICY, reliable_state(), healthy_signals(), cause="e2")
    assert first is not None and again is not None and other is not None
    assert first == again and first["decision_id"] != other["decision_id"]


def test_the_policy_state_survives_the_changelog() -> None:
    state = reliable_state()
    state.frozen, state.frozen_at, state.last_decrease_at = True, 5.0, 6.0
    credit_decision(POLICY, state, healthy_signals(), cause="e1")
    back = AccountState.from_json(json.loads(json.dumps(state.to_json())))
    fields = ("frozen", "frozen_at", "last_increase_at", "last_decrease_at", "last_pd")
    assert [getattr(back, f) for f in fields] == [getattr(state, f) for f in fields]


def test_a_state_written_before_the_policy_reads_with_defaults() -> None:
    data = reliable_state().to_json()
    for name in ("frozen", "frozen_at", "last_increase_at", "last_decrease_at", "last_pd"):
        del data[name]
    back = AccountState.from_json(data)
    assert (back.frozen, back.frozen_at, back.last_pd) == (False, None, None)


def test_only_active_fraud_hits_reach_the_policy() -> None:
    def hit(rule_id: str, mode: str, kind: str = "fraud") -> RuleHit:
        return RuleHit(rule_id, 1, "critical", "block", mode, kind, "")

    hits = [hit("a", "active"), hit("s", "shadow"), hit("d", "active", "delinquency")]
    assert policy_hits(hits) == (("a", "block", "critical"),)


def test_the_view_carries_no_city_device_or_merchant() -> None:
    names = {f.name for f in dataclasses.fields(CreditView)}
    assert not names & {"city", "device_id", "merchant_id", "channel", "merchant_category"}
    state = reliable_state()
    state.tx_cities.append("Shanghai")
    view = credit_view(state, healthy_signals())
    assert "Shanghai" not in repr(view)


def test_on_a_simulated_book_each_rate_waits_for_its_review() -> None:
    """The engine, the policy and a simulated book together: after a rate change, the
    next one comes at least ``apr_review_days`` later (every rate here is within bounds)."""
    engine = AccountEngine(Settings(), Controls(load_rules(LIBRARY_DIR)))
    states: dict[str, AccountState] = {}
    changes: dict[str, list[float]] = {}
    for raw in simulate(SimulationConfig(seed=3, accounts=60, days=90)):
        event = parse_event(json.dumps(raw).encode())
        state = states.setdefault(event.account_id, engine.new_state(event.account_id))
        try:
            outcome = engine.handle(state, event)
        except InvalidEvent:
            continue
        for decision in outcome.decisions:
            if decision["old_apr"] != decision["new_apr"]:
                changes.setdefault(event.account_id, []).append(event.at)
    gaps = [b - a for times in changes.values() for a, b in itertools.pairwise(times)]
    assert sum(len(times) for times in changes.values()) > len(changes)  # some repricing
    assert min(gaps) >= POLICY.apr_review_days * DAY
