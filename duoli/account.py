"""Per-account state and how each event moves it. Pure: no I/O, event time only.

The transaction history is kept column-wise in arrays so that a 30-day window costs
tens of bytes per transaction, not hundreds (the state bar is 4 KB per account).

>>> from duoli.events import parse_event
>>> state = AccountState.fresh("a1", credit_limit=5000.0, apr=0.18)
>>> opened = parse_event('{"type": "credit_line_opened", "event_id": "o1", "account_id": "a1",'
...     ' "occurred_at": "2026-01-01T00:00:00Z", "credit_limit": 8000, "apr": 0.2}')
>>> apply_event(state, opened)
>>> state.credit_limit, state.opened
(8000.0, True)
"""

from __future__ import annotations

import base64
import binascii
import math
import sys
from array import array
from dataclasses import dataclass, field, fields
from hashlib import blake2b
from typing import Any

from duoli.events import CreditLineOpened, Event, FraudLabel, InstallmentDue, Repayment, Transaction

__all__ = ["HISTORY_SECONDS", "AccountState", "Installment", "apply_event", "id_hash"]

DAY = 86_400.0
HISTORY_SECONDS = 35 * DAY  # the 30-day window plus room for late events
MAX_HISTORY = 512  # a hard cap so one hyperactive account cannot exhaust memory
KINDS = ("purchase", "cash_withdrawal", "loan_drawdown")
EWMA_ALPHA = 0.1
NORM_CLIP = 1.5  # spreads: the most one transaction can move the account's amount norm
NORM_WARMUP = 5  # transactions learned in full before the norm's steps are clipped
SPREAD_FLOOR = 0.25  # the least spread (of log amounts) the norm and the z-score assume
PEAK_SCORE_FADE = 3600.0  # seconds: a peak fraud score an hour old counts 1/e of itself


def id_hash(event_id: str) -> int:
    """A stable signed 64-bit fingerprint of an event id (for dedup and label lookups)."""
    return int.from_bytes(blake2b(event_id.encode(), digest_size=8).digest(), "big", signed=True)


@dataclass(slots=True)
class Installment:
    due_at: float
    amount_due: float
    event_id: str = ""  # the installment_due event, cited by delinquency alerts
    paid: float = 0.0
    alerted: int = 0  # bit i set once the i-th days-past-due threshold has alerted

    @property
    def owed(self) -> float:
        return max(self.amount_due - self.paid, 0.0)


