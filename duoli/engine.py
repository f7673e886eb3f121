"""The account engine: one event in, state moved, records out. Pure and synchronous.

The stream agent looks the state and the merchant features up, calls ``handle`` and
sends what comes back; everything that decides anything happens here, so it is unit
tested without a broker, and ``duoli rules backtest`` reuses it.

The analysts' controls (rules, named lists, snoozes) are one immutable object that a
worker may swap for a newer one between two events; each event is handled with the
controls it started with. A snoozed hit is listed but neither scores nor alerts.

The models come from ``models.for_time(event time)``: the snapshot of the event's day.
Every event also yields its training items: what the trainer must know of it (a
transaction's features, a label, a bill's features, a bill repaid).

After every event it applies (but the opening of a line, which sets the terms itself) and
at every days-past-due crossing, the engine asks the credit policy (``duoli.policy``) for
a decision, in event time; a decision that moves the limit, the APR or the frozen state
is in ``Outcome.decisions``. Crossings are watched at the alert thresholds and at the
policy's own days-past-due triggers, so a cut or a freeze does not wait for an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from duoli.account import DAY, AccountState, apply_event
from duoli.credit import Signals, credit_decision, policy_hits
from duoli.delinquency import Crossing, next_crossing, take_crossings
from duoli.errors import InvalidEvent
from duoli.events import (
    CreditLineOpened,
    Event,
    FraudLabel,
    InstallmentDue,
    Repayment,
    Transaction,
)
from duoli.features import account_features, repayment_features, transaction_features
from duoli.merchant import MerchantFact, excess
from duoli.policy import Policy, load_policy
from duoli.rule_stats import RuleActivity
from duoli.scoring import (
    account_fields,
    delinquency_alert,
    rule_alerts,
    rules_score,
    score_record,
)
from duoli.settings import Settings
from models.features import FRAUD_FEATURES, PD_FEATURES, fraud_inputs, pack, pd_inputs
from models.snapshot import FixedModels, ModelSnapshot
from rules import Evaluation, RuleHit, RuleSet
from rules.control import Controls

__all__ = ["AccountEngine", "ModelSource", "Outcome", "day_of"]

DEFAULT_AFTER = 30 * DAY  # a bill still open this long after due (plus grace) defaulted


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
    rule_activity: RuleActivity | None = None  # for the live rule statistics
    training: list[tuple[str, str, float, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)  # credit decisions


class ModelSource(Protocol):
    """Which models score an event: a worker's follower of the models topic, or fixed."""

    def for_time(self, at: float) -> ModelSnapshot: ...

    async def wait_for(self, as_of: float, timeout: float) -> bool: ...


