"""A sparse card-style stream: the Fraud Detection Handbook's simulated data set, as Duoli events.

The default simulator (``duoli.simulate``) draws a rich micro-loan book. This one follows
the generator published with Le Borgne et al., *Reproducible Machine Learning for Credit
Card Fraud Detection - Practical Handbook* (chapter 3, "Simulated data set"), so that the
engine can be measured on a public, well-known shape of data:

- customers sit on a 100 x 100 grid with a mean amount ~ U(5, 100), a standard deviation
  of half of it, and a Poisson rate of transactions per day ~ U(0, 4);
- terminals sit on the same grid; a customer pays only at terminals within ``radius``;
- a transaction's second of the day is N(43 200, 20 000), dropped outside the day; its
  amount is N(mean, std), redrawn from U(0, 2 mean) when negative;
- fraud scenario 1: any amount above 220 is fraud; scenario 2: each day 2 random
  terminals are compromised and all their transactions of the next 28 days are fraud;
  scenario 3: each day 3 random customers are compromised and, over the next 14 days,
  a third of their transactions have five times the amount and are fraud.

Only the required fields are written: ``transaction`` events with ``amount`` and
``merchant_id`` (the terminal), and, for frauds only, a ``fraud_label`` exactly
``label_delay_days`` later (labels past the end of the stream are not emitted). Events are
produced one day at a time, in event-time order. Scenario 3 draws "a third" per
transaction (probability 1/3 per active compromise) rather than sampling a third of the
fourteen days up front, which keeps the stream lazy.

Examples
--------
>>> config = SparseConfig(seed=3, accounts=60, merchants=300, days=12)
>>> events, truth = simulate_sparse_with_truth(config)
>>> sorted(events[0])
['account_id', 'amount', 'event_id', 'merchant_id', 'occurred_at', 'type']
>>> sorted({event["type"] for event in events})
['fraud_label', 'transaction']
>>> events == list(simulate_sparse(config))
True
>>> labelled = {e["transaction_id"] for e in events if e["type"] == "fraud_label"}
>>> labelled <= truth.fraud_transactions, truth.defaulted_installments
(True, frozenset())
"""

from __future__ import annotations

import heapq
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from duoli.errors import ConfigError
from duoli.simulate import SimulationConfig, Truth, simulate, write_jsonl

__all__ = [
    "COMPROMISED_CUSTOMER",
    "COMPROMISED_TERMINAL",
    "HIGH_AMOUNT",
    "PROFILES",
    "SparseConfig",
    "simulate_profile",
    "simulate_sparse",
    "simulate_sparse_with_truth",
    "write_sparse_jsonl",
]

Event = dict[str, Any]

DAY = 86_400
GRID = 100.0
HIGH_AMOUNT = "high_amount"  # scenario 1
COMPROMISED_TERMINAL = "compromised_terminal"  # scenario 2
COMPROMISED_CUSTOMER = "compromised_customer"  # scenario 3
PROFILES = ("default", "sparse")  # the micro-loan book, and this stream


@dataclass(frozen=True)
class SparseConfig:
    """Size, seed and fraud scenarios; the handbook's values are the defaults.

    About ``2 * accounts`` transactions a day (the mean of U(0, 4)), so ~10,000 by default.
    """

    seed: int = 7
    accounts: int = 5_000
    merchants: int = 10_000
    days: int = 90
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    radius: float = 5.0
    fraud_amount: float = 220.0
    terminals_per_day: int = 2
    terminal_days: int = 28
    customers_per_day: int = 3
    customer_days: int = 14
    label_delay_days: int = 7

    @classmethod
    def scaled(
        cls, seed: int, accounts: int, days: int, merchants: int | None = None
    ) -> SparseConfig:
        """Another size that keeps the handbook's proportions: by default two terminals per
        customer (so about one transaction per terminal a day), and a radius that keeps
        about 78 terminals within a customer's reach.

        >>> config = SparseConfig.scaled(seed=1, accounts=500, days=30)
        >>> config.merchants, round(config.radius, 2)
        (1000, 15.81)
        """
        merchants = merchants or 2 * accounts
        radius = cls.radius * math.sqrt(cls.merchants / merchants)
        return cls(seed=seed, accounts=accounts, days=days, merchants=merchants, radius=radius)

    def __post_init__(self) -> None:
        if self.accounts < 1 or self.merchants < 1 or self.days < 1:
            raise ConfigError("sparse simulation needs accounts, merchants and days >= 1")
        if self.radius <= 0 or self.label_delay_days < 0:
            raise ConfigError("radius must be > 0 and label_delay_days >= 0")
        if min(self.terminals_per_day, self.customers_per_day) < 0:
            raise ConfigError("compromises per day cannot be negative")


