"""Features of one event against its account's state, as of the event's time. Pure.

Computed *before* the event is applied, counting the event itself in its windows, so
an out-of-order event sees exactly the transactions that happened before it.

>>> from duoli.account import AccountState
>>> from duoli.events import parse_event
>>> state = AccountState.fresh("a1", credit_limit=1000.0, apr=0.18)
>>> tx = parse_event('{"type": "transaction", "event_id": "t1", "account_id": "a1",'
...     ' "occurred_at": "2026-01-01T09:00:00Z", "amount": 250, "merchant_id": "m1"}')
>>> facts = transaction_features(state, tx)
>>> facts["tx_count_1h"], facts["utilisation_after"]
(1, 0.25)
"""

from __future__ import annotations

import math
from typing import Any

from duoli.account import DAY, KINDS, SPREAD_FLOOR, AccountState
from duoli.events import Repayment, Transaction

__all__ = ["WINDOWS", "account_features", "repayment_features", "transaction_features"]

HOUR = 3600.0
WEEK = 7 * DAY
WINDOWS = (("1h", HOUR), ("24h", DAY), ("7d", WEEK), ("30d", 30 * DAY))
SMALL_AMOUNT = 20.0
NEW_ENTITY_WINDOW = 30 * DAY
PURCHASE, CASH_WITHDRAWAL = KINDS.index("purchase"), KINDS.index("cash_withdrawal")  # stored codes
_EMPTY_MERCHANT = {
    "merchant_tx_count_7d": 0,
    "merchant_amount_7d": 0.0,
    "merchant_labelled_30d": 0,
    "merchant_frauds_30d": 0,
    "merchant_fraud_share": 0.0,
    "merchant_frauds_7d": 0,
    "merchant_frauds_1d": 0,
    "merchant_tx_count_1d": 0,
    "merchant_amount_1d": 0.0,
    "merchant_tx_count_30d": 0,
    "merchant_amount_30d": 0.0,
    "merchant_excess_3d": 0.0,
    "merchant_excess_7d": 0.0,
}


def transaction_features(
    state: AccountState,
    event: Transaction,
    merchant: dict[str, Any] | None = None,
    grace_seconds: float = 0.0,
) -> dict[str, Any]:
    """Every name of ``duoli.catalog`` for a transaction."""
    facts = _event_fields(event)
    facts.update(_window_features(state, event))
    facts.update(_norm_features(state, event.amount))
    facts.update(account_features(state, event.at, grace_seconds))
    facts["utilisation_after"] = (state.balance + event.amount) / state.credit_limit
    facts["repayment_ratio"] = 1.0
    facts["peak_fraud_score"] = state.peak_score(event.at)
    facts.update(merchant or _EMPTY_MERCHANT)
    return facts


def repayment_features(
    state: AccountState, event: Repayment, grace_seconds: float = 0.0
) -> dict[str, Any]:
    """The catalog's names for a repayment: account state and how much of the bill it covers."""
    facts: dict[str, Any] = {name: 0 for name in _WINDOW_NAMES}
    facts["seconds_since_prev_tx"] = math.inf
    facts.update(_event_fields(event))
    facts.update(_norm_features(state, event.amount))
    facts.update(account_features(state, event.at, grace_seconds))
    facts["utilisation_after"] = facts["utilisation"]
    facts["repayment_ratio"] = _repayment_ratio(state, event)
    facts["peak_fraud_score"] = state.peak_score(event.at)
    facts.update(_EMPTY_MERCHANT)
    return facts


def account_features(state: AccountState, now: float, grace_seconds: float) -> dict[str, Any]:
    """Terms, balance and repayment standing of the account at ``now``."""
    overdue = [i for i in state.installments.values() if i.due_at + grace_seconds < now]
    oldest_due = min((i.due_at for i in overdue), default=now)
    return {
        "credit_limit": state.credit_limit,
        "apr": state.apr,
        "balance": state.balance,
        "utilisation": state.balance / state.credit_limit,
        "account_age_days": (now - state.opened_at) / DAY if state.opened_at else 0.0,
        "is_opened": state.opened,
        "outstanding_installments": len(state.installments),
        "overdue_installments": len(overdue),
        "days_past_due": days_past_due(oldest_due, now, grace_seconds) if overdue else 0,
        "on_time_streak": state.on_time_streak,
        "settled_installments": state.settled,
        "settled_late": state.settled_late,
        "amount_owed": sum(i.owed for i in state.installments.values()),
        "confirmed_frauds": state.confirmed_frauds,
        "days_since_confirmed_fraud": _days_since(state.last_fraud_label_at, now),
    }


def _days_since(at: float | None, now: float) -> float:
    return -1.0 if at is None else max(now - at, 0.0) / DAY


