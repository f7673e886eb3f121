"""The models' inputs: fixed, ordered, finite floats derived from the engine's facts. Pure.

A model never sees a raw fact. Every input is read from the facts of
``duoli.features`` through one table row: the facts it reads, a transform (counts and
amounts are log-scaled), fixed bounds it is clipped to, and a neutral value that
stands in when a fact is missing, not a number or infinite. The bounds are constants,
so the anomaly detector can map every input to [0, 1] from the first event on.

Optional event fields (device, city) only ever feed inputs that read 0 when the field
is missing, so a feed without them looks like an account that never changes device.

Merchant and account risk come from delayed labels only, as they become known: frauds
per transaction at the merchant over 30 days, 7 days and yesterday (labels may come for
frauds only, so a share of labelled transactions says nothing), and the account's own
fraud labels and how long ago the last one came. These inputs, and the analysts' rules
score, are evidence: more of it can only mean more risk (``monotone``), and a model may
hold them to that (``models.candidates``).

>>> x = fraud_inputs({"amount": 250.0, "amount_ratio": 6.0, "hour_of_day": 3}, rules_score=0.3)
>>> list(x) == list(FRAUD_FEATURES)
True
>>> round(x["amount_ratio"], 3), x["rules_score"], x["prior_tx"]
(1.792, 0.3, 0.0)
>>> unpack(pack(x, FRAUD_FEATURES), FRAUD_FEATURES) == x
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from duoli.errors import DuoliError

__all__ = [
    "BOUNDS",
    "FRAUD_FEATURES",
    "FRAUD_INPUTS",
    "FRAUD_MONOTONE",
    "PD_FEATURES",
    "PD_INPUTS",
    "Input",
    "ModelError",
    "fraud_inputs",
    "guard",
    "pack",
    "pd_inputs",
    "unpack",
    "values_of",
]

Facts = Mapping[str, Any]
DAY_SECONDS = 86_400.0
GAP_CAP = 30 * DAY_SECONDS  # a first transaction reads as a month-long gap
MERCHANT_PRIOR_TX_PER_DAY = 1 / 3  # damps the fraud rate of a quiet merchant
NEVER = math.log1p(365)  # an account without fraud labels reads as one labelled a year ago


class ModelError(DuoliError):
    """A model input or snapshot that does not fit the model (wrong length, unknown name)."""


@dataclass(frozen=True, slots=True)
class Input:
    """One model input: how to read it from the facts, its fixed bounds and neutral value."""

    name: str
    read: Callable[[Facts], float]
    low: float
    high: float
    neutral: float = 0.0
    monotone: int = 0  # +1: more can only mean more risk, -1: only less, 0: either

    def value(self, facts: Facts) -> float:
        """The input, finite and within its bounds whatever the facts hold."""
        raw = self.read(facts)
        if not math.isfinite(raw):
            return self.neutral
        return min(max(raw, self.low), self.high)


def _num(facts: Facts, key: str) -> float:
    """A fact as a float; NaN when it is missing or not a number (bools count as 0/1)."""
    value = facts.get(key)
    if value.__class__ is float:
        return value
    if isinstance(value, float | int):
        return float(value)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _log1p(value: float) -> float:
    """log(1 + v) for v >= 0; NaN for anything else, so the neutral value stands in."""
    return math.log1p(value) if value >= 0 else math.nan


def _log_ratio(top: float, bottom: float) -> float:
    ratio = top / bottom if top > 0 and bottom > 0 else math.nan
    return math.log(ratio) if ratio > 0 else math.nan  # not 0/0, inf/inf, x/inf


# The readers below take a fast path for the int and float facts the engine makes (a
# third of the cost of reading the inputs) and fall back to ``_num`` for anything else.


def _count(key: str) -> Callable[[Facts], float]:
    def read(facts: Facts) -> float:
        value = facts.get(key)
        if value.__class__ is int or value.__class__ is float:
            return math.log1p(value) if value >= 0 else math.nan
        return _log1p(_num(facts, key))

    return read


def _flag(key: str) -> Callable[[Facts], float]:
    return lambda facts: 1.0 if _num(facts, key) > 0 else 0.0


def _plain(key: str) -> Callable[[Facts], float]:
    def read(facts: Facts) -> float:
        value = facts.get(key)
        return value if value.__class__ is float else _num(facts, key)

    return read


def _others(key: str) -> Callable[[Facts], float]:
    """A window count that includes this transaction, as the log of the *other* ones."""

    def read(facts: Facts) -> float:
        value = facts.get(key)
        if value.__class__ is int:
            return math.log1p(value - 1) if value >= 1 else math.nan
        return _log1p(_num(facts, key) - 1)

    return read


def _kind_is(kind: str) -> Callable[[Facts], float]:
    return lambda facts: 1.0 if facts.get("kind") == kind else 0.0


def _hour(angle: Callable[[float], float]) -> Callable[[Facts], float]:
    def read(facts: Facts) -> float:
        hour = _num(facts, "hour_of_day")
        return angle(2 * math.pi * (hour % 24) / 24) if math.isfinite(hour) else math.nan

    return read


def _gap(facts: Facts) -> float:
    gap = _num(facts, "seconds_since_prev_tx")
    return _log1p(min(gap, GAP_CAP)) if gap == gap else math.nan


def _log_share(top: float, bottom: float) -> float:
    """log10(top / bottom) for positive numbers: 1% reads -2, the whole reads 0."""
    share = top / bottom if top > 0 and bottom > 0 else math.nan
    return math.log10(share) if share > 0 else math.nan


def _amount_to_limit(facts: Facts) -> float:
    return _log_share(_num(facts, "amount"), _num(facts, "credit_limit"))


def _amount_to_available(facts: Facts) -> float:
    """The amount against the credit still available before it (at least 1 yuan)."""
    available = _num(facts, "credit_limit") - _num(facts, "balance")
    return _log_share(_num(facts, "amount"), max(available, 1.0))


def _cash_out_to_limit(facts: Facts) -> float:
    """Cash and draw-downs of the last 7 days against the limit: how much of the line left
    as money; reads as 1 in 10,000 when none did."""
    return _log_share(max(_num(facts, "cash_out_sum_7d"), 1e-4), _num(facts, "credit_limit"))


def _spend_vs_typical(facts: Facts) -> float:
    """Yuan spent in 24 h against the account's typical amount (0 without history)."""
    typical = _num(facts, "typical_amount")
    return _log1p(_num(facts, "tx_sum_24h") / typical) if typical > 0 else 0.0


