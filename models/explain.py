"""Reason codes: a model's top contributions as sentences a risk analyst understands. Pure.

Every fraud input has one row in ``REASONS``: a stable code and a sentence built from
the input's actual value (transformed back to yuan, counts, days or a share). Only
inputs that pushed the score *up* become reasons, the largest first.

>>> x = {"amount_ratio": math.log(6.2), "new_device": 1.0, "hour_sin": 0.0, "hour_cos": -1.0}
>>> [r["text"] for r in reason_codes([("amount_ratio", 0.41), ("hour_sin", 0.2)], x)]
["amount is 6.2 times the account's usual", 'at 12:00 UTC, an unusual hour for the account']
>>> reason_codes([("new_device", -0.3)], x)
()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

__all__ = ["REASONS", "Reason", "reason_codes"]

Inputs = Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Reason:
    """A stable code and how to say it with the input's value."""

    code: str
    describe: Callable[[Inputs], str]


def _value(x: Inputs, name: str) -> float:
    return float(x.get(name, 0.0))


def _count(x: Inputs, name: str, plus: int = 0) -> int:
    """A log1p-scaled count back as a whole number (``plus`` 1 for 'this one included')."""
    return round(math.expm1(_value(x, name))) + plus


def _yuan(x: Inputs, name: str) -> str:
    return f"{math.expm1(_value(x, name)):,.0f} yuan"


def _times(x: Inputs, name: str) -> str:
    return f"{math.exp(_value(x, name)):.1f} times"


def _share(x: Inputs, name: str) -> str:
    return f"{_value(x, name):.0%}"


def _log_share(x: Inputs, name: str) -> str:
    """A log10-scaled share (``amount_to_limit``) back as a percentage."""
    return f"{10 ** _value(x, name):.1%}"


def _flag(name: str, yes: str, no: str) -> Callable[[Inputs], str]:
    return lambda x: yes if _value(x, name) > 0.5 else no