def days_past_due(due_at: float, now: float, grace_seconds: float) -> int:
    """Whole days since the installment became overdue (due_at plus grace)."""
    return max(int((now - due_at - grace_seconds) // DAY), 0)


def _event_fields(event: Transaction | Repayment) -> dict[str, Any]:
    """The event's own fields; a repayment has no merchant, so those read as empty."""
    tx = event if isinstance(event, Transaction) else None
    return {
        "event_type": event.type,
        "account_id": event.account_id,
        "amount": event.amount,
        "kind": tx.kind if tx else "",
        "currency": tx.currency if tx else "CNY",
        "merchant_id": tx.merchant_id if tx else "",
        "merchant_category": (tx.merchant_category or "") if tx else "",
        "channel": (tx.channel or "") if tx else "",
        "device_id": (tx.device_id or "") if tx else "",
        "city": (tx.city or "") if tx else "",
        "hour_of_day": event.occurred_at.hour,
    }


def _window_features(state: AccountState, event: Transaction) -> dict[str, Any]:
    """Counts, sums and distinct entities over each window, in one pass over the history.

    Each past transaction lands in the smallest window holding it; wider windows are the
    running union, so the loop does one update per transaction, not one per window.
    """
    now, amount = event.at, event.amount
    merchant, device, city = event.merchant_id, event.device_id or "", event.city or ""
    counts, sums = [0] * 4, [0.0] * 4
    merchants: list[set[str]] = [set(), set(), set(), set()]
    devices: list[set[str]] = [set(), set(), set(), set()]
    cities: list[set[str]] = [set(), set(), set(), set()]
    small = [int(amount < SMALL_AMOUNT)] * 2
    is_cash = event.kind == "cash_withdrawal"
    cash = [int(is_cash), amount if is_cash else 0.0]
    cash_out = 0.0 if event.kind == "purchase" else amount  # cash and draw-downs, 7 days
    previous = -math.inf
    history = zip(
        state.tx_times, state.tx_amounts, state.tx_kinds,
        state.tx_merchants, state.tx_devices, state.tx_cities, strict=True,
    )  # fmt: skip
    for at, past_amount, kind, past_merchant, past_device, past_city in history:
        age = now - at
        if age < 0 or age >= NEW_ENTITY_WINDOW:
            continue
        if at > previous:
            previous = at
        window = 0 if age < HOUR else 1 if age < DAY else 2 if age < WEEK else 3
        counts[window] += 1
        sums[window] += past_amount
        merchants[window].add(past_merchant)
        devices[window].add(past_device)
        cities[window].add(past_city)
        if window < 3 and kind != PURCHASE:
            cash_out += past_amount
        if window < 2:
            if past_amount < SMALL_AMOUNT:
                small[1] += 1
                small[0] += window == 0
            if kind == CASH_WITHDRAWAL:
                cash[0] += 1
                cash[1] += past_amount
    facts = _cumulative(counts, sums, merchants, devices, cities, event)
    seen_merchants, seen_devices, seen_cities = merchants[3], devices[3], cities[3]
    has_history = previous > -math.inf
    facts.update(
        {
            "small_tx_count_1h": small[0],
            "small_tx_count_24h": small[1],
            "cash_withdrawal_count_24h": cash[0],
            "cash_withdrawal_sum_24h": cash[1],
            "cash_out_sum_7d": cash_out,
            "seconds_since_prev_tx": now - previous if has_history else math.inf,
            "is_new_device": has_history and bool(device) and device not in seen_devices,
            "is_new_city": has_history and bool(city) and city not in seen_cities,
            "is_new_merchant": merchant not in seen_merchants,
        }
    )
    return facts


def _cumulative(
    counts: list[int],
    sums: list[float],
    merchants: list[set[str]],
    devices: list[set[str]],
    cities: list[set[str]],
    event: Transaction,
) -> dict[str, Any]:
    """Window figures from the per-window parts. Turns each list of sets into running
    unions in place, so the last set is everything seen in 30 days before this event."""
    facts: dict[str, Any] = {}
    count, total = 1, event.amount
    for index, (name, _) in enumerate(WINDOWS):
        if index:
            merchants[index] |= merchants[index - 1]
            devices[index] |= devices[index - 1]
            cities[index] |= cities[index - 1]
        count += counts[index]
        total += sums[index]
        facts[f"tx_count_{name}"] = count
        facts[f"tx_sum_{name}"] = total
        facts[f"distinct_merchants_{name}"] = len(merchants[index] | {event.merchant_id})
        facts[f"distinct_devices_{name}"] = len((devices[index] | {event.device_id or ""}) - {""})
        facts[f"distinct_cities_{name}"] = len((cities[index] | {event.city or ""}) - {""})
    return facts


def _norm_features(state: AccountState, amount: float) -> dict[str, Any]:
    """How this amount compares with the account's typical amount."""
    if state.tx_count == 0:
        return {
            "typical_amount": 0.0,
            "amount_ratio": 1.0,
            "amount_zscore": 0.0,
            "prior_tx_count": 0,
        }
    typical = math.expm1(state.log_mean)
    spread = math.sqrt(state.log_var) if state.tx_count > 1 else 0.0
    return {
        "typical_amount": typical,
        "amount_ratio": amount / typical if typical > 0 else 1.0,
        "amount_zscore": (math.log1p(amount) - state.log_mean) / max(spread, SPREAD_FLOOR),
        "prior_tx_count": state.tx_count,
    }


def _repayment_ratio(state: AccountState, event: Repayment) -> float:
    """This repayment against what was still owed on the installment it pays."""
    target = state.installments.get(event.installment_id or "")
    if target is None and state.installments:
        target = min(state.installments.values(), key=lambda installment: installment.due_at)
    if target is None or target.owed <= 0:
        return 1.0
    return event.amount / target.owed


_WINDOW_NAMES = [
    f"{stat}_{name}"
    for stat in ("tx_count", "tx_sum", "distinct_merchants", "distinct_devices", "distinct_cities")
    for name, _ in WINDOWS
] + [
    "small_tx_count_1h",
    "small_tx_count_24h",
    "cash_withdrawal_count_24h",
    "cash_withdrawal_sum_24h",
    "cash_out_sum_7d",
    "is_new_device",
    "is_new_city",
    "is_new_merchant",
]
