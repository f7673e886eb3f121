"""Dynamic credit limits and rates: a versioned policy and one pure decision per event.

:func:`decide` reads a :class:`Policy` and a :class:`CreditView` (what the engine knows
about an account at one event, in event time) and returns a :class:`Decision`. It does
no I/O and reads no clock, so a replay of history gives the same decisions as live.

Priority: freeze > decrease > unfreeze > increase > hold. A frozen account never
increases; the limit moves by at most ``max_step_pct`` of the old limit per decision
and always ends inside ``[min_limit, max_limit]`` (an old limit outside those bounds is
clamped into them, the one move that may exceed the step). The APR always follows the
pd band, clamped to ``[apr_floor, apr_cap]``. Freezing keeps the limit: the freeze
itself stops drawing, and an unfreeze then restores the line without a second decision.
Cuts wait ``decrease_cooldown_days`` between them, so one overdue bill is not cut again on
every event. An unfreeze needs nothing overdue, no cut trigger, pd and fraud score under
their unfreeze limits, no blocking rule hit, ``unfreeze_min_days`` since the last freeze
and, after a confirmed fraud, ``unfreeze_after_fraud_days`` (None: never automatically;
a person decides). A step the bounds stop becomes a "hold".

Fields read (and nothing else; no protected attribute such as age, gender, ethnicity,
region, city or device is given to the policy): ``at``, ``credit_limit``, ``apr``,
``frozen``, ``frozen_at``, ``last_increase_at``, ``last_decrease_at``,
``last_apr_change_at``, ``last_pd``,
``last_fraud_at``, ``pd``, ``fraud_score``, ``confirmed_fraud``, ``days_past_due``,
``on_time_streak``, ``utilisation`` and ``rule_hits``. ``account_id`` only names the
decision.

>>> policy = load_policy()
>>> view = CreditView("a1", at=0.0, credit_limit=5000.0, apr=0.2, pd=0.01,
...     on_time_streak=6, utilisation=0.4)
>>> decision = decide(policy, view)
>>> decision.action, decision.new_limit, decision.new_apr, decision.reasons
('increase', 6000.0, 0.09, ('ON_TIME_STREAK', 'HEALTHY_UTILISATION', 'LOW_RISK', 'APR_DOWN'))
>>> from dataclasses import replace
>>> decide(policy, replace(view, confirmed_fraud=True)).action
'freeze'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import blake2b
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from duoli.errors import DuoliError
from duoli.scoring import iso

__all__ = [
    "REASONS",
    "CreditState",
    "CreditView",
    "Decision",
    "Policy",
    "PolicyError",
    "carry_forward",
    "decide",
    "decision_id",
    "decision_record",
    "load_policy",
    "parse_policy",
]

DAY: Final = 86_400.0
Action = Literal["increase", "decrease", "freeze", "unfreeze", "hold"]
Severity = Literal["low", "medium", "high", "critical"]
RuleAction = Literal["alert", "review", "block"]

REASONS: Final[Mapping[str, str]] = {
    "CONFIRMED_FRAUD": "A transaction on this account was confirmed as fraud.",
    "FRAUD_SCORE_CRITICAL": "The fraud score of this activity is at the critical level.",
    "RULE_BLOCK": "A fraud rule that blocks the account matched this activity.",
    "DAYS_PAST_DUE_SEVERE": "A bill is overdue long enough to stop further drawing.",
    "DAYS_PAST_DUE": "A bill is overdue, so the limit is lowered.",
    "PD_ROSE": "The estimated chance of default rose sharply since the last decision.",
    "PD_HIGH": "The estimated chance of default is above the policy's tolerance.",
    "DECREASE_COOLDOWN": "The limit was lowered recently; it is not lowered again yet.",
    "RISK_CLEARED": "Nothing is overdue and the risk is back to normal, so drawing resumes.",
    "ON_TIME_STREAK": "Recent bills were all repaid on time.",
    "HEALTHY_UTILISATION": "The credit line is used, but not stretched.",
    "LOW_RISK": "The estimated chance of default and the fraud score are both low.",
    "AT_MAX_LIMIT": "The limit is already the highest the policy allows.",
    "AT_MIN_LIMIT": "The limit is already the lowest the policy allows.",
    "LIMIT_ABOVE_MAX": "The limit was above the policy's maximum and is brought down to it.",
    "LIMIT_BELOW_MIN": "The limit was below the policy's minimum and is brought up to it.",
    "APR_UP": "The rate follows the estimated chance of default, which moved to a higher band.",
    "APR_DOWN": "The rate follows the estimated chance of default, which moved to a lower band.",
    "APR_CAPPED": "The rate was above the regulatory cap and is brought down to it.",
}
"""Reason code -> a sentence a borrower or an analyst understands."""


class PolicyError(DuoliError):
    """A policy file that cannot be read or fails validation; names the file and problem."""


class AprBand(BaseModel):
    """Accounts with ``pd < pd_below`` (and not in an earlier band) pay ``apr``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    pd_below: float = Field(gt=0, le=1)
    apr: float = Field(ge=0, le=1)


