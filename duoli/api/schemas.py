"""The API's request and response bodies; each appears in the OpenAPI spec."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AccountView",
    "Alert",
    "AlertDetail",
    "AlertKind",
    "AlertList",
    "AlertStatus",
    "AssignBody",
    "CommentBody",
    "Health",
    "Problem",
    "Resolution",
    "ResolveBody",
    "RuleList",
    "RuleStats",
    "RuleView",
    "Severity",
    "Transition",
    "Workflow",
]


class AlertKind(StrEnum):
    fraud = "fraud"
    delinquency = "delinquency"


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class AlertStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


class Resolution(StrEnum):
    fraud_confirmed = "fraud_confirmed"
    false_positive = "false_positive"
    customer_contacted = "customer_contacted"
    other = "other"


class Problem(BaseModel):
    """Every error: a sentence saying what went wrong."""

    detail: str


class Health(BaseModel):
    status: str = Field(description="ok, or degraded when Redis does not answer.")
    redis: bool


class Workflow(BaseModel):
    """Where an alert stands in its life cycle."""

    status: AlertStatus = AlertStatus.open
    assignee: str | None = None
    resolution: Resolution | None = None
    updated_at: str | None = Field(None, description="Wall time of the last step, ISO 8601.")
    updated_by: str | None = None


class Alert(BaseModel):
    """An alert as the workers wrote it, with its workflow state."""

    model_config = ConfigDict(extra="allow")

    alert_id: str
    kind: str
    severity: str
    account_id: str
    event_ids: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    score: float | None = None
    created_at: str = Field(description="Event time of the cause, ISO 8601 UTC.")
    account: dict[str, Any] = Field(
        default_factory=dict, description="The account's state when the alert was raised."
    )
    workflow: Workflow = Field(default_factory=Workflow)


class Transition(BaseModel):
    """One recorded life-cycle step."""

    action: str = Field(description="acknowledge, assign, resolve or comment.")
    user: str
    role: str
    at: str = Field(description="Wall time, ISO 8601 UTC.")
    from_status: AlertStatus
    to_status: AlertStatus
    assignee: str | None = None
    resolution: Resolution | None = None
    comment: str | None = None


class AlertDetail(Alert):
    transitions: list[Transition] = Field(default_factory=list)


class AlertList(BaseModel):
    alerts: list[Alert]
    count: int
    truncated: bool = Field(
        description="True when the scan stopped at its limit: older matches may exist."
    )


class AssignBody(BaseModel):
    assignee: str = Field(min_length=1, max_length=200)
    comment: str | None = Field(None, max_length=4000)


class ResolveBody(BaseModel):
    resolution: Resolution
    comment: str | None = Field(None, max_length=4000)


class CommentBody(BaseModel):
    comment: str = Field(min_length=1, max_length=4000)


class NoteBody(BaseModel):
    comment: str | None = Field(None, max_length=4000)


class AccountState(BaseModel):
    """The hash ``duoli:account:{account_id}``; every field is optional."""

    model_config = ConfigDict(extra="allow")

    credit_limit: float | None = None
    apr: float | None = None
    balance: float | None = None
    utilisation: float | None = None
    fraud_score: float | None = None
    pd: float | None = None
    days_past_due: int | None = None
    outstanding_installments: int | None = None
    on_time_streak: int | None = None
    status: str | None = None
    frozen: int | None = None
    updated_at: str | None = None


class AccountView(BaseModel):
    account_id: str
    state: AccountState
    recent_alerts: list[Alert] = Field(
        description="The account's latest alerts, newest first. Score records are on the "
        "duoli.scores topic only; the latest fraud_score and pd are in the state."
    )


class RuleStats(BaseModel):
    """As ``duoli rules stats`` reports them."""

    hits: int = 0
    shadow_hits: int = 0
    snoozed_hits: int = 0
    errors: int = 0
    last_error: str | None = None
    last_hit_at: str | None = None
    matured_hits: int = 0
    confirmed_frauds: int = 0
    precision: float | None = None


class RuleView(BaseModel):
    rule_id: str
    description: str | None = None
    expression: str | None = None
    severity: str | None = None
    action: str | None = None
    mode: str | None = Field(None, description="active, shadow or disabled; None if unknown.")
    version: int | None = None
    applies_to: str | None = None
    kind: str | None = None
    source: str = Field(
        description="file, pushed, or stats_only (counters in Redis for a rule the API does "
        "not know)."
    )
    stats: RuleStats


class RuleList(BaseModel):
    ruleset_version: str | None
    rules: list[RuleView]
