"""Output records: score records, alerts and the account's live-state hash. Pure.

Every id is derived from its cause, so processing an event twice yields the same records.

>>> alert_id("fraud", "t1") == alert_id("fraud", "t1") != alert_id("delinquency", "t1")
True
>>> rules_score([])
0.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from hashlib import sha256
from typing import Any

from duoli.account import AccountState
from duoli.delinquency import Crossing
from rules import RuleHit

__all__ = [
    "SEVERITY_WEIGHT",
    "account_fields",
    "alert_id",
    "delinquency_alert",
    "iso",
    "rule_alerts",
    "rules_score",
    "score_record",
    "strongest_action",
]

SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_WEIGHT = {"low": 0.1, "medium": 0.3, "high": 0.6, "critical": 0.9}
ACTIONS = ("allow", "alert", "review", "block")
MODEL_SEVERITY = "high"  # of a fraud alert the model's score raised


@lru_cache(maxsize=4096)  # an event's outputs carry its time several times
def iso(at: float) -> str:
    """Event time as ISO-8601 UTC, the only clock that appears in outputs."""
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def alert_id(kind: str, cause: str) -> str:
    """Deterministic: the same cause can never give two alerts."""
    return sha256(f"{kind}|{cause}".encode()).hexdigest()[:24]


def rules_score(hits: Iterable[RuleHit]) -> float:
    """Noisy-OR of the severity weights of the active fraud hits: 0 with none, near 1 with many."""
    return 1 - math.prod((1 - SEVERITY_WEIGHT[hit.severity] for hit in hits), start=1.0)


def strongest_action(hits: Iterable[RuleHit]) -> str:
    return max((hit.action for hit in hits), key=ACTIONS.index, default="allow")


def score_record(
    event: Any,
    hits: Sequence[RuleHit],
    fraud_score: float,
    versions: dict[str, str],
    *,
    snoozed: Sequence[RuleHit] = (),
    rule_errors: Sequence[str] = (),
    model: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One per transaction: what scored it, how risky it is and what to do.

    ``hits`` are the hits that count; ``snoozed`` hits and the ids of rules that raised
    are listed apart, and change neither the score nor the action. ``model`` adds the
    models' figures: rules_score, model_score, anomaly_score, pd and the reason codes.
    """
    active = [hit for hit in hits if hit.mode == "active"]
    return {
        **(model or {}),
        "event_id": event.event_id,
        "account_id": event.account_id,
        "occurred_at": iso(event.at),
        "fraud_score": fraud_score,
        "rules_hit": [hit.rule_id for hit in active],
        "shadow_hits": [hit.rule_id for hit in hits if hit.mode == "shadow"],
        "snoozed_hits": [hit.rule_id for hit in snoozed],
        "rule_errors": list(rule_errors),
        "action": strongest_action(active),
        "ruleset_version": versions["rules"],
        "model_versions": versions,
    }


def rule_alerts(
    event: Any,
    hits: Sequence[RuleHit],
    score: float,
    account: dict[str, Any],
    flagged: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One alert per alert kind that active rules raised on this event.

    ``flagged`` holds the model's reason codes when its score crossed the alert
    threshold: the event then has a fraud alert even with no fraud rule hit, and the
    reasons name the features behind the score after the rules'.
    """
    active = [hit for hit in hits if hit.mode == "active"]
    kinds = {hit.kind for hit in active} | ({"fraud"} if flagged is not None else set())
    alerts = []
    for kind in sorted(kinds):
        of_kind = [hit for hit in active if hit.kind == kind]
        reasons = [f"{hit.rule_id}: {hit.description}" for hit in of_kind]
        severities = [hit.severity for hit in of_kind]
        if kind == "fraud" and flagged is not None:
            reasons += [f"model {reason['code']}: {reason['text']}" for reason in flagged]
            severities.append(MODEL_SEVERITY)
        alerts.append(
            {
                "alert_id": alert_id(kind, event.event_id),
                "kind": kind,
                "severity": max(severities, key=SEVERITIES.index),
                "account_id": event.account_id,
                "event_ids": [event.event_id],
                "reasons": reasons,
                "score": score,
                "created_at": iso(event.at),
                "account": account,
            }
        )
    return alerts


def delinquency_alert(crossing: Crossing, account: dict[str, Any]) -> dict[str, Any]:
    """Once per installment and threshold; severity grows with days past due."""
    severity = "low" if crossing.threshold < 7 else "medium" if crossing.threshold < 30 else "high"
    return {
        "alert_id": alert_id(
            "delinquency", f"{crossing.account_id}|{crossing.installment_id}|{crossing.threshold}"
        ),
        "kind": "delinquency",
        "severity": "critical" if crossing.threshold >= 90 else severity,
        "account_id": crossing.account_id,
        "event_ids": [crossing.event_id],
        "reasons": [
            f"dpd_{crossing.threshold}: installment {crossing.installment_id} is "
            f"{crossing.threshold} days past due with {crossing.amount_owed:.2f} yuan owed"
        ],
        "score": float(crossing.threshold),
        "created_at": iso(crossing.at),
        "account": account,
    }


def account_fields(
    state: AccountState, facts: dict[str, Any], at: float, pd: float = 0.0
) -> dict[str, Any]:
    """The live state served from ``duoli:account:{id}``."""
    dpd = facts.get("days_past_due", 0)
    status = (
        "fraud_confirmed"
        if state.confirmed_frauds
        else "frozen"
        if state.frozen
        else "overdue"
        if dpd
        else "active"
    )
    return {
        "credit_limit": state.credit_limit,
        "apr": state.apr,
        "balance": round(state.balance, 2),
        "utilisation": round(state.balance / state.credit_limit, 4),
        "fraud_score": state.last_fraud_score,
        "pd": pd,
        "days_past_due": dpd,
        "outstanding_installments": facts.get("outstanding_installments", len(state.installments)),
        "on_time_streak": state.on_time_streak,
        "status": status,
        "frozen": int(state.frozen),
        "updated_at": iso(at),
    }