@dataclass(frozen=True, slots=True)
class _Customer:
    """A customer's hidden habits, as the handbook draws them."""

    key: str
    mean: float
    std: float
    rate: float  # transactions per day
    terminals: tuple[int, ...]


@dataclass(slots=True)
class _Tx:
    """One transaction of the day being generated, before it becomes an event."""

    second: int
    customer: int
    terminal: int
    amount: float
    pattern: str = ""
    event_id: str = ""


@dataclass
class _Compromises:
    """What is compromised now: terminal or customer index -> the days left, per compromise."""

    terminals: dict[int, int] = field(default_factory=dict)
    customers: dict[int, list[int]] = field(default_factory=dict)

    def advance(self) -> None:
        """A day has passed: every window shrinks by one and empty ones close."""
        self.terminals = {t: left - 1 for t, left in self.terminals.items() if left > 1}
        shrunk = {
            c: [left - 1 for left in lefts if left > 1] for c, lefts in self.customers.items()
        }
        self.customers = {c: lefts for c, lefts in shrunk.items() if lefts}


def simulate_sparse(config: SparseConfig) -> Iterator[Event]:
    """Yield the stream lazily, a day at a time, in event-time order."""
    return _SparseBook(config).run()


def simulate_sparse_with_truth(config: SparseConfig) -> tuple[list[Event], Truth]:
    """The same events as ``simulate_sparse``, plus the frauds (all of them, labelled or not)."""
    book = _SparseBook(config)
    events = list(book.run())
    return events, book.truth()


def write_sparse_jsonl(config: SparseConfig, path: Path) -> tuple[int, Truth]:
    """Stream the events to ``path`` without holding them; return the count and the truth."""
    book = _SparseBook(config)
    count = write_jsonl(book.run(), path)
    return count, book.truth()


def simulate_profile(
    profile: str,
    *,
    seed: int,
    accounts: int | None = None,
    days: int | None = None,
    merchants: int | None = None,
) -> Iterator[Event]:
    """Either simulator's events by profile name; unset sizes take that simulator's defaults.

    A sparse stream of another size than the default keeps the handbook's density
    (``SparseConfig.scaled``).

    >>> next(simulate_profile("sparse", seed=1, accounts=5, days=1))["type"]
    'transaction'
    """
    if profile == "sparse":
        base = SparseConfig(seed=seed)
        if accounts is None and merchants is None:
            return simulate_sparse(SparseConfig(seed=seed, days=days or base.days))
        size = accounts or base.accounts
        return simulate_sparse(SparseConfig.scaled(seed, size, days or base.days, merchants))
    if profile == "default":
        given = (("accounts", accounts), ("days", days), ("merchants", merchants))
        sizes: dict[str, Any] = {name: n for name, n in given if n is not None}
        return simulate(SimulationConfig(seed=seed, **sizes))
    raise ConfigError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")


def poisson(rng: random.Random, rate: float) -> int:
    """A Poisson draw by Knuth's product of uniforms (fine for the small rates used here).

    >>> rng = random.Random(1)
    >>> draws = [poisson(rng, 2.0) for _ in range(4000)]
    >>> round(sum(draws) / len(draws), 1)
    2.0
    """
    limit, count, product = math.exp(-rate), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


