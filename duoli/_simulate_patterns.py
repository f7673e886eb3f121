"""How the simulated book behaves: its catalogue, borrowers' habits and repayments, and fraud.

Everything here is a pure function of an RNG; the state lives in ``duoli.simulate``. A
fraud pattern turns one incident into timed transaction specs. It never sees the balance:
the simulator caps each amount to the credit still available when it fires, which is also
how a bust-out "maxes the line".
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from dataclasses import dataclass
from itertools import accumulate

MINUTE, HOUR, DAY = 60, 3600, 86400
WALLET = "duoli-wallet"
NEVER = 2**62
HOURS = {"day": (13.5, 3.0), "evening": (20.5, 1.8), "night": (23.5, 1.5)}  # Beijing time
CARD_TESTING = "card_testing"
ACCOUNT_TAKEOVER = "account_takeover"
COMPROMISED_MERCHANT = "compromised_merchant"
BUST_OUT = "bust_out"
ACCOUNT_PATTERNS = (CARD_TESTING, ACCOUNT_TAKEOVER, BUST_OUT)
# Share of each pattern's frauds that a chargeback or the customer ever reports.
REPORT_PROBABILITY = {
    CARD_TESTING: 0.7,
    ACCOUNT_TAKEOVER: 0.9,
    COMPROMISED_MERCHANT: 0.8,
    BUST_OUT: 0.75,
}
CATEGORIES = (
    ("grocery", 18),
    ("restaurant", 16),
    ("ecommerce", 20),
    ("transport", 9),
    ("utilities", 5),
    ("entertainment", 7),
    ("electronics", 6),
    ("apparel", 8),
    ("pharmacy", 4),
    ("travel", 3),
    ("education", 2),
    ("telecom", 2),
)
CITIES = (
    ("Shanghai", 14),
    ("Beijing", 12),
    ("Shenzhen", 10),
    ("Guangzhou", 10),
    ("Chengdu", 8),
    ("Chongqing", 8),
    ("Hangzhou", 7),
    ("Wuhan", 6),
    ("Xian", 5),
    ("Nanjing", 5),
    ("Tianjin", 5),
    ("Suzhou", 4),
    ("Changsha", 3),
    ("Zhengzhou", 3),
    ("Qingdao", 3),
    ("Kunming", 2),
    ("Hefei", 2),
    ("Xiamen", 2),
)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Merchants (Zipf popularity, one fixed category each) and ATMs."""

    merchants: tuple[str, ...]
    categories: tuple[str, ...]
    popularity: tuple[float, ...]  # cumulative Zipf weights, most popular first
    atms: tuple[str, ...]

    def merchant(self, index: int) -> tuple[str, str]:
        """The merchant's id and its category."""
        return self.merchants[index], self.categories[index]

    def popular(self, rng: random.Random) -> int:
        """A merchant index drawn by popularity: a few merchants take most of the traffic."""
        return bisect(self.popularity, rng.random() * self.popularity[-1])

    def obscure(self, rng: random.Random) -> int:
        """A merchant from the unpopular half, where fraudsters test cards unnoticed."""
        return rng.randrange(len(self.merchants) // 2, len(self.merchants))


@dataclass(frozen=True, slots=True)
class Victim:
    """What a pattern may know about the account it hits."""

    key: str
    opened_at: int
    city: str
    devices: tuple[str, ...]
    typical: float


@dataclass(frozen=True, slots=True)
class TxSpec:
    """A transaction to emit; ``share`` > 0 asks for that share of the available credit."""

    at: int
    kind: str
    merchant: str
    category: str | None
    channel: str | None
    device: str | None
    city: str | None
    amount: float = 0.0
    share: float = 0.0
    pattern: str = ""


@dataclass(frozen=True, slots=True)
class Compromise:
    """A compromised merchant: in [start, end) a share of its sales are fraudulent."""

    start: int
    end: int
    share: float

    def hits(self, rng: random.Random, at: int) -> bool:
        return self.start <= at < self.end and rng.random() < self.share


def weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    """One name from a (name, weight) table."""
    return rng.choices([name for name, _ in table], weights=[w for _, w in table])[0]


def catalogue(rng: random.Random, size: int) -> Catalogue:
    """Merchants m-00000 (most popular) onwards, each with a fixed category."""
    merchants = tuple(f"m-{index:05d}" for index in range(size))
    categories = tuple(weighted(rng, CATEGORIES) for _ in merchants)
    popularity = tuple(accumulate(1.0 / (rank + 1) ** 1.07 for rank in range(size)))
    atms = tuple(f"atm-{index:03d}" for index in range(max(5, size // 10)))
    return Catalogue(merchants, categories, popularity, atms)


def other_city(rng: random.Random, home: str) -> str:
    """A city that is not the victim's home."""
    return rng.choice([name for name, _ in CITIES if name != home])


def burst(rng: random.Random, start: int, count: int, gap: tuple[int, int]) -> list[int]:
    """``count`` times from ``start`` on, each ``gap`` seconds (min, max) after the previous."""
    times = [start]
    for _ in range(count - 1):
        times.append(times[-1] + rng.randint(*gap))
    return times


# -- fraud patterns ------------------------------------------------------------------------


def incident_start(rng: random.Random, opened_at: int, horizon: int) -> int:
    """Any moment from two days after opening to the end of the book."""
    return opened_at + rng.randint(2 * DAY, max(2 * DAY, horizon - opened_at - HOUR))


def card_testing(rng: random.Random, cat: Catalogue, victim: Victim, horizon: int) -> list[TxSpec]:
    """Tiny probes within minutes at one or two obscure merchants, then the big purchases."""
    device, testers = f"dev-ct-{victim.key}", [cat.obscure(rng) for _ in range(rng.randint(1, 2))]
    probes = burst(
        rng, incident_start(rng, victim.opened_at, horizon), rng.randint(4, 9), (20, 240)
    )
    big = burst(
        rng, probes[-1] + rng.randint(5 * MINUTE, HOUR), rng.randint(1, 2), (MINUTE, 15 * MINUTE)
    )
    small = [_probe(rng, cat, at, rng.choice(testers), device) for at in probes]
    return small + [_big_purchase(rng, cat, at, device) for at in big]


def _probe(rng: random.Random, cat: Catalogue, at: int, merchant: int, device: str) -> TxSpec:
    name, category = cat.merchants[merchant], cat.categories[merchant]
    amount = round(rng.uniform(1.0, 20.0), 2)
    return TxSpec(at, "purchase", name, category, "web", device, None, amount, pattern=CARD_TESTING)


def _big_purchase(rng: random.Random, cat: Catalogue, at: int, device: str) -> TxSpec:
    merchant = cat.popular(rng)
    name, category = cat.merchants[merchant], cat.categories[merchant]
    amount = round(rng.uniform(800.0, 5000.0), 2)
    return TxSpec(at, "purchase", name, category, "web", device, None, amount, pattern=CARD_TESTING)


def account_takeover(
    rng: random.Random, cat: Catalogue, victim: Victim, horizon: int
) -> list[TxSpec]:
    """A new device in a new city, then a burst of large purchases and cash withdrawals."""
    city, device = other_city(rng, victim.city), f"dev-ato-{victim.key}"
    start = incident_start(rng, victim.opened_at, horizon)
    times = burst(rng, start, rng.randint(3, 7), (2 * MINUTE, 40 * MINUTE))
    return [_takeover_tx(rng, cat, victim, at, city, device) for at in times]


def _takeover_tx(
    rng: random.Random, cat: Catalogue, victim: Victim, at: int, city: str, device: str
) -> TxSpec:
    if rng.random() < 0.5:
        amount = float(rng.randrange(500, 3001, 100))
        return TxSpec(
            at, "cash_withdrawal", rng.choice(cat.atms), "atm", "pos", device, city, amount
        )
    merchant = cat.popular(rng)
    amount = round(max(300.0, victim.typical * rng.uniform(5.0, 20.0)), 2)
    name, category = cat.merchants[merchant], cat.categories[merchant]
    return TxSpec(at, "purchase", name, category, "app", device, city, amount)


def bust_out(rng: random.Random, cat: Catalogue, victim: Victim, horizon: int) -> list[TxSpec]:
    """After weeks of good behaviour, the borrower drains the whole line within a few days."""
    good_weeks = min(rng.uniform(35.0, 60.0) * DAY, 0.5 * (horizon - victim.opened_at))
    start = victim.opened_at + max(3 * DAY, int(good_weeks))
    count = rng.randint(3, 6)
    times = [start, *sorted(start + rng.randint(HOUR, 3 * DAY) for _ in range(count - 1))]
    return [_drain(rng, cat, victim, at, 1.0 / (count - i)) for i, at in enumerate(times)]


def _drain(rng: random.Random, cat: Catalogue, victim: Victim, at: int, share: float) -> TxSpec:
    """One drawdown or withdrawal; shares 1/n, 1/(n-1) .. 1 of what is left empty the line."""
    device = victim.devices[0]
    if rng.random() < 0.3:
        atm = rng.choice(cat.atms)
        return TxSpec(at, "cash_withdrawal", atm, "atm", "pos", device, victim.city, share=share)
    return TxSpec(at, "loan_drawdown", WALLET, "loan", "app", device, victim.city, share=share)


PATTERNS = {CARD_TESTING: card_testing, ACCOUNT_TAKEOVER: account_takeover, BUST_OUT: bust_out}


def compromised_merchants(
    rng: random.Random, merchants: int, count: int, horizon: int
) -> dict[int, Compromise]:
    """Pick busy-but-not-top merchants and give each a leak window of one to three weeks."""
    pool = list(range(min(2, merchants - 1), min(40, merchants)))
    chosen = rng.sample(pool, min(count, len(pool)))
    return {index: _leak(rng, horizon) for index in sorted(chosen)}


def _leak(rng: random.Random, horizon: int) -> Compromise:
    length = int(min(rng.uniform(7.0, 21.0) * DAY, horizon / 2))
    start = rng.randint(min(7 * DAY, horizon - length), horizon - length)
    return Compromise(start, start + length, rng.uniform(0.3, 0.6))


def capped_amount(spec: TxSpec, available: float) -> float | None:
    """The amount a fraud can actually take: never past the limit, cash in whole hundreds."""
    wanted = available * spec.share if spec.share else spec.amount
    if spec.kind != "purchase" and wanted >= 100:
        wanted = wanted // 100 * 100
    amount = math.floor(min(wanted, available) * 100) / 100
    return amount if amount >= 1 else None


# -- borrowers: when they open, spend and repay ------------------------------------------


def opening_time(rng: random.Random, days: int) -> int:
    """A third open on day one, the rest over the first three weeks, in office hours."""
    day = 0 if rng.random() < 0.3 else rng.randrange(max(1, min(21, days // 3)))
    return day * DAY + rng.randint(HOUR, 12 * HOUR)


def default_start(rng: random.Random, risk: float, opened_at: int) -> int:
    """Some borrowers simply stop paying one day; the riskier, the likelier."""
    if rng.random() < 0.35 * risk + 0.01:
        return opened_at + int(rng.uniform(0.0, 75.0) * DAY)
    return NEVER


def active_second(rng: random.Random, hours: str) -> int:
    """Seconds after local midnight at which this kind of account tends to spend."""
    mean, spread = HOURS[hours]
    return int((rng.gauss(mean, spread) % 24.0) * HOUR)


def at_least_one(rng: random.Random, rate: float) -> int:
    """A Poisson count given that it is not zero (the day was picked as an active one)."""
    u, k, p = rng.random() * -math.expm1(-rate), 1, math.exp(-rate) * rate
    total = p
    while u > total and k < 50:
        k += 1
        p *= rate / k
        total += p
    return k


def plan_repayments(
    rng: random.Random, risk: float, billed_at: int, due_at: int, amount: float
) -> list[tuple[int, float]]:
    """When and how much a borrower of this risk pays on one bill: on time, late or partly."""
    draw = rng.random()
    if draw < risk:
        return [(_late(rng, due_at), amount)]
    if draw < 1.5 * risk:
        return _partial(rng, billed_at, due_at, amount)
    return [(_on_time(rng, billed_at, due_at), amount)]


def _on_time(rng: random.Random, billed_at: int, due_at: int) -> int:
    return max(billed_at + HOUR, due_at - int(rng.uniform(0.02, 8.0) * DAY))


def _late(rng: random.Random, due_at: int) -> int:
    """Days to weeks late, now and then beyond 30 days."""
    return due_at + int(min(60.0, 0.5 + rng.expovariate(1 / 7)) * DAY)


def _partial(
    rng: random.Random, billed_at: int, due_at: int, amount: float
) -> list[tuple[int, float]]:
    """The minimum (about a tenth) on time; the rest weeks later, or never."""
    minimum = min(amount, max(1.0, round(amount * rng.uniform(0.08, 0.12), 2)))
    plan = [(_on_time(rng, billed_at, due_at), minimum)]
    if amount - minimum >= 0.01 and rng.random() < 0.7:
        plan.append((due_at + int(rng.uniform(3.0, 40.0) * DAY), round(amount - minimum, 2)))
    return plan
