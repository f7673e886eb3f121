"""How well the engine finds fraud and foresees default: the figures behind ``duoli eval``.

A history (simulated, or a JSONL file) goes through the real broker and workers with
``duoli.replay``; its score records are then measured against the truth:

- fraud: ROC AUC and average precision of ``fraud_score`` over every scored transaction,
  and card precision@100 per event-time day (see ``card_precision_at_k``); for
  information, the same figure a week at a time, as the Fraud Detection Handbook reports it;
- delinquency: ROC AUC of the ``pd`` an account had when each bill fell due, against
  whether the bill went 30 days past due (see ``pd_at_due``);
- the same fraud figures after a warm-up of ``WARMUP_DAYS`` (the first label maturity
  period), as extra information;
- the bars of the profile, each PASS or FAIL. A figure that cannot be computed (no ``pd``
  in the score records, or a single class) is n/a and fails its bar.

The metric functions are pure; ``run_eval`` does the I/O.

Examples
--------
>>> rows = [scored("a", 0, 0.9, True), scored("b", 0, 0.2, False), scored("c", 0, 0.4, False)]
>>> fraud_figures(rows, {"a": {0}}, k=2)["roc_auc"]
1.0
"""

from __future__ import annotations

import bisect
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.table import Table
from sklearn.metrics import average_precision_score, roc_auc_score

from duoli.errors import ConfigError
from duoli.events import event_time
from duoli.settings import Settings
from duoli.simulate import SimulationConfig, Truth, simulate_with_truth, write_jsonl
from duoli.simulate_sparse import PROFILES, SparseConfig, write_sparse_jsonl

__all__ = [
    "BARS",
    "DEFAULT_SIZES",
    "WARMUP_DAYS",
    "Bar",
    "EvalRequest",
    "History",
    "Installment",
    "Scored",
    "card_precision_at_k",
    "delinquency_figures",
    "expected_hits",
    "fraud_figures",
    "judge",
    "labelled_frauds",
    "load_scores",
    "measure",
    "pd_at_due",
    "read_history",
    "render_table",
    "run_eval",
    "scored",
    "weekly_card_precision_at_k",
]

DAY = 86_400
WARMUP_DAYS = 8  # the first label maturity period: 7 days, plus the day the first frauds happen
TOP_K = 100
WEEK_DAYS = 7  # the Fraud Detection Handbook's test period
DEFAULT_DAYS = 30  # days past due that make a bill a default
# Accounts and days per profile: sized so that a whole eval takes a few minutes on 2 cores.
DEFAULT_SIZES = {"default": (1_000, 90), "sparse": (5_000, 30)}  # sparse: as the benchmark


@dataclass(frozen=True, slots=True)
class Bar:
    """A figure of the report (``section``, ``name``) that must reach ``threshold``."""

    section: str
    name: str
    threshold: float


BARS: dict[str, tuple[Bar, ...]] = {
    "default": (
        Bar("fraud", "roc_auc", 0.90),
        Bar("fraud", "average_precision", 0.60),
        Bar("delinquency", "roc_auc", 0.75),
    ),
    "sparse": (
        Bar("fraud", "roc_auc", 0.85),
        Bar("fraud", "average_precision", 0.55),
        Bar("fraud", "card_precision_at_100", 0.25),
    ),
}