def _merchant_usual(facts: Facts) -> float:
    """The merchant's average amount over 7 days; NaN for a merchant with no volume yet."""
    count = _num(facts, "merchant_tx_count_7d")
    return _num(facts, "merchant_amount_7d") / count if count > 0 else math.nan


def _amount_vs_merchant(facts: Facts) -> float:
    return _log_ratio(_num(facts, "amount"), _merchant_usual(facts))


def _merchant_drift(facts: Facts) -> float:
    """Yesterday's average amount at the merchant against its 30-day average, log-scaled:
    a rigged terminal that overcharges moves it before any label comes."""
    day, month = _num(facts, "merchant_tx_count_1d"), _num(facts, "merchant_tx_count_30d")
    if not (day > 0 and month > 0):
        return math.nan
    usual = _num(facts, "merchant_amount_30d") / month
    return _log_ratio(_num(facts, "merchant_amount_1d") / day, usual)


def _merchant_fraud_rate(frauds_key: str, days: int) -> Callable[[Facts], float]:
    """Frauds per thousand transactions at the merchant, log-scaled: the frauds labelled in
    the last ``days`` against the merchant's volume over as many days (its 7-day volume
    scaled), plus a third of a transaction a day so a quiet merchant is not judged on one.

    Labels may come for frauds only, so frauds are set against the volume, not against the
    labelled transactions.
    """

    def rate(facts: Facts) -> float:
        frauds = _num(facts, frauds_key)
        if not frauds > 0:
            return 0.0
        volume = max(_num(facts, "merchant_tx_count_7d"), 0.0) * days / 7
        return math.log1p(1000 * frauds / (volume + days * MERCHANT_PRIOR_TX_PER_DAY))

    return rate