@dataclass(slots=True)
class AccountState:
    """Everything Duoli remembers about one account."""

    account_id: str
    credit_limit: float
    apr: float
    opened_at: float | None = None
    balance: float = 0.0
    latest_at: float = 0.0
    partition: int = -1
    last_offset: int = -1
    tx_count: int = 0
    log_mean: float = 0.0
    log_var: float = 0.0
    on_time_streak: int = 0
    settled: int = 0  # installments repaid in full, ever
    settled_late: int = 0  # of those, repaid after their due time
    confirmed_frauds: int = 0
    last_fraud_label_at: float | None = None
    last_fraud_score: float = 0.0
    # The highest fraud_score so far, fading (see ``peak_score``), as of ``peak_score_at``.
    peak_fraud_score: float = 0.0
    peak_score_at: float = 0.0
    # The credit policy's memory (duoli.policy.CreditState): the frozen state and when
    # the limit last moved, in event time, and the pd at the last emitted decision.
    frozen: bool = False
    frozen_at: float | None = None
    last_increase_at: float | None = None
    last_decrease_at: float | None = None
    last_apr_change_at: float | None = None
    last_pd: float | None = None
    tx_times: array[float] = field(default_factory=lambda: array("d"))
    tx_amounts: array[float] = field(default_factory=lambda: array("d"))
    tx_kinds: bytearray = field(default_factory=bytearray)
    tx_ids: array[int] = field(default_factory=lambda: array("q"))
    tx_merchants: list[str] = field(default_factory=list)
    tx_devices: list[str] = field(default_factory=list)
    tx_cities: list[str] = field(default_factory=list)
    seen_ids: array[int] = field(default_factory=lambda: array("q"))
    seen_times: array[float] = field(default_factory=lambda: array("d"))
    installments: dict[str, Installment] = field(default_factory=dict)
    # Only transactions some rule matched: their fingerprints, and the rule ids joined by
    # commas, so a fraud label can credit those rules (live rule precision).
    hit_ids: array[int] = field(default_factory=lambda: array("q"))
    hit_rules: list[str] = field(default_factory=list)

    @classmethod
    def fresh(cls, account_id: str, credit_limit: float, apr: float) -> AccountState:
        """An account never seen: default terms, not dropped."""
        return cls(account_id=account_id, credit_limit=credit_limit, apr=apr)

    @property
    def opened(self) -> bool:
        return self.opened_at is not None

    def has_seen(self, event_id: str) -> bool:
        fingerprint = id_hash(event_id)
        return fingerprint in self.tx_ids or fingerprint in self.seen_ids

    def remember(self, event_id: str, at: float) -> None:
        self.seen_ids.append(id_hash(event_id))
        self.seen_times.append(at)

    def find_transaction(self, event_id: str) -> int | None:
        """Index of a transaction still in the history, or None."""
        fingerprint = id_hash(event_id)
        return self.tx_ids.index(fingerprint) if fingerprint in self.tx_ids else None

    def peak_score(self, at: float) -> float:
        """The account's highest fraud score, fading by 1/e every ``PEAK_SCORE_FADE``
        seconds: frauds come in runs on one account, and the first of a run is often the
        one that scores high. A time before the peak's (a late event) reads it unfaded."""
        elapsed = max(at - self.peak_score_at, 0.0)
        return self.peak_fraud_score * math.exp(-elapsed / PEAK_SCORE_FADE)

    def remember_score(self, score: float, at: float) -> None:
        """A transaction's fraud score: the last one, and the peak if it is higher."""
        self.last_fraud_score = score
        if at >= self.peak_score_at:
            self.peak_fraud_score, self.peak_score_at = max(score, self.peak_score(at)), at
        else:
            self.peak_fraud_score = max(self.peak_fraud_score, score)

    def remember_hits(self, event_id: str, rule_ids: tuple[str, ...]) -> None:
        """Which rules matched a transaction of the history (none: nothing is kept)."""
        if rule_ids:
            self.hit_ids.append(id_hash(event_id))
            self.hit_rules.append(sys.intern(",".join(rule_ids)))

    def take_hits(self, event_id: str) -> tuple[str, ...]:
        """The rules that matched a transaction, forgotten once taken: a transaction's
        rules are credited with a fraud once, however many labels confirm it."""
        fingerprint = id_hash(event_id)
        if fingerprint not in self.hit_ids:
            return ()
        index = self.hit_ids.index(fingerprint)
        del self.hit_ids[index]
        return tuple(self.hit_rules.pop(index).split(","))

    def forget_before(self, horizon: float) -> None:
        """Drop history older than the horizon (and beyond the hard cap)."""
        _prune(self.seen_times, self.seen_ids, horizon, cap=MAX_HISTORY * 2)
        keep = _first_kept(self.tx_times, horizon, MAX_HISTORY)
        if keep:
            for column in self._tx_columns():
                del column[:keep]
            if self.hit_ids:
                self._forget_hits_of_forgotten_transactions()

    def _forget_hits_of_forgotten_transactions(self) -> None:
        kept = set(self.tx_ids)
        pairs = [(h, r) for h, r in zip(self.hit_ids, self.hit_rules, strict=True) if h in kept]
        self.hit_ids = array("q", (h for h, _ in pairs))
        self.hit_rules = [r for _, r in pairs]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form for the table's changelog: numeric columns as base64 of their
        little-endian bytes, which is about half the size of JSON numbers."""
        data = {name: getattr(self, name) for name in _SCALARS}
        data.update({name: _pack(getattr(self, name)) for name in _NUMERIC})
        data.update({name: getattr(self, name) for name in _TEXT})
        data["installments"] = {key: _values(i) for key, i in self.installments.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccountState:
        state = cls(**{name: data[name] for name in _SCALARS if name in data})
        for name in _NUMERIC:
            _unpack(getattr(state, name), data.get(name, ""))  # .get: older states lack hits
        for name in _TEXT:
            getattr(state, name).extend(map(sys.intern, data.get(name, ())))
        state.installments = {
            key: Installment(*values) for key, values in data["installments"].items()
        }
        return state

    def _tx_columns(self) -> tuple[Any, ...]:
        return (
            self.tx_times,
            self.tx_amounts,
            self.tx_kinds,
            self.tx_ids,
            self.tx_merchants,
            self.tx_devices,
            self.tx_cities,
        )


_SCALARS = (
    "account_id", "credit_limit", "apr", "opened_at", "balance", "latest_at", "partition",
    "last_offset", "tx_count", "log_mean", "log_var", "on_time_streak", "settled",
    "settled_late", "confirmed_frauds", "last_fraud_label_at", "last_fraud_score",
    "peak_fraud_score", "peak_score_at",
    "frozen", "frozen_at", "last_increase_at", "last_decrease_at", "last_apr_change_at",
    "last_pd",
)  # fmt: skip  # from_json skips names an older state lacks: they keep their defaults
_NUMERIC = ("tx_times", "tx_amounts", "tx_kinds", "tx_ids", "seen_ids", "seen_times", "hit_ids")
_TEXT = ("tx_merchants", "tx_devices", "tx_cities", "hit_rules")


def _values(installment: Installment) -> list[Any]:
    """Its fields in order; ``dataclasses.astuple`` deep-copies them, at 3 times the cost."""
    return [getattr(installment, name) for name in _INSTALLMENT_FIELDS]


_INSTALLMENT_FIELDS = tuple(spec.name for spec in fields(Installment))


def _pack(column: array[Any] | bytearray) -> str:
    if isinstance(column, array) and sys.byteorder == "big":
        column = array(column.typecode, column)
        column.byteswap()
    return binascii.b2a_base64(column, newline=False).decode()  # no copy of the column


def _unpack(column: array[Any] | bytearray, text: str) -> None:
    raw = base64.b64decode(text)
    if isinstance(column, bytearray):
        column.extend(raw)
        return
    column.frombytes(raw)
    if sys.byteorder == "big":
        column.byteswap()


def _first_kept(times: array[float], horizon: float, cap: int) -> int:
    """How many leading entries fall before the horizon or beyond the cap."""
    drop = 0
    while drop < len(times) and times[drop] < horizon:
        drop += 1
    return max(drop, len(times) - cap)


def _prune(times: array[float], ids: array[int], horizon: float, cap: int) -> None:
    keep = _first_kept(times, horizon, cap)
    if keep:
        del times[:keep]
        del ids[:keep]


def apply_event(state: AccountState, event: Event) -> None:
    """Move the state by one validated event (the caller has checked dedup and lateness)."""
    if not isinstance(event, Transaction):  # a transaction's id is kept with its history
        state.remember(event.event_id, event.at)
    state.latest_at = max(state.latest_at, event.at)
    _APPLY[type(event)](state, event)
    state.forget_before(state.latest_at - HISTORY_SECONDS)


def _open(state: AccountState, event: CreditLineOpened) -> None:
    state.credit_limit = event.credit_limit
    state.apr = event.apr
    state.opened_at = event.at


def _transact(state: AccountState, event: Transaction) -> None:
    state.tx_times.append(event.at)
    state.tx_amounts.append(event.amount)
    state.tx_kinds.append(KINDS.index(event.kind))
    state.tx_ids.append(id_hash(event.event_id))
    state.tx_merchants.append(sys.intern(event.merchant_id))
    state.tx_devices.append(sys.intern(event.device_id or ""))
    state.tx_cities.append(sys.intern(event.city or ""))
    state.balance += event.amount
    _learn_amount(state, event.amount)


def _learn_amount(state: AccountState, amount: float) -> None:
    """Exponentially weighted mean and variance of the log amount: the account's norm.

    Once the account has a few transactions, one step counts at most ``NORM_CLIP``
    spreads (Huber's clipping): frauds on a stolen card, at five times the usual amount,
    would otherwise stretch the very norm they are judged by.
    """
    value = math.log1p(amount)
    if state.tx_count == 0:
        state.log_mean = value
    else:
        delta = value - state.log_mean
        if state.tx_count >= NORM_WARMUP:
            bound = NORM_CLIP * max(math.sqrt(state.log_var), SPREAD_FLOOR)
            delta = min(max(delta, -bound), bound)
        state.log_mean += EWMA_ALPHA * delta
        state.log_var = (1 - EWMA_ALPHA) * (state.log_var + EWMA_ALPHA * delta * delta)
    state.tx_count += 1


def _bill(state: AccountState, event: InstallmentDue) -> None:
    previous = state.installments.get(event.installment_id)
    paid = previous.paid if previous else 0.0
    state.installments[event.installment_id] = Installment(
        event.due_at.timestamp(), event.amount_due, event.event_id, paid
    )


def _repay(state: AccountState, event: Repayment) -> None:
    state.balance = max(state.balance - event.amount, 0.0)
    remaining = event.amount
    for installment_id in _repayment_order(state, event.installment_id):
        installment = state.installments[installment_id]
        paying = min(remaining, installment.owed)
        installment.paid += paying
        remaining -= paying
        if installment.owed <= 0.005:
            _settle(state, installment_id, event.at)
        if remaining <= 0:
            break


def _repayment_order(state: AccountState, target: str | None) -> list[str]:
    """The named installment first, then the oldest outstanding ones."""
    by_due = sorted(state.installments, key=lambda key: state.installments[key].due_at)
    if target in state.installments:
        by_due.remove(target)
        by_due.insert(0, target)
    return by_due


def _settle(state: AccountState, installment_id: str, at: float) -> None:
    installment = state.installments.pop(installment_id)
    late = at > installment.due_at
    state.on_time_streak = 0 if late else state.on_time_streak + 1
    state.settled += 1
    state.settled_late += late


def _label(state: AccountState, event: FraudLabel) -> None:
    if event.is_fraud:
        state.confirmed_frauds += 1
        state.last_fraud_label_at = max(state.last_fraud_label_at or event.at, event.at)


_APPLY: dict[type, Any] = {
    CreditLineOpened: _open,
    Transaction: _transact,
    InstallmentDue: _bill,
    Repayment: _repay,
    FraudLabel: _label,
}
