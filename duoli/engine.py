"""The account engine: one event in, state moved, records out. Pure and synchronous.

The stream agent looks the state and the merchant features up, calls ``handle`` and
sends what comes back; everything that decides anything happens here, so it is unit
tested without a broker, and ``duoli rules backtest`` can reuse it later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from duoli.account import DAY, AccountState, apply_event
from duoli.delinquency import next_crossing, take_crossings
from duoli.errors import InvalidEvent
from duoli.events import Event, FraudLabel, Repayment, Transaction
from duoli.features import account_features, repayment_features, transaction_features
from duoli.merchant import MerchantFact
from duoli.scoring import (
    account_fields,
    delinquency_alert,
    rule_alerts,
    rules_score,
    score_record,
)
from duoli.settings import Settings
from rules import RuleSet

__all__ = ["AccountEngine", "Outcome", "day_of"]


def day_of(at: float) -> int:
    """Event-time day number (UTC), the period of merchant features."""
    return int(at // DAY)


@dataclass(slots=True)
class Outcome:
    """Everything one event (or one clock advance) produces."""

    score: dict[str, Any] | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    merchant_facts: list[MerchantFact] = field(default_factory=list)
    account: dict[str, Any] | None = None
    next_crossing: float | None = None
    facts: dict[str, Any] | None = None  # what the rules saw (transactions and repayments)


class AccountEngine:
    """Applies the rule set and the delinquency policy to one account's events."""

    def __init__(self, settings: Settings, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.thresholds = settings.dpd_thresholds
        self.grace = settings.overdue_grace_days * DAY
        self.lateness = settings.allowed_lateness_seconds
        self.default_limit = settings.default_credit_limit
        self.default_apr = settings.default_apr

    def new_state(self, account_id: str) -> AccountState:
        return AccountState.fresh(account_id, self.default_limit, self.default_apr)

    def check(self, state: AccountState, event: Event, clock: float) -> None:
        """Refuse a repeated id, or an event later than the allowed lateness."""
        if state.has_seen(event.event_id):
            raise InvalidEvent(
                "duplicate_event_id", f"event {event.event_id} was already processed"
            )
        if event.at < clock - self.lateness and not isinstance(event, FraudLabel):
            raise InvalidEvent(
                "too_late", f"event time is {clock - event.at:.0f}s behind the clock"
            )

    def handle(
        self, state: AccountState, event: Event, merchant: dict[str, Any] | None = None
    ) -> Outcome:
        """Score (transactions), alert, then apply the event to the state."""
        outcome = Outcome()
        if isinstance(event, Transaction):
            self._score(state, event, merchant, outcome)
        elif isinstance(event, Repayment):
            self._check_repayment(state, event, outcome)
        elif isinstance(event, FraudLabel):
            outcome.merchant_facts.extend(_label_fact(state, event))
        apply_event(state, event)
        outcome.account = self.account_view(state, state.latest_at)
        outcome.next_crossing = next_crossing(state, self.thresholds, self.grace)
        return outcome

    def advance(self, state: AccountState, clock: float) -> Outcome:
        """Delinquency alerts for every threshold the clock has passed."""
        crossings = take_crossings(state, clock, self.thresholds, self.grace)
        outcome = Outcome(next_crossing=next_crossing(state, self.thresholds, self.grace))
        if crossings:
            outcome.alerts = [
                delinquency_alert(c, self.account_view(state, c.at)) for c in crossings
            ]
            outcome.account = self.account_view(state, max(c.at for c in crossings))
        return outcome

    def advance_preview(self, state: AccountState) -> float | None:
        """When this account next crosses a days-past-due threshold."""
        return next_crossing(state, self.thresholds, self.grace)

    def account_view(self, state: AccountState, at: float) -> dict[str, Any]:
        return account_fields(state, account_features(state, at, self.grace), at)

    def _score(
        self, state: AccountState, event: Transaction, merchant: Any, outcome: Outcome
    ) -> None:
        facts = outcome.facts = transaction_features(state, event, merchant, self.grace)
        evaluation = self.ruleset.evaluate(facts, "transaction")
        fraud_hits = [
            hit for hit in evaluation.hits if hit.mode == "active" and hit.kind == "fraud"
        ]
        score = rules_score(fraud_hits)
        state.last_fraud_score = score
        versions = {"rules": self.ruleset.version}
        outcome.score = score_record(event, evaluation.hits, score, versions)
        outcome.score["rule_errors"] = [rule_id for rule_id, _ in evaluation.errors]
        outcome.alerts = rule_alerts(event, evaluation.hits, score, _summary(facts))
        day = day_of(max(state.latest_at, event.at))
        outcome.merchant_facts.append(MerchantFact(event.merchant_id, day, event.amount))

    def _check_repayment(self, state: AccountState, event: Repayment, outcome: Outcome) -> None:
        facts = outcome.facts = repayment_features(state, event, self.grace)
        evaluation = self.ruleset.evaluate(facts, "repayment")
        outcome.alerts = rule_alerts(event, evaluation.hits, 0.0, _summary(facts))


def _label_fact(state: AccountState, event: FraudLabel) -> list[MerchantFact]:
    """A label counts for the merchant of its transaction, if that is still in the history."""
    index = state.find_transaction(event.transaction_id)
    if index is None:
        return []
    day = day_of(max(state.latest_at, event.at))
    return [MerchantFact(state.tx_merchants[index], day, label=event.is_fraud)]


def _summary(facts: dict[str, Any]) -> dict[str, Any]:
    """The account state an analyst sees next to an alert."""
    keys = ("credit_limit", "balance", "utilisation", "days_past_due", "outstanding_installments")
    return {
        key: round(facts[key], 4) if isinstance(facts[key], float) else facts[key] for key in keys
    }