def _days_since_fraud(facts: Facts) -> float:
    """log(1 + days) since the account's last fraud label; NaN (read as long ago) if none."""
    return _log1p(_num(facts, "days_since_confirmed_fraud"))


def _late_share(facts: Facts) -> float:
    settled = _num(facts, "settled_installments")
    return _num(facts, "settled_late") / settled if settled > 0 else math.nan


def _owed_to_limit(facts: Facts) -> float:
    limit = _num(facts, "credit_limit")
    return _num(facts, "amount_owed") / limit if limit > 0 else math.nan


def _log_limit(facts: Facts) -> float:
    limit = _num(facts, "credit_limit")
    return math.log10(limit) if limit > 0 else math.nan


def _fraud_rate_input(name: str, frauds_key: str, days: int) -> Input:
    """A merchant's fraud rate over ``days``: evidence, so it may only raise the risk."""
    return Input(name, _merchant_fraud_rate(frauds_key, days), 0.0, 7.0, monotone=1)


_SHARED: tuple[Input, ...] = (
    Input("log_credit_limit", _log_limit, 2.0, 6.0, neutral=3.7),
    Input("account_age", _count("account_age_days"), 0.0, 7.0),
    Input("is_opened", _flag("is_opened"), 0.0, 1.0),
    Input("overdue_installments", _count("overdue_installments"), 0.0, 3.0),
    Input("days_past_due", _count("days_past_due"), 0.0, 6.0),
)