class AccountEngine:
    """Applies the rule set and the delinquency policy to one account's events."""

    def __init__(
        self,
        settings: Settings,
        controls: Controls,
        models: ModelSource | None = None,
        policy: Policy | None = None,
        rules_only: bool = False,
    ) -> None:
        self.controls = controls
        # Where only the rules matter (``duoli rules backtest``): no models, no decisions,
        # no account view.
        self.rules_only = rules_only
        self.models: ModelSource = models or FixedModels()
        self.policy = policy or load_policy(settings.policy_file)
        self.alert_threshold = settings.fraud_alert_threshold
        self.alert_thresholds = settings.dpd_thresholds
        # The policy's triggers come after the alert thresholds: an installment remembers
        # each threshold passed by its position, which must not move for the alert ones.
        triggers = {self.policy.decrease_days_past_due, self.policy.freeze_days_past_due}
        extra = tuple(sorted(triggers - set(self.alert_thresholds)))
        self.thresholds = self.alert_thresholds + extra
        self.grace = settings.overdue_grace_days * DAY
        self.lateness = settings.allowed_lateness_seconds
        self.default_limit = settings.default_credit_limit
        self.default_apr = settings.default_apr

    @property
    def ruleset(self) -> RuleSet:
        return self.controls.ruleset

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
        self,
        state: AccountState,
        event: Event,
        merchant: dict[str, Any] | None = None,
        clock: float = 0.0,
    ) -> Outcome:
        """Score (transactions), alert, then apply the event to the state.

        ``clock`` is the event-time clock of the event's partition. A merchant fact counts
        on the day it became known, the later of the clock's, the account's and the event's:
        a late event of yesterday must not change a day whose merchant features some other
        account has already read today."""
        outcome = Outcome()
        hits: list[RuleHit] = []
        known_day = day_of(max(state.latest_at, event.at, clock))
        if isinstance(event, Transaction):
            hits = self._score(state, event, merchant, outcome, known_day)
        elif isinstance(event, Repayment):
            hits = self._check_repayment(state, event, outcome)
        elif isinstance(event, FraudLabel):
            outcome.merchant_facts.extend(_label_fact(state, event, known_day))
            outcome.rule_activity = _fraud_credit(state, event)
            outcome.training.append(("label", event.transaction_id, event.at, event.is_fraud))
        open_bills = set(state.installments)
        apply_event(state, event)
        if isinstance(event, Transaction) and outcome.rule_activity is not None:
            state.remember_hits(event.event_id, outcome.rule_activity.measured)
        if self.rules_only:  # a backtest reads the rules' facts, not the account's view
            return outcome
        if isinstance(event, InstallmentDue):
            outcome.training.append(self._bill(state, event))
        for repaid in sorted(open_bills - set(state.installments)):
            outcome.training.append(("repaid", _bill_id(state, repaid), event.at, None))
        now = state.latest_at
        facts = account_features(state, now, self.grace)
        pd = self._pd(facts, now)
        if outcome.score is not None:
            outcome.score["pd"] = pd if event.at == now else self.account_pd(state, event.at)
        if not isinstance(event, CreditLineOpened):
            confirmed = isinstance(event, FraudLabel) and event.is_fraud
            known = (facts, pd) if event.at == now else (None, None)  # usually known
            signals = self._signals(state, event.at, confirmed, policy_hits(hits), *known)
            decided = credit_decision(self.policy, state, signals, event.event_id)
            outcome.decisions.extend([decided] if decided else [])
        outcome.account = account_fields(state, facts, now, pd)
        outcome.next_crossing = next_crossing(state, self.thresholds, self.grace)
        return outcome

    def advance(self, state: AccountState, clock: float) -> Outcome:
        """Delinquency alerts and credit decisions for every threshold the clock passed."""
        crossings = take_crossings(state, clock, self.thresholds, self.grace)
        outcome = Outcome(next_crossing=next_crossing(state, self.thresholds, self.grace))
        for crossing in sorted(crossings, key=lambda c: (c.at, c.installment_id, c.threshold)):
            if crossing.threshold in self.alert_thresholds:
                outcome.alerts.append(
                    delinquency_alert(crossing, self.account_view(state, crossing.at))
                )
            decided = None if self.rules_only else self._crossing_decision(state, crossing)
            outcome.decisions.extend([decided] if decided else [])
        if crossings:  # the state moved (thresholds passed), even without an alert
            outcome.account = self.account_view(state, max(c.at for c in crossings))
        return outcome

    def _crossing_decision(self, state: AccountState, crossing: Crossing) -> dict[str, Any] | None:
        """Time alone moved the account; the cause names the bill and the threshold."""
        signals = self._signals(state, crossing.at, False, ())
        cause = f"{crossing.event_id}#dpd{crossing.threshold}"
        return credit_decision(self.policy, state, signals, cause)

    def _signals(
        self,
        state: AccountState,
        at: float,
        confirmed: bool,
        hits: tuple[tuple[str, str, str], ...],
        facts: dict[str, Any] | None = None,
        pd: float | None = None,
    ) -> Signals:
        """What the policy needs at ``at``; ``facts`` and ``pd`` when already known there."""
        if facts is None:
            facts = account_features(state, at, self.grace)
        return Signals(
            at=at,
            pd=self._pd(facts, at) if pd is None else pd,
            days_past_due=facts["days_past_due"],
            utilisation=facts["utilisation"],
            confirmed_fraud=confirmed,
            rule_hits=hits,
        )

    def advance_preview(self, state: AccountState) -> float | None:
        """When this account next crosses a days-past-due threshold."""
        return next_crossing(state, self.thresholds, self.grace)

    def account_view(self, state: AccountState, at: float) -> dict[str, Any]:
        facts = account_features(state, at, self.grace)
        return account_fields(state, facts, at, self._pd(facts, at))

    def account_pd(self, state: AccountState, at: float) -> float:
        return self._pd(account_features(state, at, self.grace), at)

    def _pd(self, facts: dict[str, Any], at: float) -> float:
        return self.models.for_time(at).pd.pd(pd_inputs(facts))

    def _bill(self, state: AccountState, event: InstallmentDue) -> tuple[str, str, float, Any]:
        """A billed installment: the account as it stands, and when it would default."""
        facts = pd_inputs(account_features(state, event.at, self.grace))
        defaults_at = event.due_at.timestamp() + self.grace + DEFAULT_AFTER
        bill_id = _bill_id(state, event.installment_id)
        return ("bill", bill_id, defaults_at, pack(facts, PD_FEATURES))

    def _score(
        self, state: AccountState, event: Transaction, merchant: Any, outcome: Outcome,
        known_day: int,
    ) -> list[RuleHit]:  # fmt: skip
        controls = self.controls  # one read: a swap lands between events, never within
        facts = outcome.facts = transaction_features(state, event, merchant, self.grace)
        evaluation = controls.ruleset.evaluate(facts, "transaction", controls.lists, event.at)
        hits, snoozed = _unsnoozed(controls, evaluation.hits, event)
        by_rules = rules_score(hit for hit in hits if hit.mode == "active" and hit.kind == "fraud")
        outcome.rule_activity = _activity(event.at, hits, snoozed, evaluation, transaction=True)
        sale = MerchantFact(
            event.merchant_id,
            known_day,
            event.amount,
            excess=excess(event.kind, facts["amount_zscore"]),
        )
        outcome.merchant_facts.append(sale)
        if self.rules_only:
            state.remember_score(by_rules, event.at)
            return hits
        snapshot = self.models.for_time(event.at)
        inputs = fraud_inputs(facts, by_rules)
        scored = snapshot.fraud.score(inputs, by_rules)
        score = scored.fraud_score
        state.remember_score(score, event.at)
        model = {
            "rules_score": by_rules,
            "model_score": scored.model_score,
            "anomaly_score": scored.anomaly_score,
            "pd": None,  # the account's, once the transaction is applied: see handle
            "reasons": list(scored.reasons),
        }
        versions = {"rules": controls.ruleset.version, **snapshot.versions()}
        errors = [rule_id for rule_id, _ in evaluation.errors]
        outcome.score = score_record(
            event, hits, score, versions, snoozed=snoozed, rule_errors=errors, model=model
        )
        flagged = scored.reasons if self._flags(scored.weight, score) else None
        outcome.alerts = rule_alerts(event, hits, score, _summary(facts), flagged)
        outcome.training.append(("tx", event.event_id, event.at, pack(inputs, FRAUD_FEATURES)))
        return hits

    def _flags(self, weight: float, score: float) -> bool:
        """The model alerts by itself once fully trusted (enough frauds learned)."""
        return weight >= 1.0 and score >= self.alert_threshold

    def _check_repayment(
        self, state: AccountState, event: Repayment, outcome: Outcome
    ) -> list[RuleHit]:
        controls = self.controls
        facts = outcome.facts = repayment_features(state, event, self.grace)
        evaluation = controls.ruleset.evaluate(facts, "repayment", controls.lists, event.at)
        hits, snoozed = _unsnoozed(controls, evaluation.hits, event)
        outcome.alerts = rule_alerts(event, hits, 0.0, _summary(facts))
        outcome.rule_activity = _activity(event.at, hits, snoozed, evaluation, transaction=False)
        return hits