class Policy(BaseModel):
    """The analysts' credit policy; every number is documented in ``policies/default.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    version: str = Field(min_length=1)
    min_limit: int = Field(gt=0)
    max_limit: int = Field(gt=0)
    max_step_pct: float = Field(gt=0, le=100)
    increase_cooldown_days: float = Field(ge=0)
    increase_min_on_time_streak: int = Field(ge=0)
    increase_utilisation_band: tuple[float, float]
    increase_max_pd: float = Field(ge=0, le=1)
    increase_max_fraud_score: float = Field(ge=0, le=1)
    decrease_days_past_due: int = Field(ge=1)
    decrease_pd_rise: float = Field(gt=0, le=1)
    decrease_pd_above: float = Field(gt=0, le=1)
    decrease_cooldown_days: float = Field(ge=0)
    freeze_fraud_score: float = Field(gt=0, le=1)
    freeze_days_past_due: int = Field(ge=1)
    freeze_rule_actions: tuple[RuleAction, ...] = ("block",)
    blocking_rule_severities: tuple[Severity, ...] = ("high", "critical")
    unfreeze_max_pd: float = Field(ge=0, le=1)
    unfreeze_max_fraud_score: float = Field(ge=0, le=1)
    unfreeze_min_days: float = Field(ge=0)
    unfreeze_after_fraud_days: float | None = Field(default=None, ge=0)
    apr_bands: tuple[AprBand, ...] = Field(min_length=1)
    apr_floor: float = Field(ge=0, le=1)
    apr_cap: float = Field(default=0.24, gt=0, le=1)
    apr_band_margin: float = Field(default=0.0, ge=0, lt=1)
    apr_review_days: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        problem = _inconsistency(self)
        if problem is not None:
            raise ValueError(problem)
        return self

    def apr_for(self, pd: float, current: float | None = None) -> float:
        """The APR of a pd: its band's rate, rounded to 4 decimals, then clamped.

        An account paying a band's rate keeps it while its pd stays within
        ``apr_band_margin`` of that band, so a pd wavering at an edge does not reprice
        the account back and forth.
        """
        rate = next((b.apr for b in self.apr_bands if pd < b.pd_below), self.apr_bands[-1].apr)
        if current is not None and rate != current and self._near_band_of(current, pd):
            rate = current
        return min(max(round(rate, 4), self.apr_floor), self.apr_cap)

    def _near_band_of(self, rate: float, pd: float) -> bool:
        edges = [0.0, *(band.pd_below for band in self.apr_bands)]
        for index, band in enumerate(self.apr_bands):
            if band.apr == rate:
                low, high = edges[index], edges[index + 1]
                return low - self.apr_band_margin <= pd < high + self.apr_band_margin
        return False


def _inconsistency(policy: Policy) -> str | None:
    """The first contradiction between fields, or None."""
    low, high = policy.increase_utilisation_band
    bounds = [b.pd_below for b in policy.apr_bands]
    rates = [b.apr for b in policy.apr_bands]
    checks = [
        (policy.min_limit <= policy.max_limit, "min_limit must not exceed max_limit"),
        (policy.apr_floor <= policy.apr_cap, "apr_floor must not exceed apr_cap"),
        (0 <= low <= high <= 1, "increase_utilisation_band must be [low, high] within 0..1"),
        (bounds == sorted(set(bounds)), "apr_bands must have strictly increasing pd_below"),
        (rates == sorted(rates), "apr_bands must not lower the rate as pd rises"),
        (
            policy.decrease_days_past_due <= policy.freeze_days_past_due,
            "decrease_days_past_due must not exceed freeze_days_past_due",
        ),
        (
            policy.increase_max_fraud_score < policy.freeze_fraud_score,
            "increase_max_fraud_score must be below freeze_fraud_score",
        ),
        (
            policy.unfreeze_max_fraud_score < policy.freeze_fraud_score,
            "unfreeze_max_fraud_score must be below freeze_fraud_score",
        ),
        (
            policy.increase_max_pd < policy.decrease_pd_above,
            "increase_max_pd must be below decrease_pd_above",
        ),
    ]
    return next((message for ok, message in checks if not ok), None)


def load_policy(path: Path | str | None = None) -> Policy:
    """Read a policy file; without a path, the packaged ``policies/default.yaml``."""
    if path is None:
        packaged = resources.files("duoli").joinpath("policies/default.yaml")
        return parse_policy(packaged.read_text(encoding="utf-8"), "duoli/policies/default.yaml")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"policy file {path}: cannot be read: {exc}") from exc
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "<string>") -> Policy:
    """Validate policy YAML; ``source`` names it in error messages."""
    data = _load_yaml(text, source)
    try:
        # Through JSON so that strict validation accepts YAML lists for tuples.
        return Policy.model_validate_json(json.dumps(data, default=str))
    except ValidationError as exc:
        raise PolicyError(f"policy file {source}: {_problems(exc)}") from exc


def _load_yaml(text: str, source: str) -> Any:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(f"policy file {source}: invalid YAML{where}: {problem}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"policy file {source}: a policy is a mapping of parameters to values")
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice (the last one would silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )


@dataclass(frozen=True, slots=True)
class CreditView:
    """What the engine knows about an account at one event; times are event epoch seconds.

    ``last_pd`` is the pd at the last *emitted* decision, ``last_fraud_at`` the time of the
    last confirmed fraud before this event (``confirmed_fraud`` is this event), and
    ``frozen_at`` the time of the last freeze. :func:`carry_forward` moves them. Rule hits
    are the *active* rules that matched this event, as ``(rule_id, action, severity)``.
    """

    account_id: str
    at: float
    credit_limit: float
    apr: float
    pd: float
    fraud_score: float = 0.0
    frozen: bool = False
    frozen_at: float | None = None
    last_increase_at: float | None = None
    last_decrease_at: float | None = None
    last_apr_change_at: float | None = None
    last_pd: float | None = None
    last_fraud_at: float | None = None
    confirmed_fraud: bool = False
    days_past_due: int = 0
    on_time_streak: int = 0
    utilisation: float = 0.0
    rule_hits: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer to one event; emit it only when :attr:`changed`."""

    action: Action
    old_limit: float
    new_limit: float
    old_apr: float
    new_apr: float
    was_frozen: bool
    frozen: bool
    reasons: tuple[str, ...]
    policy_version: str

    @property
    def changed(self) -> bool:
        """True when the limit, the APR or the frozen state moves."""
        return (self.old_limit, self.old_apr, self.was_frozen) != (
            self.new_limit,
            self.new_apr,
            self.frozen,
        )

    @property
    def explanations(self) -> tuple[str, ...]:
        return tuple(REASONS[code] for code in self.reasons)