FRAUD_INPUTS: tuple[Input, ...] = (
    Input("rules_score", _plain("rules_score"), 0.0, 1.0, monotone=1),
    Input("amount", _count("amount"), 0.0, 12.0, neutral=4.0),
    Input("amount_zscore", _plain("amount_zscore"), -5.0, 10.0),
    Input("amount_ratio", lambda f: _log_ratio(_num(f, "amount_ratio"), 1.0), -4.0, 6.0),
    Input("amount_to_limit", _amount_to_limit, -4.0, 0.5, neutral=-2.0),
    Input("amount_to_available", _amount_to_available, -4.0, 0.5, neutral=-2.0),
    Input("amount_vs_merchant", _amount_vs_merchant, -4.0, 6.0),
    Input("typical_amount", _count("typical_amount"), 0.0, 12.0),
    Input("prior_tx", _count("prior_tx_count"), 0.0, 10.0),
    Input("tx_count_1h", _others("tx_count_1h"), 0.0, 5.0),
    Input("tx_count_24h", _others("tx_count_24h"), 0.0, 6.0),
    Input("tx_count_7d", _others("tx_count_7d"), 0.0, 7.0),
    Input("tx_count_30d", _others("tx_count_30d"), 0.0, 8.0),
    Input("spend_24h", _count("tx_sum_24h"), 0.0, 13.0, neutral=4.0),
    Input("spend_24h_vs_typical", _spend_vs_typical, 0.0, 8.0),
    Input("small_tx_1h", _count("small_tx_count_1h"), 0.0, 5.0),
    Input("small_tx_24h", _count("small_tx_count_24h"), 0.0, 6.0),
    Input("seconds_since_prev_tx", _gap, 0.0, 15.0, neutral=_log1p(GAP_CAP)),
    Input("peak_score", _plain("peak_fraud_score"), 0.0, 1.0, monotone=1),
    Input("merchants_1h", _others("distinct_merchants_1h"), 0.0, 4.0),
    Input("merchants_24h", _others("distinct_merchants_24h"), 0.0, 5.0),
    Input("new_merchant", _flag("is_new_merchant"), 0.0, 1.0),
    Input("new_device", _flag("is_new_device"), 0.0, 1.0),
    Input("new_city", _flag("is_new_city"), 0.0, 1.0),
    Input("devices_24h", _others("distinct_devices_24h"), 0.0, 3.0),
    Input("cities_24h", _others("distinct_cities_24h"), 0.0, 3.0),
    Input("cash_withdrawal", _kind_is("cash_withdrawal"), 0.0, 1.0),
    Input("loan_drawdown", _kind_is("loan_drawdown"), 0.0, 1.0),
    Input("cash_24h", _count("cash_withdrawal_sum_24h"), 0.0, 13.0),
    Input("cash_out_7d_to_limit", _cash_out_to_limit, -4.0, 0.5, neutral=-4.0),
    Input("utilisation_after", _plain("utilisation_after"), 0.0, 1.5),
    Input("hour_sin", _hour(math.sin), -1.0, 1.0),
    Input("hour_cos", _hour(math.cos), -1.0, 1.0),
    *_SHARED,
    Input("merchant_volume", _count("merchant_tx_count_7d"), 0.0, 12.0),
    Input("merchant_amount_drift", _merchant_drift, -3.0, 3.0),
    Input("merchant_excess_3d", _plain("merchant_excess_3d"), 0.0, 4.0),
    Input("merchant_excess_7d", _plain("merchant_excess_7d"), 0.0, 4.0),
    Input("merchant_frauds", _count("merchant_frauds_30d"), 0.0, 7.0, monotone=1),
    _fraud_rate_input("merchant_fraud_rate", "merchant_frauds_30d", 30),
    Input("merchant_fraud_share", _plain("merchant_fraud_share"), 0.0, 1.0, monotone=1),
    _fraud_rate_input("merchant_fraud_rate_7d", "merchant_frauds_7d", 7),
    _fraud_rate_input("merchant_fraud_rate_1d", "merchant_frauds_1d", 1),
    Input("account_frauds", _count("confirmed_frauds"), 0.0, 4.0, monotone=1),
    Input("days_since_account_fraud", _days_since_fraud, 0.0, 6.0, neutral=NEVER, monotone=-1),
)

PD_INPUTS: tuple[Input, ...] = (
    Input("apr", _plain("apr"), 0.0, 1.0, neutral=0.18),
    Input("utilisation", _plain("utilisation"), 0.0, 2.0),
    Input("owed_to_limit", _owed_to_limit, 0.0, 2.0),
    Input("outstanding_installments", _count("outstanding_installments"), 0.0, 4.0),
    Input("on_time_streak", _count("on_time_streak"), 0.0, 5.0),
    Input("settled_installments", _count("settled_installments"), 0.0, 6.0),
    Input("late_share", _late_share, 0.0, 1.0, neutral=0.0),
    Input("never_settled", lambda f: float(_num(f, "settled_installments") == 0), 0.0, 1.0),
    *_SHARED,
)

FRAUD_FEATURES: tuple[str, ...] = tuple(spec.name for spec in FRAUD_INPUTS)
PD_FEATURES: tuple[str, ...] = tuple(spec.name for spec in PD_INPUTS)
FRAUD_MONOTONE: dict[str, int] = {
    spec.name: spec.monotone for spec in FRAUD_INPUTS if spec.monotone
}
BOUNDS: dict[str, tuple[float, float]] = {
    spec.name: (spec.low, spec.high) for spec in (*FRAUD_INPUTS, *PD_INPUTS)
}


def fraud_inputs(facts: Facts, rules_score: float) -> dict[str, float]:
    """The fraud model's inputs for one transaction's facts and its rules score."""
    x = _read(_RULES_SCORE, {"rules_score": rules_score})
    x.update(_read(_FRAUD_FACTS, facts))
    return x


