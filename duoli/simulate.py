"""A synthetic micro-loan book: credit lines, spending, bills, repayments, fraud and late labels.

Duoli needs realistic input to test, benchmark and demo against, with the answers kept
aside: which transactions were fraud and which bills went 30 days past due. The book is a
discrete-event simulation on one heap of timed actions, so events come out lazily and in
event-time order, and memory grows with the accounts, not with the events. Local habits
(active hours) are Beijing time; every timestamp is UTC.

Examples
--------
>>> config = SimulationConfig(seed=3, accounts=40, days=45)
>>> events, truth = simulate_with_truth(config)
>>> events[0]["type"], events[0]["occurred_at"]
('credit_line_opened', '2026-01-01T01:03:59Z')
>>> sorted({event["type"] for event in events})
['credit_line_opened', 'fraud_label', 'installment_due', 'repayment', 'transaction']
>>> events == list(simulate(config))
True
>>> sorted(set(truth.fraud_pattern.values()))
['account_takeover', 'bust_out', 'card_testing', 'compromised_merchant']
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from duoli._simulate_patterns import (
    ACCOUNT_PATTERNS,
    BUST_OUT,
    CITIES,
    COMPROMISED_MERCHANT,
    DAY,
    HOUR,
    MINUTE,
    NEVER,
    PATTERNS,
    REPORT_PROBABILITY,
    WALLET,
    Catalogue,
    TxSpec,
    Victim,
    active_second,
    at_least_one,
    capped_amount,
    catalogue,
    compromised_merchants,
    default_start,
    opening_time,
    plan_repayments,
    weighted,
)
from duoli.errors import ConfigError

__all__ = ["SimulationConfig", "Truth", "simulate", "simulate_with_truth", "write_jsonl"]

Event = dict[str, Any]
Handler = Callable[[int, Any], list[Event]]

BEIJING = 8 * HOUR
LATE_SHARE = 0.005  # events that reach the stream a few minutes late
LATE_BY = (2 * MINUTE, 25 * MINUTE)
ANALYST_SHARE = 0.002  # legitimate transactions an analyst explicitly clears
INSTALLMENT_ID_SHARE = 0.92  # repayments that say which bill they pay
MIN_DUE = 50.0
DPD_DEFAULT = 30 * DAY
OFFLINE = frozenset({"grocery", "restaurant", "transport", "pharmacy"})
DROPPED = {"merchant_category": 0.08, "channel": 0.05, "device_id": 0.05, "city": 0.07}


@dataclass(frozen=True)
class SimulationConfig:
    """Size and seed of the book; the same config always gives byte-identical events."""

    seed: int = 7
    accounts: int = 500
    days: int = 90
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    merchants: int = 200
    fraud_rate: float = 0.05  # share of accounts hit by card testing, takeover or bust-out

    def __post_init__(self) -> None:
        if self.accounts < 0 or self.days < 1 or self.merchants < 2:
            raise ConfigError("simulation needs accounts >= 0, days >= 1 and merchants >= 2")
        if not 0.0 <= self.fraud_rate <= 1.0:
            raise ConfigError("fraud_rate is a share of accounts, 0..1")


@dataclass(frozen=True)
class Truth:
    """What the engine must find out by itself; ``account_risk`` drove the repayments."""

    fraud_transactions: frozenset[str]
    fraud_pattern: dict[str, str]
    account_risk: dict[str, float]
    defaulted_installments: frozenset[str]  # not fully repaid 30 days after due_at, in the window


@dataclass(slots=True)
class _Account:
    """A borrower's hidden habits plus the running balance the bills are drawn from."""

    key: str
    opened_at: int
    limit: float
    apr: float
    risk: float
    typical: float  # median purchase, yuan
    rate: float  # transactions per day
    hours: str
    favourites: tuple[int, ...]
    devices: tuple[str, ...]
    city: str
    cash_affinity: float
    bill_lead: int  # days between the bill and its due date
    pay_share: float  # share of the balance each bill asks for
    stop_paying_at: int = NEVER
    pattern: str = ""
    balance: float = 0.0
    transactions: int = 0
    repayments: int = 0

    @property
    def available(self) -> float:
        return self.limit - self.balance