@dataclass(frozen=True, slots=True)
class CreditState:
    """The policy's memory of an account between events (see :func:`carry_forward`)."""

    credit_limit: float
    apr: float
    frozen: bool
    frozen_at: float | None
    last_increase_at: float | None
    last_decrease_at: float | None
    last_apr_change_at: float | None
    last_pd: float | None
    last_fraud_at: float | None


def carry_forward(view: CreditView, decision: Decision) -> CreditState:
    """The state the next :class:`CreditView` of the account starts from."""
    changed = decision.changed or view.last_pd is None
    return CreditState(
        credit_limit=decision.new_limit,
        apr=decision.new_apr,
        frozen=decision.frozen,
        frozen_at=view.at
        if decision.action == "freeze"
        else view.frozen_at
        if decision.frozen
        else None,
        last_increase_at=view.at if decision.action == "increase" else view.last_increase_at,
        last_decrease_at=view.at if decision.action == "decrease" else view.last_decrease_at,
        last_apr_change_at=view.at
        if decision.new_apr != decision.old_apr
        else view.last_apr_change_at,
        last_pd=view.pd if changed else view.last_pd,
        last_fraud_at=view.at if view.confirmed_fraud else view.last_fraud_at,
    )


def decision_id(account_id: str, event_id: str, policy_version: str) -> str:
    """A deterministic id: the same event under the same policy is one decision.

    >>> decision_id("a1", "e1", "v1")
    '8b7017796ca3bffdcd49dbb2efc6eb2b'
    >>> decision_id("a1", "e1", "v1") != decision_id("a1", "e1", "v2")
    True
    """
    key = json.dumps([account_id, event_id, policy_version]).encode()
    return blake2b(key, digest_size=16).hexdigest()