def pd_inputs(account: Facts) -> dict[str, float]:
    """The delinquency model's inputs for an account's standing (``account_features``)."""
    return _read(_PD_FACTS, account)


Table = tuple[tuple[str, Callable[[Facts], float], float, float, float], ...]
_INFINITE = (math.inf, -math.inf)


def _table(inputs: Sequence[Input]) -> Table:
    return tuple((spec.name, spec.read, spec.low, spec.high, spec.neutral) for spec in inputs)


def _read(table: Table, facts: Facts) -> dict[str, float]:
    """Each input as ``Input.value`` gives it, inlined: this runs for every event."""
    values = {}
    for name, read, low, high, neutral in table:
        raw = read(facts)
        if not low <= raw <= high:
            raw = neutral if raw != raw or raw in _INFINITE else low if raw < low else high
        values[name] = raw
    return values


# The rules score comes from the caller, the rest from the facts (rules_score is first).
_RULES_SCORE, _FRAUD_FACTS = _table(FRAUD_INPUTS[:1]), _table(FRAUD_INPUTS[1:])
_PD_FACTS = _table(PD_INPUTS)


def guard(x: Mapping[str, Any], inputs: Sequence[Input]) -> dict[str, float]:
    """Exactly the model's inputs, each finite and within its bounds: the last line of
    defence before a model, whatever a caller or a transport did to ``x``."""
    clean: dict[str, float] = {}
    for name, low, high, neutral in _LIMITS.get(id(inputs)) or _limits(inputs):
        value = x.get(name, neutral)
        if value.__class__ is float and low <= value <= high:
            clean[name] = value
        else:
            clean[name] = _clip(value, low, high, neutral)
    return clean


def _limits(inputs: Sequence[Input]) -> tuple[tuple[str, float, float, float], ...]:
    return tuple((spec.name, spec.low, spec.high, spec.neutral) for spec in inputs)


# The two input sets are module constants: their limits are worked out once.
_LIMITS = {id(FRAUD_INPUTS): _limits(FRAUD_INPUTS), id(PD_INPUTS): _limits(PD_INPUTS)}


def _clip(value: Any, low: float, high: float, neutral: float) -> float:
    """Any value as a float within [low, high]; not a finite number reads ``neutral``."""
    number = _num({"v": value}, "v")
    if not math.isfinite(number):
        return neutral
    return min(max(number, low), high)


def values_of(names: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A reader of the values of ``names``, in order, as a tuple: one C call, where a
    comprehension costs a few µs per event; a missing name raises ``KeyError``.

    >>> values_of(("b", "a"))({"a": 1.0, "b": 2.0}), values_of(("a",))({"a": 1.0})
    ((2.0, 1.0), (1.0,))
    """
    if len(names) == 1:
        (name,) = names
        return lambda mapping: (mapping[name],)
    return itemgetter(*names)


def pack(inputs: Mapping[str, float], names: Sequence[str]) -> list[float]:
    """The inputs as a list in ``names`` order, for JSON transport; a missing name reads 0."""
    getter = _GETTERS.get(id(names))
    if getter is not None:
        try:
            return list(getter(inputs))  # the engine's own inputs: every name is there
        except KeyError:
            pass
    return [float(inputs.get(name, 0.0)) for name in names]


# The two name lists are module constants: with every name there, one C call reads them.
_GETTERS = {id(names): values_of(names) for names in (FRAUD_FEATURES, PD_FEATURES)}


def unpack(values: Sequence[float], names: Sequence[str]) -> dict[str, float]:
    """The inverse of ``pack``, guarding again: a non-finite value reads 0.0."""
    if len(values) != len(names):
        raise ModelError(f"expected {len(names)} values, got {len(values)}")
    return {name: _finite(value) for name, value in zip(names, values, strict=True)}


def _finite(value: Any) -> float:
    if value.__class__ is float and value - value == 0.0:  # finite: what JSON mostly holds
        return value
    number = _num({"v": value}, "v")
    return number if math.isfinite(number) else 0.0