def simulate(config: SimulationConfig) -> Iterator[Event]:
    """Yield the book's events lazily, in event-time order but for a few late arrivals."""
    return _Book(config).run()


def simulate_with_truth(config: SimulationConfig) -> tuple[list[Event], Truth]:
    """The same events as ``simulate``, plus the hidden ground truth to score the engine with."""
    book = _Book(config)
    events = list(book.run())
    return events, book.truth()


def write_jsonl(events: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Write one compact JSON object per line and return how many were written."""
    count = 0
    with Path(path).open("w", encoding="utf-8", newline="\n") as out:
        for event in events:
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
            count += 1
    return count


def _new_account(rng: random.Random, index: int, cat: Catalogue, opened_at: int) -> _Account:
    """Draw a borrower: riskier ones get smaller limits and dearer credit."""
    risk = rng.betavariate(1.5, 10.0)
    limit = round(rng.lognormvariate(math.log(9000), 0.6) * (1.15 - risk), -2)
    apr = round(min(0.24, max(0.08, 0.08 + 0.5 * risk + rng.gauss(0.0, 0.02))), 4)
    favourites = tuple(dict.fromkeys(cat.popular(rng) for _ in range(rng.randint(3, 8))))
    devices = tuple(f"dev-{index:06d}-{n}" for n in range(rng.choice((1, 1, 2))))
    return _Account(
        key=f"acct-{index:06d}",
        opened_at=opened_at,
        limit=min(50_000.0, max(2_000.0, limit)),
        apr=apr,
        risk=risk,
        typical=rng.lognormvariate(math.log(70.0), 0.7),
        rate=rng.lognormvariate(math.log(0.45), 0.6),
        hours=rng.choices(("day", "evening", "night"), weights=(0.55, 0.38, 0.07))[0],
        favourites=favourites,
        devices=devices,
        city=weighted(rng, CITIES),
        cash_affinity=rng.uniform(0.0, 0.1),
        bill_lead=rng.randint(10, 15),
        pay_share=rng.choice((1.0, 1.0, 1.0, 0.5, 1 / 3, 1 / 6)),
    )


class _Book:
    """The discrete-event simulation: a heap of (time, seq, handler, arg) and the accounts."""

    def __init__(self, config: SimulationConfig) -> None:
        self.rng = random.Random(config.seed)
        self.start = config.start.astimezone(UTC)
        self.horizon = config.days * DAY
        self.cat = catalogue(self.rng, config.merchants)
        leaks = max(1, round(config.merchants * config.fraud_rate / 4)) if config.fraud_rate else 0
        self.leaks = compromised_merchants(self.rng, config.merchants, leaks, self.horizon)
        self.heap: list[tuple[int, int, Handler | None, Any]] = []
        self.seq = itertools.count()
        self.fraud_pattern: dict[str, str] = {}
        self.account_risk: dict[str, float] = {}
        self.defaulted: set[str] = set()
        self._open_accounts(config)
        self._add_strangers(config.accounts // 200)

    def truth(self) -> Truth:
        return Truth(
            fraud_transactions=frozenset(self.fraud_pattern),
            fraud_pattern=dict(self.fraud_pattern),
            account_risk=dict(self.account_risk),
            defaulted_installments=frozenset(self.defaulted),
        )

    def run(self) -> Iterator[Event]:
        """Pop actions in time order; an action returns its events and schedules later ones."""
        while self.heap:
            at, _, handler, arg = heapq.heappop(self.heap)
            if at >= self.horizon:
                return
            if handler is None:  # a late arrival, released now
                yield arg
                continue
            for event in handler(at, arg):
                if not self._held_back(at, event):
                    yield event

    def _push(self, at: int, handler: Handler | None, arg: Any) -> None:
        if at < self.horizon:
            heapq.heappush(self.heap, (at, next(self.seq), handler, arg))

    def _held_back(self, at: int, event: Event) -> bool:
        """Delay a few events by minutes, as a real pipeline does; openings stay first."""
        if event["type"] == "credit_line_opened" or self.rng.random() >= LATE_SHARE:
            return False
        late = at + self.rng.randint(*LATE_BY)
        self._push(late, None, event)
        return late < self.horizon

    def _iso(self, at: int) -> str:
        return (self.start + timedelta(seconds=at)).isoformat().replace("+00:00", "Z")

    def _event(self, kind: str, event_id: str, account: str, at: int, /, **fields: Any) -> Event:
        return {
            "type": kind,
            "event_id": event_id,
            "account_id": account,
            "occurred_at": self._iso(at),
            **fields,
        }

    # -- setup -------------------------------------------------------------------------------

    def _open_accounts(self, config: SimulationConfig) -> None:
        """Draw every borrower, pick the fraud victims, and schedule each opening."""
        hit = round(config.accounts * config.fraud_rate)
        hit = min(config.accounts, max(hit, len(ACCOUNT_PATTERNS))) if config.fraud_rate else 0
        victims = self.rng.sample(range(config.accounts), hit)
        patterns = {
            index: ACCOUNT_PATTERNS[n % len(ACCOUNT_PATTERNS)] for n, index in enumerate(victims)
        }
        for index in range(config.accounts):
            account = self._account(index, patterns.get(index, ""), config.days)
            self._push(account.opened_at, self._on_open, account)

    def _account(self, index: int, pattern: str, days: int) -> _Account:
        account = _new_account(self.rng, index, self.cat, opening_time(self.rng, days))
        account.pattern = pattern
        if pattern == BUST_OUT:  # a bust-out looks like a model borrower until it strikes
            account.risk = min(account.risk, 0.03)
        account.stop_paying_at = default_start(self.rng, account.risk, account.opened_at)
        self.account_risk[account.key] = round(account.risk, 4)
        return account

    def _add_strangers(self, count: int) -> None:
        """A few accounts that transact without ever opening a line (the engine gives defaults)."""
        for n in range(count):
            for k in range(self.rng.randint(1, 3)):
                at = self.rng.randrange(self.horizon)
                self._push(at, self._on_stranger, (f"ghost-{n:04d}", k))

    # -- handlers ----------------------------------------------------------------------------

    def _on_open(self, at: int, account: _Account) -> list[Event]:
        self._plan_day(account, _local_midnight(at))
        self._push(self._bill_at(account, 1), self._on_bill, (account, 1))
        if account.pattern:
            self._schedule_incident(account)
        fields = {"credit_limit": account.limit, "apr": account.apr}
        return [self._event("credit_line_opened", f"{account.key}-open", account.key, at, **fields)]

    def _on_day(self, at: int, account: _Account) -> list[Event]:
        self._plan_day(account, at)
        return []

    def _plan_day(self, account: _Account, midnight: int) -> None:
        """Schedule one active day's purchases, then jump to the next active day."""
        count = at_least_one(self.rng, account.rate)
        for at in sorted(midnight + active_second(self.rng, account.hours) for _ in range(count)):
            if at > account.opened_at:
                self._push(at, self._on_transaction, account)
        gap = 1 + int(self.rng.expovariate(account.rate))
        self._push(midnight + gap * DAY, self._on_day, account)

    def _on_transaction(self, at: int, account: _Account) -> list[Event]:
        spec = self._habitual(at, account)
        if spec.amount > account.available:
            return []  # declined: the engine never sees it
        event = self._transaction(account, spec, spec.amount)
        if not spec.pattern and self.rng.random() < ANALYST_SHARE:
            self._schedule_label(at, account, event["event_id"], False, "analyst")
        return [event]

    def _on_fraud(self, at: int, job: tuple[_Account, TxSpec]) -> list[Event]:
        account, spec = job
        amount = capped_amount(spec, account.available)
        return [] if amount is None else [self._transaction(account, spec, amount)]

    def _on_bill(self, at: int, job: tuple[_Account, int]) -> list[Event]:
        """Bill the balance ~10-15 days before due, and decide now how it will be repaid."""
        account, n = job
        self._push(self._bill_at(account, n + 1), self._on_bill, (account, n + 1))
        if account.balance < 1.0:
            return []
        due_at, installment = self._due_at(account, n), f"{account.key}-inst-{n}"
        amount = _amount_due(account)
        plan = plan_repayments(self.rng, account.risk, at, due_at, amount)
        plan = [(paid_at, paid) for paid_at, paid in plan if paid_at < account.stop_paying_at]
        self._note_default(installment, due_at, amount, plan)
        for paid_at, paid in plan:
            self._push(paid_at, self._on_repayment, (account, installment, paid))
        fields = {"installment_id": installment, "due_at": self._iso(due_at), "amount_due": amount}
        return [self._event("installment_due", f"{account.key}-due-{n}", account.key, at, **fields)]

    def _on_repayment(self, at: int, job: tuple[_Account, str, float]) -> list[Event]:
        account, installment, amount = job
        account.balance = max(0.0, account.balance - amount)
        account.repayments += 1
        fields: dict[str, Any] = {"amount": amount}
        if self.rng.random() < INSTALLMENT_ID_SHARE:
            fields["installment_id"] = installment
        event_id = f"{account.key}-rep-{account.repayments}"
        return [self._event("repayment", event_id, account.key, at, **fields)]

    def _on_label(self, at: int, job: tuple[str, str, bool, str]) -> list[Event]:
        account, tx_id, is_fraud, source = job
        fields = {"transaction_id": tx_id, "is_fraud": is_fraud, "source": source}
        return [self._event("fraud_label", f"{tx_id}-label", account, at, **fields)]

    def _on_stranger(self, at: int, job: tuple[str, int]) -> list[Event]:
        key, n = job
        merchant = self.cat.popular(self.rng)
        amount = round(self.rng.lognormvariate(math.log(60.0), 0.8), 2)
        fields = {"amount": amount, "merchant_id": self.cat.merchants[merchant]}
        return [self._event("transaction", f"{key}-tx-{n}", key, at, **fields)]

    # -- transactions ------------------------------------------------------------------------

    def _habitual(self, at: int, account: _Account) -> TxSpec:
        """The account's usual mix: mostly purchases, some cash, a few drawdowns to the wallet."""
        draw = self.rng.random()
        if draw < account.cash_affinity:
            amount = float(max(100, round(account.typical * self.rng.uniform(2.0, 8.0), -2)))
            atm = self.rng.choice(self.cat.atms)
            return self._spec(at, account, "cash_withdrawal", atm, "atm", amount)
        if draw < account.cash_affinity + 0.015:
            amount = float(max(500, round(account.limit * self.rng.uniform(0.03, 0.15), -2)))
            return self._spec(at, account, "loan_drawdown", WALLET, "loan", amount)
        return self._purchase(at, account)

    def _purchase(self, at: int, account: _Account) -> TxSpec:
        """Usually a favourite merchant; a leaking merchant turns some sales into fraud."""
        fav = self.rng.random() < 0.8
        index = self.rng.choice(account.favourites) if fav else self.cat.popular(self.rng)
        amount = round(max(0.5, account.typical * self.rng.lognormvariate(0.0, 0.6)), 2)
        leak = self.leaks.get(index)
        if leak is None or not leak.hits(self.rng, at):
            return self._spec(at, account, "purchase", *self.cat.merchant(index), amount)
        amount = round(amount * self.rng.uniform(1.5, 3.5), 2)  # the rigged terminal overcharges
        spec = self._spec(at, account, "purchase", *self.cat.merchant(index), amount)
        return replace(spec, pattern=COMPROMISED_MERCHANT)

    def _spec(
        self, at: int, account: _Account, kind: str, merchant: str, category: str, amount: float
    ) -> TxSpec:
        """Fill in the account's usual device and city, now and then another one."""
        usual = self.rng.random() < 0.85
        device = account.devices[0] if usual else self.rng.choice(account.devices)
        city = account.city if self.rng.random() < 0.96 else weighted(self.rng, CITIES)
        channel = self._channel(kind, category)
        return TxSpec(at, kind, merchant, category, channel, device, city, amount)

    def _channel(self, kind: str, category: str) -> str:
        if kind == "cash_withdrawal" or (category in OFFLINE and self.rng.random() < 0.7):
            return "pos"
        return "app" if self.rng.random() < 0.75 else "web"

    def _transaction(self, account: _Account, spec: TxSpec, amount: float) -> Event:
        """Build the event, draw the balance, and record and maybe label a fraud."""
        account.transactions += 1
        account.balance += amount
        event_id = f"{account.key}-tx-{account.transactions}"
        fields = {"amount": amount, "merchant_id": spec.merchant, **self._optional_fields(spec)}
        event = self._event("transaction", event_id, account.key, spec.at, **fields)
        if spec.pattern:
            self._note_fraud(spec.at, account, event_id, spec.pattern)
        return event

    def _optional_fields(self, spec: TxSpec) -> dict[str, Any]:
        """Real feeds leave fields out; ``kind`` only when it is the default purchase."""
        fields: dict[str, Any] = {}
        if spec.kind != "purchase" or self.rng.random() < 0.75:
            fields["kind"] = spec.kind
        if self.rng.random() < 0.6:
            fields["currency"] = "CNY"
        values = {"merchant_category": spec.category, "channel": spec.channel}
        values |= {"device_id": spec.device, "city": spec.city}
        for name, value in values.items():
            if value is not None and self.rng.random() >= DROPPED[name]:
                fields[name] = value
        return fields

    # -- fraud, labels and defaults -----------------------------------------------------------

    def _schedule_incident(self, account: _Account) -> None:
        key, opened_at = account.key, account.opened_at
        victim = Victim(key, opened_at, account.city, account.devices, account.typical)
        specs = PATTERNS[account.pattern](self.rng, self.cat, victim, self.horizon)
        if account.pattern == BUST_OUT:  # after draining the line they never pay again
            account.stop_paying_at = specs[0].at
        for spec in specs:
            self._push(spec.at, self._on_fraud, (account, replace(spec, pattern=account.pattern)))

    def _note_fraud(self, at: int, account: _Account, tx_id: str, pattern: str) -> None:
        """Mark the truth; most frauds get a chargeback or a customer report 1-30 days later."""
        self.fraud_pattern[tx_id] = pattern
        if self.rng.random() < REPORT_PROBABILITY[pattern]:
            source = "chargeback" if self.rng.random() < 0.55 else "customer_report"
            self._schedule_label(at, account, tx_id, True, source)

    def _schedule_label(
        self, at: int, account: _Account, tx_id: str, is_fraud: bool, source: str
    ) -> None:
        delay = int(self.rng.uniform(1.0, 30.0) * DAY)
        self._push(at + delay, self._on_label, (account.key, tx_id, is_fraud, source))

    def _note_default(
        self, installment: str, due_at: int, amount: float, plan: list[tuple[int, float]]
    ) -> None:
        """An installment defaults when 30 days after due it is still not repaid in full."""
        deadline = due_at + DPD_DEFAULT
        paid = sum(paid for paid_at, paid in plan if paid_at <= deadline)
        if deadline <= self.horizon and paid < amount - 0.005:
            self.defaulted.add(installment)

    def _bill_at(self, account: _Account, n: int) -> int:
        return self._due_at(account, n) - account.bill_lead * DAY - 14 * HOUR

    def _due_at(self, account: _Account, n: int) -> int:
        """Monthly from opening, at 23:59:59 Beijing time."""
        return _local_midnight(account.opened_at) + (30 * n + 1) * DAY - 1


def _amount_due(account: _Account) -> float:
    """A share of the balance plus a month's interest, never under the minimum."""
    interest = account.balance * account.apr / 12
    return max(MIN_DUE, round(account.balance * account.pay_share + interest, 2))


def _local_midnight(at: int) -> int:
    """The start, in UTC seconds, of the Beijing day that holds ``at``."""
    return (at + BEIJING) // DAY * DAY - BEIJING