def _unsnoozed(
    controls: Controls, hits: Sequence[RuleHit], event: Transaction | Repayment
) -> tuple[list[RuleHit], list[RuleHit]]:
    """The hits that count, and the active hits a snooze silences for this event."""
    if not controls.snoozes:
        return list(hits), []
    merchant_id = event.merchant_id if isinstance(event, Transaction) else None
    counted: list[RuleHit] = []
    snoozed: list[RuleHit] = []
    for hit in hits:
        silenced = hit.mode == "active" and controls.snoozed(
            hit.rule_id, event.account_id, merchant_id, event.at
        )
        (snoozed if silenced else counted).append(hit)
    return counted, snoozed


def _activity(
    at: float,
    hits: Sequence[RuleHit],
    snoozed: Sequence[RuleHit],
    evaluation: Evaluation,
    transaction: bool,
) -> RuleActivity | None:
    """What the rule statistics count for this event; None when no rule hit or failed.

    Only a transaction's fraud rules are measured against labels; a repayment has none.
    """
    if not hits and not snoozed and not evaluation.errors:
        return None
    matched = (*hits, *snoozed) if transaction else ()
    return RuleActivity(
        at=at,
        hits=tuple(hit.rule_id for hit in hits if hit.mode == "active"),
        shadow=tuple(hit.rule_id for hit in hits if hit.mode == "shadow"),
        snoozed=tuple(hit.rule_id for hit in snoozed),
        errors=evaluation.errors,
        measured=tuple(hit.rule_id for hit in matched if hit.kind == "fraud"),
    )


def _fraud_credit(state: AccountState, event: FraudLabel) -> RuleActivity | None:
    """A confirmed fraud credits every rule that matched its transaction, on that day."""
    index = state.find_transaction(event.transaction_id) if event.is_fraud else None
    if index is None:
        return None
    rule_ids = state.take_hits(event.transaction_id)
    return RuleActivity(at=state.tx_times[index], frauds=rule_ids) if rule_ids else None


def _bill_id(state: AccountState, installment_id: str) -> str:
    return f"{state.account_id}|{installment_id}"


def _label_fact(state: AccountState, event: FraudLabel, known_day: int) -> list[MerchantFact]:
    """A label counts for the merchant of its transaction, if that is still in the history."""
    index = state.find_transaction(event.transaction_id)
    if index is None:
        return []
    return [MerchantFact(state.tx_merchants[index], known_day, label=event.is_fraud)]


def _summary(facts: dict[str, Any]) -> dict[str, Any]:
    """The account state an analyst sees next to an alert."""
    keys = ("credit_limit", "balance", "utilisation", "days_past_due", "outstanding_installments")
    return {
        key: round(facts[key], 4) if isinstance(facts[key], float) else facts[key] for key in keys
    }