def decision_record(view: CreditView, decision: Decision, event_id: str) -> dict[str, Any]:
    """The credit decision as published for the limit-adjustment service."""
    return {
        "decision_id": decision_id(view.account_id, event_id, decision.policy_version),
        "account_id": view.account_id,
        "event_id": event_id,
        "action": decision.action,
        "old_limit": decision.old_limit,
        "new_limit": decision.new_limit,
        "old_apr": decision.old_apr,
        "new_apr": decision.new_apr,
        "frozen": decision.frozen,
        "reasons": list(decision.reasons),
        "policy_version": decision.policy_version,
        "effective_at": iso(view.at),
    }


def decide(policy: Policy, view: CreditView) -> Decision:
    """The one decision for this event (see the module docstring for the order)."""
    freeze = _freeze_reasons(policy, view)
    if freeze:
        return _decision(policy, view, "freeze", freeze)
    cut = _decrease_reasons(policy, view)
    if cut:
        if _within(view.at, view.last_decrease_at, policy.decrease_cooldown_days):
            return _decision(policy, view, "hold", (*cut, "DECREASE_COOLDOWN"))
        return _decision(policy, view, "decrease", cut)
    if view.frozen:
        if _may_unfreeze(policy, view):
            return _decision(policy, view, "unfreeze", ("RISK_CLEARED",))
        return _decision(policy, view, "hold", ())
    if _may_increase(policy, view):
        reasons = ("ON_TIME_STREAK", "HEALTHY_UTILISATION", "LOW_RISK")
        return _decision(policy, view, "increase", reasons)
    return _decision(policy, view, "hold", ())


def _freeze_reasons(policy: Policy, view: CreditView) -> tuple[str, ...]:
    triggers = [
        (view.confirmed_fraud, "CONFIRMED_FRAUD"),
        (view.fraud_score >= policy.freeze_fraud_score, "FRAUD_SCORE_CRITICAL"),
        (any(hit[1] in policy.freeze_rule_actions for hit in view.rule_hits), "RULE_BLOCK"),
        (view.days_past_due >= policy.freeze_days_past_due, "DAYS_PAST_DUE_SEVERE"),
    ]
    return tuple(code for fired, code in triggers if fired)


def _decrease_reasons(policy: Policy, view: CreditView) -> tuple[str, ...]:
    rise = view.pd - view.last_pd if view.last_pd is not None else 0.0
    triggers = [
        (view.days_past_due >= policy.decrease_days_past_due, "DAYS_PAST_DUE"),
        (rise >= policy.decrease_pd_rise, "PD_ROSE"),
        (view.pd >= policy.decrease_pd_above, "PD_HIGH"),
    ]
    return tuple(code for fired, code in triggers if fired)


def _may_unfreeze(policy: Policy, view: CreditView) -> bool:
    return (
        view.days_past_due == 0
        and view.pd <= policy.unfreeze_max_pd
        and view.fraud_score <= policy.unfreeze_max_fraud_score
        and not _blocking_hit(policy, view)
        and not _within(view.at, view.frozen_at, policy.unfreeze_min_days)
        and _fraud_long_ago(policy, view)
    )