@dataclass(frozen=True, slots=True)
class Scored:
    """What the evaluation keeps of one score record."""

    account_id: str
    at: float
    fraud_score: float
    is_fraud: bool
    pd: float | None = None
    pattern: str = ""  # the simulator's name for how a fraud was made; "" when not known

    @property
    def day(self) -> int:
        return int(self.at // DAY)


def scored(
    account: str, day: float, score: float, is_fraud: bool, pd: float | None = None
) -> Scored:
    """A ``Scored`` row at ``day`` days after the epoch: handy for hand-made cases."""
    return Scored(account, day * DAY, score, is_fraud, pd)


@dataclass(frozen=True, slots=True)
class Installment:
    installment_id: str
    account_id: str
    due_at: float


@dataclass
class History:
    """The truth an evaluation needs, read from the events file (and the simulator's truth)."""

    frauds: frozenset[str]
    fraud_days: dict[str, set[int]]  # account -> event-time days (UTC) with a true fraud
    installments: list[Installment]
    defaulted: frozenset[str]
    first_at: float
    end_at: float  # bills whose 30 days past due fall after this have no outcome yet
    fraud_pattern: Mapping[str, str] = field(default_factory=dict)  # simulated histories only

    def mature(self) -> list[Installment]:
        return [i for i in self.installments if i.due_at + DEFAULT_DAYS * DAY <= self.end_at]


# -- fraud -------------------------------------------------------------------------------------


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """sklearn's ROC AUC, or None when only one class is present."""
    if len(set(labels)) < 2:
        return None
    return round(float(roc_auc_score(labels, scores)), 4)


def average_precision(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """sklearn's average precision, or None when only one class is present."""
    if len(set(labels)) < 2:
        return None
    return round(float(average_precision_score(labels, scores)), 4)


def expected_hits(ranked: Sequence[tuple[float, bool]], k: int) -> float:
    """Frauds among the ``k`` highest scores; a tie across the cut counts pro rata.

    That is the mean over every order the tied accounts could be taken in, so the figure
    never depends on account ids.

    >>> expected_hits([(0.9, True), (0.5, True), (0.5, False), (0.1, True)], 2)
    1.5
    """
    ordered = sorted(ranked, key=lambda pair: -pair[0])
    if len(ordered) <= k:
        return float(sum(hit for _, hit in ordered))
    cut = ordered[k - 1][0]
    above = [hit for score, hit in ordered if score > cut]
    tied = [hit for score, hit in ordered if score == cut]
    return sum(above) + (k - len(above)) * sum(tied) / len(tied)


def card_precision_at_k(
    rows: Iterable[Scored], fraud_days: Mapping[str, set[int]], k: int = TOP_K
) -> tuple[float | None, int]:
    """Mean over event-time (UTC) days of the share of frauds among the day's top-k accounts.

    Each day, every account with a scored transaction that day is a candidate, ranked by
    its highest ``fraud_score`` of the day, except the accounts already confirmed
    compromised on an earlier day: as in the Fraud Detection Handbook, investigators work
    each day's top-k, and an account among them with a fraud that day is confirmed and
    blocked, so it is no longer a candidate. The day's figure is the share of the ``k``
    best-ranked candidates with a true fraud that day; a day with fewer than ``k``
    candidates uses all of them, and a day with none is left out. Ties across the cut
    count pro rata (``expected_hits``); who is confirmed at a tie is decided by account id.
    Returns the mean and the number of days.

    >>> rows = [scored("a", 0, 0.9, True), scored("b", 0, 0.1, False), scored("a", 1, 0.9, True)]
    >>> card_precision_at_k(rows, {"a": {0, 1}}, k=1)  # day 1: "a" is out, nobody is left
    (1.0, 1)
    """
    best = _daily_best(rows)
    confirmed: set[str] = set()
    shares = []
    for day in sorted(best):
        candidates = sorted(
            ((-score, account) for account, score in best[day].items() if account not in confirmed)
        )
        ranked = [(-score, day in fraud_days.get(account, ())) for score, account in candidates]
        if ranked:
            shares.append(expected_hits(ranked, k) / min(k, len(ranked)))
        confirmed.update(
            account for _, account in candidates[:k] if day in fraud_days.get(account, ())
        )
    return (round(sum(shares) / len(shares), 4) if shares else None), len(shares)


def weekly_card_precision_at_k(
    rows: Sequence[Scored], fraud_days: Mapping[str, set[int]], k: int = TOP_K
) -> float | None:
    """Card precision@k as the Fraud Detection Handbook reports it: each 7-day week from the
    first row's day is a test period of its own, whose confirmed accounts are left out only
    until it ends; the mean over every day.

    ``card_precision_at_k`` leaves a confirmed account out to the end of the history. Over
    months of a few thousand accounts, most of those that will ever be hit are confirmed,
    and even a perfect score finds few new ones a day; a week at a time, the figure
    compares with the handbook's (its test periods are one week long).

    >>> rows = [scored("a", 0, 0.9, True), scored("b", 0, 0.1, False), scored("a", 7, 0.9, True)]
    >>> weekly_card_precision_at_k(rows, {"a": {0, 7}}, k=1)  # week 2: "a" counts again
    1.0
    """
    if not rows:
        return None
    first = min(row.day for row in rows)
    weeks: dict[int, list[Scored]] = defaultdict(list)
    for row in rows:
        weeks[(row.day - first) // WEEK_DAYS].append(row)
    hits = days = 0.0
    for week in weeks.values():
        precision, week_days = card_precision_at_k(week, fraud_days, k)
        if precision is not None:
            hits, days = hits + precision * week_days, days + week_days
    return round(hits / days, 4) if days else None


def _daily_best(rows: Iterable[Scored]) -> dict[int, dict[str, float]]:
    """Day -> account -> the account's highest fraud score that day."""
    best: dict[int, dict[str, float]] = defaultdict(dict)
    for row in rows:
        of_day = best[row.day]
        of_day[row.account_id] = max(row.fraud_score, of_day.get(row.account_id, 0.0))
    return best


def fraud_figures(
    rows: Sequence[Scored], fraud_days: Mapping[str, set[int]], k: int = TOP_K
) -> dict[str, Any]:
    """ROC AUC, average precision and card precision@k of the rows, with their counts, and
    the card precision a perfect score would reach on the same rows."""
    labels = [row.is_fraud for row in rows]
    scores = [row.fraud_score for row in rows]
    precision, days = card_precision_at_k(rows, fraud_days, k)
    perfect = [replace(row, fraud_score=float(row.is_fraud)) for row in rows]
    return {
        "roc_auc": roc_auc(labels, scores),
        "average_precision": average_precision(labels, scores),
        f"card_precision_at_{k}": precision,
        # What a perfect score would get: few new frauds a day cap the figure well below 1.
        f"card_precision_at_{k}_ceiling": card_precision_at_k(perfect, fraud_days, k)[0],
        f"card_precision_at_{k}_weekly": weekly_card_precision_at_k(rows, fraud_days, k),
        f"card_precision_at_{k}_weekly_ceiling": weekly_card_precision_at_k(perfect, fraud_days, k),
        "transactions": len(rows),
        "frauds": sum(labels),
        "days": days,
        "by_pattern": pattern_ranks(rows),
    }


def pattern_ranks(rows: Sequence[Scored]) -> dict[str, dict[str, Any]]:
    """For each fraud pattern, the ROC AUC of its frauds against every legitimate row: the
    mean rank of such a fraud among them (0.5 is chance). Shows which kinds a model misses."""
    legitimate = [row.fraud_score for row in rows if not row.is_fraud]
    frauds: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row.is_fraud and row.pattern:
            frauds[row.pattern].append(row.fraud_score)
    return {
        pattern: {
            "frauds": len(scores),
            "roc_auc": roc_auc(
                [True] * len(scores) + [False] * len(legitimate), scores + legitimate
            ),
        }
        for pattern, scores in sorted(frauds.items())
    }


# -- delinquency -------------------------------------------------------------------------------


def pd_at_due(
    rows: Iterable[Scored], installments: Iterable[Installment]
) -> tuple[list[tuple[Installment, float]], dict[str, int]]:
    """Each bill with the ``pd`` of its account's last score record at or before ``due_at``.

    Bills with no such record are skipped (``no_score``), as are bills whose record has no
    ``pd`` (``no_pd``); both are counted.

    >>> rows = [scored("a", 1, 0.0, False, pd=0.1), scored("a", 3, 0.0, False, pd=0.4)]
    >>> bills = [Installment("i1", "a", 2 * DAY), Installment("i2", "a", 0.5 * DAY)]
    >>> pairs, skipped = pd_at_due(rows, bills)
    >>> [(bill.installment_id, pd) for bill, pd in pairs], skipped
    ([('i1', 0.1)], {'no_score': 1, 'no_pd': 0})
    """
    timeline = _by_account(rows)
    pairs, skipped = [], {"no_score": 0, "no_pd": 0}
    for bill in installments:
        times, pds = timeline.get(bill.account_id, ([], []))
        index = bisect.bisect_right(times, bill.due_at) - 1
        pd = pds[index] if index >= 0 else None
        if index < 0:
            skipped["no_score"] += 1
        elif pd is None:
            skipped["no_pd"] += 1
        else:
            pairs.append((bill, pd))
    return pairs, skipped


def _by_account(rows: Iterable[Scored]) -> dict[str, tuple[list[float], list[float | None]]]:
    """Account -> (times, pds), in time order."""
    grouped: dict[str, list[Scored]] = defaultdict(list)
    for row in rows:
        grouped[row.account_id].append(row)
    timeline = {}
    for account, of_account in grouped.items():
        of_account.sort(key=lambda row: row.at)
        timeline[account] = ([row.at for row in of_account], [row.pd for row in of_account])
    return timeline


def delinquency_figures(rows: Sequence[Scored], history: History) -> dict[str, Any]:
    """ROC AUC of pd at due time against 30 days past due, over the bills with an outcome."""
    mature = history.mature()
    pairs, skipped = pd_at_due(rows, mature)
    labels = [bill.installment_id in history.defaulted for bill, _ in pairs]
    any_pd = any(row.pd is not None for row in rows)
    figures: dict[str, Any] = {
        "roc_auc": roc_auc(labels, [pd for _, pd in pairs]) if any_pd else None,
        "installments": len(history.installments),
        "without_outcome_yet": len(history.installments) - len(mature),
        "defaulted": sum(bill.installment_id in history.defaulted for bill in mature),
        "measured": len(pairs),
        "measured_defaulted": sum(labels),
        "skipped_no_score": skipped["no_score"],
        "skipped_no_pd": skipped["no_pd"],
        "pd_in_scores": any_pd,
    }
    if not history.installments:
        figures["note"] = "no installments in the history"
    elif not any_pd:
        figures["note"] = "no pd in the score records"
    return figures


# -- bars --------------------------------------------------------------------------------------


def judge(report: Mapping[str, Any], profile: str) -> list[dict[str, Any]]:
    """Each bar of the profile with its value and whether it passed (n/a never passes).

    >>> judge({"fraud": {"roc_auc": 0.95, "average_precision": None}, "delinquency": {}},
    ...       "default")[:2]  # doctest: +NORMALIZE_WHITESPACE
    [{'figure': 'fraud.roc_auc', 'value': 0.95, 'threshold': 0.9, 'passed': True},
     {'figure': 'fraud.average_precision', 'value': None, 'threshold': 0.6, 'passed': False}]
    """
    verdicts = []
    for bar in BARS[profile]:
        value = report.get(bar.section, {}).get(bar.name)
        passed = value is not None and value >= bar.threshold
        figure = f"{bar.section}.{bar.name}"
        verdicts.append(
            {"figure": figure, "value": value, "threshold": bar.threshold, "passed": passed}
        )
    return verdicts


# -- reading the history and the scores --------------------------------------------------------


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as lines:
        for line in lines:
            if line.strip():
                yield orjson.loads(line)


def labelled_frauds(path: Path) -> frozenset[str]:
    """The transactions a ``fraud_label`` with ``is_fraud`` true names: a file's own truth."""
    return frozenset(
        str(event["transaction_id"])
        for event in _lines(path)
        if event.get("type") == "fraud_label" and event.get("is_fraud") is True
    )


@dataclass
class _Ledger:
    """Bills and repayments, settled as the engine does: the named bill, then the oldest."""

    owed: dict[str, dict[str, list[float]]] = field(default_factory=lambda: defaultdict(dict))
    settled_at: dict[str, float] = field(default_factory=dict)

    def bill(self, account: str, installment: Installment, amount: float) -> None:
        self.owed[account][installment.installment_id] = [installment.due_at, amount]

    def repay(self, account: str, at: float, amount: float, named: str | None) -> None:
        bills = self.owed[account]
        order = sorted(bills, key=lambda key: bills[key][0])
        if named in bills:
            order.remove(named)
            order.insert(0, named)
        for key in order:
            paying = min(amount, bills[key][1])
            bills[key][1] -= paying
            amount -= paying
            if bills[key][1] <= 0.005:
                del bills[key]
                self.settled_at[key] = at
            if amount <= 0:
                break

    def defaulted(self, installments: Iterable[Installment]) -> frozenset[str]:
        """Bills not settled within 30 days of ``due_at``."""
        return frozenset(
            bill.installment_id
            for bill in installments
            if self.settled_at.get(bill.installment_id, float("inf"))
            > bill.due_at + DEFAULT_DAYS * DAY
        )


def read_history(
    path: Path, frauds: frozenset[str], defaulted: frozenset[str] | None = None
) -> History:
    """One pass over the events: fraud days, bills, and (without ``defaulted``) who defaulted."""
    reader = _HistoryReader(frauds)
    for event in _lines(path):
        reader.note(event)
    return reader.history(defaulted)


class _HistoryReader:
    """Collects what ``History`` holds while the events stream past."""

    def __init__(self, frauds: frozenset[str]) -> None:
        self.frauds = frauds
        self.fraud_days: dict[str, set[int]] = defaultdict(set)
        self.installments: list[Installment] = []
        self.ledger = _Ledger()
        self.first, self.last = float("inf"), float("-inf")

    def note(self, event: dict[str, Any]) -> None:
        at = event_time(event["occurred_at"])
        self.first, self.last = min(self.first, at), max(self.last, at)
        kind, account = event.get("type"), str(event.get("account_id"))
        if kind == "transaction" and event.get("event_id") in self.frauds:
            self.fraud_days[account].add(int(at // DAY))
        elif kind == "installment_due":
            bill = Installment(str(event["installment_id"]), account, event_time(event["due_at"]))
            self.installments.append(bill)
            self.ledger.bill(account, bill, float(event["amount_due"]))
        elif kind == "repayment":
            self.ledger.repay(account, at, float(event["amount"]), event.get("installment_id"))

    def history(self, defaulted: frozenset[str] | None) -> History:
        if defaulted is None:
            defaulted = self.ledger.defaulted(self.installments)
        first, last = (self.first, self.last) if self.first <= self.last else (0.0, 0.0)
        fraud_days = dict(self.fraud_days)
        return History(self.frauds, fraud_days, self.installments, defaulted, first, last)


def load_scores(
    path: Path, frauds: frozenset[str], patterns: Mapping[str, str] | None = None
) -> list[Scored]:
    """Score records, deduplicated on ``event_id``; ``pd`` is None where a record has none."""
    rows, seen = [], set()
    for record in _lines(path):
        if record["event_id"] in seen:
            continue
        seen.add(record["event_id"])
        pd = record.get("pd")
        rows.append(
            Scored(
                account_id=str(record["account_id"]),
                at=event_time(record["occurred_at"]),
                fraud_score=float(record["fraud_score"]),
                is_fraud=record["event_id"] in frauds,
                pd=None if pd is None else float(pd),
                pattern=(patterns or {}).get(record["event_id"], ""),
            )
        )
    return rows


# -- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalRequest:
    """What ``duoli eval`` was asked: a profile, and a simulation's size or a history file."""

    profile: str = "default"
    seed: int = 7
    accounts: int | None = None
    days: int | None = None
    merchants: int | None = None
    events: Path | None = None
    out: Path | None = None
    results_dir: Path = Path("bench/results")
    workers: int = 1

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(f"unknown profile {self.profile!r}; expected one of {PROFILES}")

    def sizes(self) -> tuple[int, int]:
        accounts, days = DEFAULT_SIZES[self.profile]
        return self.accounts or accounts, self.days or days


Progress = Callable[[str], None]


def run_eval(
    settings: Settings, request: EvalRequest, progress: Progress = lambda _: None
) -> tuple[dict[str, Any], Path]:
    """Simulate (or take the file), replay, measure; write the JSON report and return it.

    The replay writes to Redis under ``{DUOLI_REDIS_PREFIX}-eval``, apart from live state.
    """
    from duoli.replay import replay

    out = request.out or Path(tempfile.mkdtemp(prefix="duoli-eval-"))
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.monotonic()
    events_path, inputs, history = _prepare(request, out, progress)
    timings["prepare_seconds"] = round(time.monotonic() - started, 1)
    progress(f"replaying {events_path} through the broker and the workers")
    scores_path = out / "scores.jsonl"
    isolated = settings.model_copy(update={"redis_prefix": f"{settings.redis_prefix}-eval"})
    summary = replay(isolated, events_path, scores_out=scores_path, workers=request.workers)
    timings["replay_seconds"] = round(summary.seconds, 1)
    progress(f"replayed {summary.events} events, {summary.scores} scored; files in {out}")
    measured = time.monotonic()
    rows = load_scores(scores_path, history.frauds, history.fraud_pattern)
    report = measure(rows, history, request.profile)
    timings["measure_seconds"] = round(time.monotonic() - measured, 1)
    timings["total_seconds"] = round(time.monotonic() - started, 1)
    report |= {"inputs": inputs | {"scores": str(scores_path)}, "replay": summary.to_json()}
    report["timings"] = timings
    return report, _write_report(report, request)


def measure(rows: Sequence[Scored], history: History, profile: str) -> dict[str, Any]:
    """Every figure of the report, and the verdict of each bar."""
    first_day = int(history.first_at // DAY)
    warm = [row for row in rows if row.day >= first_day + WARMUP_DAYS]
    warm_from = datetime.fromtimestamp((first_day + WARMUP_DAYS) * DAY, UTC)
    report: dict[str, Any] = {
        "profile": profile,
        "generated_at": _now().isoformat().replace("+00:00", "Z"),
        "fraud": fraud_figures(rows, history.fraud_days),
        "fraud_after_warmup": fraud_figures(warm, history.fraud_days)
        | {"from": warm_from.date().isoformat(), "warmup_days": WARMUP_DAYS},
        "delinquency": delinquency_figures(rows, history),
    }
    report["bars"] = judge(report, profile)
    report["passed"] = all(verdict["passed"] for verdict in report["bars"])
    return report


def _prepare(
    request: EvalRequest, out: Path, progress: Progress
) -> tuple[Path, dict[str, Any], History]:
    """The events file, what it is, and its truth."""
    if request.events is not None:
        progress(f"reading the truth of {request.events} from its labels and repayments")
        history = read_history(request.events, labelled_frauds(request.events))
        return request.events, {"events": str(request.events), "truth": "labels"}, history
    accounts, days = request.sizes()
    progress(f"simulating the {request.profile} profile: {accounts} accounts, {days} days")
    events_path = out / "events.jsonl"
    truth, inputs = _simulate(request, events_path)
    (out / "truth.json").write_text(json.dumps(_truth_json(truth)) + "\n")
    inputs |= {"events": str(events_path), "truth": str(out / "truth.json")}
    history = read_history(events_path, truth.fraud_transactions, truth.defaulted_installments)
    return events_path, inputs, replace(history, fraud_pattern=truth.fraud_pattern)


def _simulate(request: EvalRequest, path: Path) -> tuple[Truth, dict[str, Any]]:
    accounts, days = request.sizes()
    inputs: dict[str, Any] = {"seed": request.seed, "accounts": accounts, "days": days}
    if request.profile == "sparse":
        config = SparseConfig.scaled(request.seed, accounts, days, request.merchants)
        count, truth = write_sparse_jsonl(config, path)
        return truth, inputs | {"merchants": config.merchants, "events_count": count}
    given: dict[str, Any] = {"merchants": request.merchants} if request.merchants else {}
    sim = SimulationConfig(seed=request.seed, accounts=accounts, days=days, **given)
    events, truth = simulate_with_truth(sim)
    count = write_jsonl(events, path)
    return truth, inputs | {"merchants": sim.merchants, "events_count": count}


def _truth_json(truth: Truth) -> dict[str, Any]:
    return {
        "fraud_transactions": sorted(truth.fraud_transactions),
        "fraud_pattern": dict(sorted(truth.fraud_pattern.items())),
        "defaulted_installments": sorted(truth.defaulted_installments),
    }


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _write_report(report: Mapping[str, Any], request: EvalRequest) -> Path:
    stamp = report["generated_at"].replace("-", "").replace(":", "")
    request.results_dir.mkdir(parents=True, exist_ok=True)
    path = request.results_dir / f"eval-{request.profile}-{stamp}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


# -- the table ---------------------------------------------------------------------------------


def render_table(report: Mapping[str, Any]) -> Table:
    """The report as a rich table: each figure, after warm-up too, and the bars' verdicts."""
    fraud, late = report["fraud"], report["delinquency"]
    caption = (
        f"{fraud['transactions']} scored transactions, {fraud['frauds']} frauds; "
        f"{late['measured']} bills measured ({late['measured_defaulted']} defaulted), "
        f"{late['without_outcome_yet']} without an outcome yet, "
        f"{late['skipped_no_score'] + late['skipped_no_pd']} skipped (no score or no pd)"
    )
    table = Table(title=f"duoli eval: {report['profile']} profile", caption=caption)
    table.add_column("figure", no_wrap=True)
    for column in ("all days", "after warm-up", "bar", "verdict"):
        table.add_column(column)
    bars = {verdict["figure"]: verdict for verdict in report["bars"]}
    for section, name in _FIGURES:
        figure = f"{section}.{name}"
        value = report[section].get(name)
        warm = _show(report["fraud_after_warmup"].get(name)) if section == "fraud" else ""
        verdict = bars.get(figure)
        threshold = f">= {verdict['threshold']:.2f}" if verdict else ""
        status = ("[green]PASS" if verdict["passed"] else "[red]FAIL") if verdict else ""
        table.add_row(figure, _show(value), warm, threshold, status)
        if name == f"card_precision_at_{TOP_K}_weekly_ceiling":
            _add_pattern_rows(table, report)
    return table


def _add_pattern_rows(table: Table, report: Mapping[str, Any]) -> None:
    """Each fraud pattern's ROC AUC, under the fraud figures, when the truth names them."""
    ranks, warm_ranks = report["fraud"]["by_pattern"], report["fraud_after_warmup"]["by_pattern"]
    if ranks:
        table.add_row("fraud.roc_auc by pattern (frauds)", "", "", "", "")
    for pattern, rank in ranks.items():
        warm = _show(warm_ranks.get(pattern, {}).get("roc_auc"))
        table.add_row(f"  {pattern} ({rank['frauds']})", _show(rank["roc_auc"]), warm, "", "")


_FIGURES = (
    ("fraud", "roc_auc"),
    ("fraud", "average_precision"),
    ("fraud", f"card_precision_at_{TOP_K}"),
    ("fraud", f"card_precision_at_{TOP_K}_ceiling"),
    ("fraud", f"card_precision_at_{TOP_K}_weekly"),
    ("fraud", f"card_precision_at_{TOP_K}_weekly_ceiling"),
    ("delinquency", "roc_auc"),
)


def _show(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"