class _Grid:
    """Terminals bucketed by ``radius``-sized cells, so a radius query reads only 9 cells.

    >>> _Grid([(0.0, 0.0), (3.0, 4.0), (1.0, 1.0), (60.0, 60.0)], 5.0).near((0.0, 0.0))
    (0, 2)
    """

    def __init__(self, points: list[tuple[float, float]], radius: float) -> None:
        self.points = points
        self.radius = radius
        self.cells: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, point in enumerate(points):
            self.cells[self._cell(point)].append(index)

    def _cell(self, point: tuple[float, float]) -> tuple[int, int]:
        return int(point[0] // self.radius), int(point[1] // self.radius)

    def near(self, centre: tuple[float, float]) -> tuple[int, ...]:
        """Terminals strictly closer than the radius, in index order as the handbook lists them."""
        cx, cy = self._cell(centre)
        cells = (self.cells.get((cx + dx, cy + dy), []) for dx in (-1, 0, 1) for dy in (-1, 0, 1))
        nearby = (index for cell in cells for index in cell)
        limit = self.radius * self.radius
        return tuple(sorted(i for i in nearby if _dist2(self.points[i], centre) < limit))


def _dist2(a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2


def _customers(rng: random.Random, config: SparseConfig) -> list[_Customer]:
    """Terminals first (their locations), then each customer with the terminals near them."""
    terminals = [(rng.uniform(0, GRID), rng.uniform(0, GRID)) for _ in range(config.merchants)]
    grid = _Grid(terminals, config.radius)
    customers = []
    for index in range(config.accounts):
        home = (rng.uniform(0, GRID), rng.uniform(0, GRID))
        mean = rng.uniform(5.0, 100.0)
        rate = rng.uniform(0.0, 4.0)
        customers.append(_Customer(f"acct-{index:06d}", mean, mean / 2, rate, grid.near(home)))
    return customers


class _SparseBook:
    """The day loop: draw the day's compromises and transactions, then merge in due labels."""

    def __init__(self, config: SparseConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.customers = _customers(self.rng, config)
        self.compromised = _Compromises()
        self.counts = [0] * config.accounts
        self.fraud_pattern: dict[str, str] = {}
        self.pending: dict[int, list[_Tx]] = {}  # event day of the labels -> frauds to label

    def truth(self) -> Truth:
        return Truth(
            fraud_transactions=frozenset(self.fraud_pattern),
            fraud_pattern=dict(self.fraud_pattern),
            account_risk={},
            defaulted_installments=frozenset(),
        )

    def run(self) -> Iterator[Event]:
        for day in range(self.config.days):
            txs = self._day(day)
            labels = self.pending.pop(day, [])
            yield from self._merge(day, txs, labels)

    def _day(self, day: int) -> list[_Tx]:
        """The day's transactions in time order, with ids, fraud marks and labels scheduled."""
        self._compromise()
        txs = sorted(self._draw_transactions(), key=lambda tx: (tx.second, tx.customer))
        frauds = []
        for tx in txs:
            self._mark(tx)
            self.counts[tx.customer] += 1
            tx.event_id = f"{self.customers[tx.customer].key}-tx-{self.counts[tx.customer]}"
            if tx.pattern:
                self.fraud_pattern[tx.event_id] = tx.pattern
                frauds.append(tx)
        self.compromised.advance()
        label_day = day + self.config.label_delay_days
        if frauds and label_day < self.config.days:
            self.pending[label_day] = frauds
        return txs

    def _compromise(self) -> None:
        """Today's new compromised terminals and customers (the same one may be hit twice)."""
        config, rng = self.config, self.rng
        count = min(config.terminals_per_day, config.merchants)
        for terminal in rng.sample(range(config.merchants), count):
            self.compromised.terminals[terminal] = config.terminal_days
        count = min(config.customers_per_day, config.accounts)
        for customer in rng.sample(range(config.accounts), count):
            self.compromised.customers.setdefault(customer, []).append(config.customer_days)

    def _draw_transactions(self) -> Iterator[_Tx]:
        for index, customer in enumerate(self.customers):
            for _ in range(poisson(self.rng, customer.rate)):
                tx = self._draw_one(index, customer)
                if tx is not None:
                    yield tx

    def _draw_one(self, index: int, customer: _Customer) -> _Tx | None:
        second = int(self.rng.gauss(DAY / 2, 20_000))
        if not 0 < second < DAY or not customer.terminals:
            return None
        amount = self.rng.gauss(customer.mean, customer.std)
        if amount < 0:
            amount = self.rng.uniform(0.0, 2 * customer.mean)
        terminal = self.rng.choice(customer.terminals)
        return _Tx(second, index, terminal, max(0.01, round(amount, 2)))

    def _mark(self, tx: _Tx) -> None:
        """Apply the three scenarios in the handbook's order; a later one names the fraud."""
        if tx.amount > self.config.fraud_amount:
            tx.pattern = HIGH_AMOUNT
        if tx.terminal in self.compromised.terminals:
            tx.pattern = COMPROMISED_TERMINAL
        for _ in self.compromised.customers.get(tx.customer, ()):
            if self.rng.random() < 1 / 3:
                tx.amount = round(tx.amount * 5, 2)
                tx.pattern = COMPROMISED_CUSTOMER

    def _merge(self, day: int, txs: list[_Tx], labels: list[_Tx]) -> Iterator[Event]:
        """Transactions and the labels falling due today, by second (a label first on a tie)."""
        base = self.config.start.astimezone(UTC) + timedelta(days=day)
        keyed = heapq.merge(
            ((tx.second, 0, n, tx) for n, tx in enumerate(labels)),
            ((tx.second, 1, n, tx) for n, tx in enumerate(txs)),
        )
        for second, is_transaction, _, tx in keyed:
            at = _iso(base + timedelta(seconds=second))
            yield self._transaction(tx, at) if is_transaction else self._label(tx, at)

    def _transaction(self, tx: _Tx, at: str) -> Event:
        return {
            "type": "transaction",
            "event_id": tx.event_id,
            "account_id": self.customers[tx.customer].key,
            "occurred_at": at,
            "amount": tx.amount,
            "merchant_id": f"term-{tx.terminal:05d}",
        }

    def _label(self, tx: _Tx, at: str) -> Event:
        return {
            "type": "fraud_label",
            "event_id": f"{tx.event_id}-label",
            "account_id": self.customers[tx.customer].key,
            "occurred_at": at,
            "transaction_id": tx.event_id,
            "is_fraud": True,
        }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