def _duration(x: Inputs) -> str:
    seconds = math.expm1(_value(x, "seconds_since_prev_tx"))
    if seconds >= 29.5 * 86_400:
        return "no transaction in the previous 30 days"
    for unit, size in (("days", 86_400), ("hours", 3_600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit} since the previous transaction"
    return f"{seconds:.0f} seconds since the previous transaction"


def _hour(x: Inputs) -> str:
    angle = math.atan2(_value(x, "hour_sin"), _value(x, "hour_cos"))
    hour = round(angle * 24 / (2 * math.pi)) % 24
    return f"at {hour:02d}:00 UTC, an unusual hour for the account"


def _age(x: Inputs) -> str:
    if _value(x, "is_opened") < 0.5:
        return "no credit line was ever opened for the account"
    return f"the credit line is {math.expm1(_value(x, 'account_age')):.0f} days old"


def _merchant_excess_reason(days: int) -> Reason:
    name = f"merchant_excess_{days}d"
    return Reason(
        "MERCHANT_AMOUNTS_HIGH",
        lambda x: (
            f"in the last {days} days the merchant's customers paid "
            f"{_value(x, name):.1f} spreads above their usual amounts, on average"
        ),
    )


REASONS: dict[str, Reason] = {
    "rules_score": Reason(
        "RULES_HIT", lambda x: f"analysts' active rules scored it {_value(x, 'rules_score'):.2f}"
    ),
    "amount": Reason("LARGE_AMOUNT", lambda x: f"amount is {_yuan(x, 'amount')}"),
    "amount_zscore": Reason(
        "AMOUNT_UNUSUAL",
        lambda x: f"amount is {_value(x, 'amount_zscore'):.1f} deviations from the account's norm",
    ),
    "amount_ratio": Reason(
        "AMOUNT_ABOVE_USUAL",
        lambda x: f"amount is {_times(x, 'amount_ratio')} the account's usual",
    ),
    "amount_to_limit": Reason(
        "AMOUNT_NEAR_LIMIT",
        lambda x: f"amount is {_log_share(x, 'amount_to_limit')} of the credit limit",
    ),
    "amount_to_available": Reason(
        "DRAINS_AVAILABLE_CREDIT",
        lambda x: f"amount is {_log_share(x, 'amount_to_available')} of the credit available",
    ),
    "amount_vs_merchant": Reason(
        "AMOUNT_ABOVE_MERCHANT_USUAL",
        lambda x: f"amount is {_times(x, 'amount_vs_merchant')} the merchant's average",
    ),
    "typical_amount": Reason(
        "TYPICAL_AMOUNT", lambda x: f"the account usually spends {_yuan(x, 'typical_amount')}"
    ),
    "prior_tx": Reason(
        "SHORT_HISTORY",
        lambda x: f"the account made {_count(x, 'prior_tx')} transactions before this one",
    ),
    "tx_count_1h": Reason(
        "VELOCITY_1H", lambda x: f"{_count(x, 'tx_count_1h', 1)} transactions in the last hour"
    ),
    "tx_count_24h": Reason(
        "VELOCITY_24H",
        lambda x: f"{_count(x, 'tx_count_24h', 1)} transactions in the last 24 hours",
    ),
    "tx_count_7d": Reason(
        "VELOCITY_7D", lambda x: f"{_count(x, 'tx_count_7d', 1)} transactions in the last 7 days"
    ),
    "tx_count_30d": Reason(
        "ACTIVITY_30D",
        lambda x: f"{_count(x, 'tx_count_30d', 1)} transactions in the last 30 days",
    ),
    "spend_24h": Reason(
        "SPEND_24H", lambda x: f"{_yuan(x, 'spend_24h')} spent in the last 24 hours"
    ),
    "spend_24h_vs_typical": Reason(
        "SPEND_ABOVE_USUAL",
        lambda x: (
            "24-hour spending is "
            f"{math.expm1(_value(x, 'spend_24h_vs_typical')):.1f} times the usual amount"
        ),
    ),
    "small_tx_1h": Reason(
        "SMALL_PROBES_1H",
        lambda x: f"{_count(x, 'small_tx_1h')} transactions under 20 yuan in the last hour",
    ),
    "small_tx_24h": Reason(
        "SMALL_PROBES_24H",
        lambda x: f"{_count(x, 'small_tx_24h')} transactions under 20 yuan in the last 24 hours",
    ),
    "seconds_since_prev_tx": Reason("RAPID_SUCCESSION", _duration),
    "merchants_1h": Reason(
        "MERCHANT_HOPPING_1H",
        lambda x: f"{_count(x, 'merchants_1h', 1)} distinct merchants in the last hour",
    ),
    "merchants_24h": Reason(
        "MERCHANT_HOPPING_24H",
        lambda x: f"{_count(x, 'merchants_24h', 1)} distinct merchants in the last 24 hours",
    ),
    "new_merchant": Reason(
        "NEW_MERCHANT",
        _flag("new_merchant", "a merchant not used in 30 days", "a merchant used before"),
    ),
    "new_device": Reason(
        "NEW_DEVICE", _flag("new_device", "a device not seen in 30 days", "a known device")
    ),
    "new_city": Reason(
        "NEW_CITY", _flag("new_city", "a city not seen in 30 days", "a city seen before")
    ),
    "devices_24h": Reason(
        "MANY_DEVICES", lambda x: f"{_count(x, 'devices_24h', 1)} devices in the last 24 hours"
    ),
    "cities_24h": Reason(
        "MANY_CITIES", lambda x: f"{_count(x, 'cities_24h', 1)} cities in the last 24 hours"
    ),
    "cash_withdrawal": Reason(
        "CASH_WITHDRAWAL",
        _flag("cash_withdrawal", "a cash withdrawal", "not a cash withdrawal"),
    ),
    "loan_drawdown": Reason(
        "LOAN_DRAWDOWN", _flag("loan_drawdown", "a loan draw-down", "not a loan draw-down")
    ),
    "cash_out_7d_to_limit": Reason(
        "LINE_CASHED_OUT_7D",
        lambda x: (
            f"{_log_share(x, 'cash_out_7d_to_limit')} of the credit line"
            " taken as cash or draw-downs in 7 days"
        ),
    ),
    "cash_24h": Reason(
        "CASH_VOLUME_24H", lambda x: f"{_yuan(x, 'cash_24h')} withdrawn as cash in 24 hours"
    ),
    "utilisation_after": Reason(
        "HIGH_UTILISATION",
        lambda x: f"the line is {_share(x, 'utilisation_after')} used after this transaction",
    ),
    "hour_sin": Reason("UNUSUAL_HOUR", _hour),
    "hour_cos": Reason("UNUSUAL_HOUR", _hour),
    "log_credit_limit": Reason(
        "CREDIT_LIMIT",
        lambda x: f"the credit limit is {10 ** _value(x, 'log_credit_limit'):,.0f} yuan",
    ),
    "account_age": Reason("NEW_ACCOUNT", _age),
    "is_opened": Reason("NO_CREDIT_LINE", _age),
    "overdue_installments": Reason(
        "OVERDUE", lambda x: f"{_count(x, 'overdue_installments')} installments overdue"
    ),
    "days_past_due": Reason("PAST_DUE", lambda x: f"{_count(x, 'days_past_due')} days past due"),
    "merchant_volume": Reason(
        "MERCHANT_VOLUME",
        lambda x: f"the merchant had {_count(x, 'merchant_volume')} transactions in 7 days",
    ),
    "merchant_frauds": Reason(
        "MERCHANT_FRAUDS",
        lambda x: f"the merchant had {_count(x, 'merchant_frauds')} confirmed frauds in 30 days",
    ),
    "merchant_fraud_rate": Reason(
        "MERCHANT_FRAUD_RATE",
        lambda x: (
            "about "
            f"{math.expm1(_value(x, 'merchant_fraud_rate')):.0f} in 1,000 of the merchant's "
            "recent transactions were confirmed fraud"
        ),
    ),
    "merchant_fraud_rate_7d": Reason(
        "MERCHANT_RECENT_FRAUDS",
        lambda x: (
            "about "
            f"{math.expm1(_value(x, 'merchant_fraud_rate_7d')):.0f} in 1,000 of the merchant's "
            "transactions were confirmed fraud in the last 7 days"
        ),
    ),
    "merchant_fraud_rate_1d": Reason(
        "MERCHANT_FRAUDS_YESTERDAY",
        lambda x: (
            "about "
            f"{math.expm1(_value(x, 'merchant_fraud_rate_1d')):.0f} in 1,000 of the merchant's "
            "daily transactions were confirmed fraud yesterday"
        ),
    ),
    "merchant_fraud_share": Reason(
        "MERCHANT_FRAUD_SHARE",
        lambda x: (
            f"{_share(x, 'merchant_fraud_share')} of the merchant's labelled "
            "transactions were fraud"
        ),
    ),
    "merchant_amount_drift": Reason(
        "MERCHANT_AMOUNTS_UP",
        lambda x: (
            "the merchant's average amount yesterday was "
            f"{_times(x, 'merchant_amount_drift')} its 30-day average"
        ),
    ),
    "merchant_excess_3d": _merchant_excess_reason(3),
    "merchant_excess_7d": _merchant_excess_reason(7),
    "account_frauds": Reason(
        "ACCOUNT_FRAUDS",
        lambda x: f"the account has {_count(x, 'account_frauds')} confirmed frauds",
    ),
    "peak_score": Reason(
        "RECENT_HIGH_SCORE",
        lambda x: (
            "a recent transaction of the account scored high "
            f"({_value(x, 'peak_score'):.2f} after fading with time)"
        ),
    ),
    "days_since_account_fraud": Reason(
        "RECENT_ACCOUNT_FRAUD",
        lambda x: (
            f"the account's last confirmed fraud came {_count(x, 'days_since_account_fraud')} "
            "days ago"
        ),
    ),
}


_SECOND = itemgetter(1)


def reason_codes(
    contributions: Iterable[tuple[str, float]], x: Inputs, k: int = 3
) -> tuple[dict[str, Any], ...]:
    """The ``k`` inputs that raised the score most, as reason codes with their sentence."""
    if k <= 0:
        return ()
    raised = sorted([pair for pair in contributions if pair[1] > 0], key=_SECOND, reverse=True)
    reasons: list[dict[str, Any]] = []
    codes: set[str] = set()
    for name, contribution in raised:
        reason = REASONS.get(name)
        if reason is None or reason.code in codes:
            continue
        codes.add(reason.code)
        reasons.append(
            {
                "code": reason.code,
                "feature": name,
                "text": reason.describe(x),
                "contribution": round(contribution, 4),
            }
        )
        if len(reasons) == k:
            break
    return tuple(reasons)
