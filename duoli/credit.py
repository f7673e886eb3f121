"""Between the engine and the credit policy: an account's state as the policy sees it, and
the policy's decision moved back into the state. Pure, event time only.

The engine calls :func:`credit_decision` after every event it applies (and at every
days-past-due crossing); it returns the decision record to publish, or None when the
limit, the APR and the frozen state stay as they are. The policy's memory (frozen, when
the limit last moved, the pd at the last decision) lives in :class:`AccountState`, and
is written back even when nothing is published, as :func:`duoli.policy.carry_forward`
says, so a later event sees e.g. a renewed freeze.

>>> from duoli.policy import load_policy
>>> state = AccountState.fresh("a1", credit_limit=5000.0, apr=0.18)
>>> signals = Signals(at=0.0, pd=0.01, days_past_due=0, utilisation=0.0)
>>> record = credit_decision(load_policy(), state, signals, cause="e1")
>>> record["action"], record["old_apr"], record["new_apr"], state.apr
('hold', 0.18, 0.09, 0.09)
>>> credit_decision(load_policy(), state, signals, cause="e2") is None
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from duoli.account import AccountState
from duoli.policy import CreditView, Policy, carry_forward, decide, decision_record
from rules import RuleHit

__all__ = ["Signals", "credit_decision", "policy_hits"]


@dataclass(frozen=True, slots=True)
class Signals:
    """What one event tells the policy beyond the account's state."""

    at: float
    pd: float
    days_past_due: int
    utilisation: float
    confirmed_fraud: bool = False
    rule_hits: tuple[tuple[str, str, str], ...] = ()


def policy_hits(hits: Iterable[RuleHit]) -> tuple[tuple[str, str, str], ...]:
    """The hits the policy weighs: active fraud rules only (never shadow or snoozed)."""
    return tuple(
        (hit.rule_id, hit.action, hit.severity)
        for hit in hits
        if hit.mode == "active" and hit.kind == "fraud"
    )


def credit_view(state: AccountState, signals: Signals) -> CreditView:
    """The policy's view of the account at one event. City, device, merchant and every
    other field of the event stay out of it: only these fields reach the policy."""
    return CreditView(
        account_id=state.account_id,
        at=signals.at,
        credit_limit=state.credit_limit,
        apr=state.apr,
        pd=signals.pd,
        fraud_score=state.last_fraud_score,
        frozen=state.frozen,
        frozen_at=state.frozen_at,
        last_increase_at=state.last_increase_at,
        last_decrease_at=state.last_decrease_at,
        last_apr_change_at=state.last_apr_change_at,
        last_pd=state.last_pd,
        last_fraud_at=state.last_fraud_label_at,
        confirmed_fraud=signals.confirmed_fraud,
        days_past_due=signals.days_past_due,
        on_time_streak=state.on_time_streak,
        utilisation=signals.utilisation,
        rule_hits=signals.rule_hits,
    )


def credit_decision(
    policy: Policy, state: AccountState, signals: Signals, cause: str
) -> dict[str, Any] | None:
    """Decide, move the state, and return the record to publish when something changed.

    ``cause`` is the id of the event (or crossing) behind it: with the account and the
    policy version it makes the ``decision_id``, so a redelivered event decides the same.
    """
    view = credit_view(state, signals)
    decision = decide(policy, view)
    carried = carry_forward(view, decision)
    state.credit_limit, state.apr, state.frozen = carried.credit_limit, carried.apr, carried.frozen
    state.frozen_at = carried.frozen_at
    state.last_increase_at = carried.last_increase_at
    state.last_decrease_at = carried.last_decrease_at
    state.last_apr_change_at = carried.last_apr_change_at
    state.last_pd = carried.last_pd
    if not decision.changed:
        return None
    record = decision_record(view, decision, cause)
    record["explanations"] = list(decision.explanations)
    return record