def _may_increase(policy: Policy, view: CreditView) -> bool:
    low, high = policy.increase_utilisation_band
    return (
        view.days_past_due == 0
        and view.on_time_streak >= policy.increase_min_on_time_streak
        and low <= view.utilisation <= high
        and view.pd <= policy.increase_max_pd
        and view.fraud_score <= policy.increase_max_fraud_score
        and not _blocking_hit(policy, view)
        and not _within(view.at, view.last_increase_at, policy.increase_cooldown_days)
        and _fraud_long_ago(policy, view)
    )


def _blocking_hit(policy: Policy, view: CreditView) -> bool:
    return any(hit[2] in policy.blocking_rule_severities for hit in view.rule_hits)


def _within(at: float, since: float | None, days: float) -> bool:
    """True while ``at`` is less than ``days`` after ``since`` (or before it: late events)."""
    return since is not None and at - since < days * DAY


def _fraud_long_ago(policy: Policy, view: CreditView) -> bool:
    """No confirmed fraud, or one older than ``unfreeze_after_fraud_days`` (None: never)."""
    if view.last_fraud_at is None:
        return True
    wait = policy.unfreeze_after_fraud_days
    return wait is not None and not _within(view.at, view.last_fraud_at, wait)


def _decision(
    policy: Policy, view: CreditView, action: Action, reasons: tuple[str, ...]
) -> Decision:
    limit = _new_limit(policy, view.credit_limit, action)
    action, reasons = _limit_outcome(policy, view.credit_limit, limit, action, reasons)
    apr = _new_apr(policy, view)
    frozen = action == "freeze" or (view.frozen and action != "unfreeze")
    return Decision(
        action=action,
        old_limit=view.credit_limit,
        new_limit=limit,
        old_apr=view.apr,
        new_apr=apr,
        was_frozen=view.frozen,
        frozen=frozen,
        reasons=reasons + _apr_reasons(policy, view.apr, apr),
        policy_version=policy.version,
    )


def _new_apr(policy: Policy, view: CreditView) -> float:
    """The band's rate, but an in-bounds rate changed less than ``apr_review_days`` ago
    stays until its review is due: a borrower is not repriced every few days."""
    apr = policy.apr_for(view.pd, current=view.apr)
    in_bounds = policy.apr_floor <= view.apr <= policy.apr_cap
    if in_bounds and _within(view.at, view.last_apr_change_at, policy.apr_review_days):
        return view.apr
    return apr


def _new_limit(policy: Policy, old: float, action: Action) -> float:
    """One step in the action's direction, rounded towards the old limit, then clamped.

    Rounding towards the old limit keeps the step within ``max_step_pct``; clamping last
    keeps the bounds. An in-bounds limit that does not step is kept exactly as it is.
    """
    step = policy.max_step_pct / 100
    target = old
    if action == "increase":
        target = max(math.floor(old * (1 + step)), old)
    elif action == "decrease":
        target = min(math.ceil(old * (1 - step)), old)
    clamped = float(min(max(target, policy.min_limit), policy.max_limit))
    return old if clamped == old else clamped


def _limit_outcome(
    policy: Policy, old: float, new: float, action: Action, reasons: tuple[str, ...]
) -> tuple[Action, tuple[str, ...]]:
    """The action as it turned out, with its reasons: a step that the bounds stopped
    becomes a hold (a stopped increase drops its reasons: they no longer explain it)."""
    bounds = ("LIMIT_ABOVE_MAX",) if new < old else ("LIMIT_BELOW_MIN",) if new > old else ()
    if action == "increase" and new <= old:
        return "hold", ("AT_MAX_LIMIT",) if old == policy.max_limit else bounds
    if action == "decrease" and new >= old:
        return "hold", reasons + (("AT_MIN_LIMIT",) if old == policy.min_limit else bounds)
    return action, reasons + (() if action in ("increase", "decrease") else bounds)


def _apr_reasons(policy: Policy, old: float, new: float) -> tuple[str, ...]:
    if new == old:
        return ()
    if old > policy.apr_cap and new == policy.apr_cap:
        return ("APR_CAPPED",)
    return ("APR_UP",) if new > old else ("APR_DOWN",)
