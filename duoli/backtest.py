"""``duoli rules backtest``: replay a JSONL history through the live engine, score candidate rules.

The replay is the worker's own path, in one process and without a broker: each line goes
through ``parse_event``, ``AccountEngine.check`` against a clock (the highest event time
accepted so far) and ``AccountEngine.handle``, with merchant day buckets fed from the
outcome's merchant facts and read with ``merchant_features`` as of the event's day. The
candidate rules are evaluated on the very facts the engine computed for that event (its
outcome carries them), so no feature has a second implementation and a
backtest cannot drift from what the live pipeline would have seen.

Every candidate is evaluated as if active, whatever its mode: an analyst backtests a
shadow or disabled rule precisely to learn what it would do. Named lists, if given, are
read as of each event's time, as live; snoozes do not apply. The file is one partition
here, so its clock is the file's; a live cluster keeps one clock per partition.

Labels honour their delay: a ``fraud_label`` counts only if it is known (its
``occurred_at``) by ``as_of``, the end of the file unless given. A hit is *matured* once
its transaction has a known label or is older than ``maturity_days``; precision is
confirmed frauds over matured hits, so recent unlabelled hits are reported as pending
instead of being counted as false alarms.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from duoli.account import DAY, AccountState
from duoli.backtest_report import report_json
from duoli.engine import AccountEngine, day_of
from duoli.errors import InvalidEvent, RuleError
from duoli.events import Event, FraudLabel, Transaction, parse_event
from duoli.merchant import add_fact, merchant_features
from duoli.settings import Settings
from rules import Evaluation, Membership, Rule, RuleSet, load_rules
from rules.control import Controls

__all__ = [
    "ActiveDiff",
    "BacktestReport",
    "RuleStats",
    "backtest",
    "backtest_lines",
    "load_candidates",
]

MATURITY_DAYS: Final = 7.0
PROGRESS_EVERY: Final = 2048
MERCHANT_DAYS_HELD: Final = 100_000  # (merchant, day) features kept before starting afresh
"""Lines between two progress calls: often enough for a smooth bar, rare enough to be free."""
_NOTHING: Final = Evaluation((), ())
_BEHAVIOUR: Final = ("expression", "severity", "action", "mode", "applies_to", "kind", "version")
"""What makes two versions of a rule differ; the description is only prose."""

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class ActiveDiff:
    """How a candidate compares with the rule of the same id in the active rule set."""

    status: str  # "new" (no such id), "unchanged" (same definition) or "changed"
    active_version: int | None = None
    active_mode: str | None = None
    active_hits: int | None = None
    only_candidate: int | None = None
    only_active: int | None = None


@dataclass(frozen=True, slots=True)
class RuleStats:
    """One candidate rule over the file; label figures are None for repayment rules."""

    rule_id: str
    version: int
    mode: str
    applies_to: str
    kind: str
    severity: str
    action: str
    evaluated: int
    hits: int
    hit_rate: float
    alerts_per_day: float
    errors: int
    true_positives: int | None
    matured_hits: int | None
    pending: int | None
    precision: float | None
    recall: float | None
    overlap_share: float
    overlaps_most_with: str | None
    jaccard: float
    active: ActiveDiff


@dataclass(frozen=True, slots=True)
class BacktestReport:
    """Per-rule figures and the totals of the replay."""

    rules: tuple[RuleStats, ...]
    events: int
    transactions: int
    repayments: int
    labels: int
    labels_after_as_of: int
    confirmed_frauds: int
    bad_lines: dict[str, int]
    first_at: float | None
    last_at: float | None
    as_of: float | None
    days: float
    maturity_days: float
    seconds: float
    events_per_second: float
    candidates_version: str
    active_version: str

    def to_json(self) -> dict[str, Any]:
        return report_json(self)


def load_candidates(paths: Iterable[Path | str]) -> RuleSet:
    """Each file (or folder) loaded on its own, then merged: an id in two files is refused."""
    paths = list(paths)
    if not paths:
        raise RuleError("<candidates>", "no rule files given")
    rules: list[Rule] = []
    origin: dict[str, str] = {}
    for path in paths:
        for rule in load_rules(path).rules:
            if rule.id in origin:
                raise RuleError(rule.id, f"duplicate rule id, in {origin[rule.id]} and {path}")
            origin[rule.id] = str(path)
            rules.append(rule)
    return RuleSet(rules)


def backtest(
    events_path: Path | str,
    candidates: RuleSet,
    *,
    active: RuleSet | None = None,
    settings: Settings | None = None,
    maturity_days: float = MATURITY_DAYS,
    as_of: datetime | None = None,
    progress: Progress | None = None,
    lists: Mapping[str, Membership] | None = None,
) -> BacktestReport:
    """Replay a JSONL file; ``progress`` gets the bytes read so far (for a bar over its size)."""
    with Path(events_path).open("rb") as lines:
        return backtest_lines(
            lines,
            candidates,
            active=active,
            settings=settings,
            maturity_days=maturity_days,
            as_of=as_of,
            progress=progress,
            lists=lists,
        )


def backtest_lines(
    lines: Iterable[bytes],
    candidates: RuleSet,
    *,
    active: RuleSet | None = None,
    settings: Settings | None = None,
    maturity_days: float = MATURITY_DAYS,
    as_of: datetime | None = None,
    progress: Progress | None = None,
    lists: Mapping[str, Membership] | None = None,
) -> BacktestReport:
    """The backtest over raw JSON lines; ``active`` defaults to the deployed rules, and
    ``list("name")`` reads ``lists`` (none: every list is empty)."""
    started = time.perf_counter()
    settings = settings or Settings()
    active = active if active is not None else load_rules(settings.rules_path)
    evaluated, previous = as_evaluated(candidates.rules), _changed(candidates, active)
    replay = _Replay(settings, evaluated, previous, lists=lists or {})
    replay.run(lines, progress)
    return _report(replay, candidates, active, maturity_days, as_of, started)


def as_evaluated(rules: Iterable[Rule]) -> RuleSet:
    """The rules with every mode switched to active, since a backtest wants to see them all."""
    return RuleSet([replace(rule, mode="active") for rule in rules])


def _changed(candidates: RuleSet, active: RuleSet) -> RuleSet:
    """The active versions of the candidates whose definition differs, to replay beside them."""
    deployed = {rule.id: rule for rule in active.rules}
    return as_evaluated(
        deployed[rule.id]
        for rule in candidates.rules
        if rule.id in deployed and _behaviour(rule) != _behaviour(deployed[rule.id])
    )


def _behaviour(rule: Rule) -> tuple[Any, ...]:
    return tuple(getattr(rule, name) for name in _BEHAVIOUR)


@dataclass
class _Replay:
    """One pass over the lines: the worker's handling, the rules evaluated on the side."""

    settings: Settings
    candidates: RuleSet
    previous: RuleSet
    states: dict[str, AccountState] = field(default_factory=dict)
    buckets: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    clock: float = 0.0
    events: int = 0
    bad: Counter[str] = field(default_factory=Counter)
    times: list[float] = field(default_factory=list)  # per evaluated event (ordinal)
    tx_ordinals: dict[str, int] = field(default_factory=dict)
    repayments: int = 0
    hits: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    previous_hits: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    labels: list[tuple[str, bool, float]] = field(default_factory=list)
    first_at: float = math.inf
    last_at: float = -math.inf
    lists: Mapping[str, Membership] = field(default_factory=dict)
    merchant_days: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # No rules in the engine: it handles state as live, and its outcome carries the
        # facts, on which the candidates are evaluated here.
        self.engine = AccountEngine(self.settings, Controls(RuleSet(())), rules_only=True)

    def run(self, lines: Iterable[bytes], progress: Progress | None) -> None:
        done = 0
        for count, line in enumerate(lines, 1):
            done += len(line)
            if line.strip():
                self.feed(line)
            if progress is not None and count % PROGRESS_EVERY == 0:
                progress(done)
        if progress is not None:
            progress(done)

    def feed(self, raw: bytes) -> None:
        """One line; a bad one is counted by its dead-letter reason, never fatal."""
        self.events += 1
        try:
            self._process(parse_event(raw, self.settings.max_amount))
        except InvalidEvent as error:
            self.bad[error.reason] += 1

    def _process(self, event: Event) -> None:
        state = self.states.get(event.account_id) or self.engine.new_state(event.account_id)
        self.engine.check(state, event, self.clock)
        self.states[event.account_id] = state
        try:
            outcome = self.engine.handle(state, event, self._merchant(event), self.clock)
        except Exception as exc:  # as live: dead-letter it and go on
            raise InvalidEvent("processing_error", f"{type(exc).__name__}: {exc}") from exc
        for fact in outcome.merchant_facts:
            add_fact(self.buckets.setdefault(fact.merchant_id, {}), fact)
        self.clock = max(self.clock, event.at)
        self.first_at, self.last_at = min(self.first_at, event.at), max(self.last_at, event.at)
        if outcome.facts is not None:
            self._evaluate(event, outcome.facts, event.type)
        elif isinstance(event, FraudLabel):
            self.labels.append((event.transaction_id, event.is_fraud, event.at))

    def _merchant(self, event: Event) -> dict[str, Any] | None:
        """As live: only the merchant's days before the event's day count, read once per
        merchant and day (as a worker's ``MerchantCache`` does)."""
        if not isinstance(event, Transaction):
            return None
        key = event.merchant_id, day_of(event.at)
        features = self.merchant_days.get(key)
        if features is None:
            if len(self.merchant_days) >= MERCHANT_DAYS_HELD:
                self.merchant_days.clear()
            features = merchant_features(self.buckets.get(key[0], {}), key[1])
            self.merchant_days[key] = features
        return features

    def _evaluate(self, event: Event, facts: Mapping[str, Any], event_type: str) -> None:
        ordinal = len(self.times)
        self.times.append(event.at)
        if event_type == "transaction":
            self.tx_ordinals[event.event_id] = ordinal
        else:
            self.repayments += 1
        evaluation = self.candidates.evaluate(facts, event_type, self.lists, event.at)
        for hit in evaluation.hits:
            self.hits[hit.rule_id].append(ordinal)
        for rule_id, _ in evaluation.errors:
            self.errors[rule_id] += 1
        if len(self.previous):
            for hit in self.previous.evaluate(facts, event_type, self.lists, event.at).hits:
                self.previous_hits[hit.rule_id].append(ordinal)


@dataclass(frozen=True, slots=True)
class _Truth:
    """What the labels known by ``as_of`` say, by evaluated-event ordinal."""

    labelled: frozenset[int]
    frauds: frozenset[int]
    mature_before: float  # a transaction at or before this time is old enough


def _truth(replay: _Replay, as_of: float, maturity_days: float) -> _Truth:
    known: dict[str, bool] = {}
    for transaction_id, is_fraud, at in replay.labels:
        if at <= as_of:
            known[transaction_id] = is_fraud  # a later label overrides an earlier one
    labelled = {replay.tx_ordinals[t]: f for t, f in known.items() if t in replay.tx_ordinals}
    return _Truth(
        labelled=frozenset(labelled),
        frauds=frozenset(ordinal for ordinal, fraud in labelled.items() if fraud),
        mature_before=as_of - maturity_days * DAY,
    )


def _label_figures(hits: set[int], truth: _Truth, times: Sequence[float]) -> dict[str, Any]:
    matured = sum(1 for o in hits if o in truth.labelled or times[o] <= truth.mature_before)
    caught = len(hits & truth.frauds)
    return {
        "true_positives": caught,
        "matured_hits": matured,
        "pending": len(hits) - matured,
        "precision": caught / matured if matured else None,
        "recall": caught / len(truth.frauds) if truth.frauds else None,
    }


_NO_LABELS: Final = dict.fromkeys(
    ("true_positives", "matured_hits", "pending", "precision", "recall")
)


def _overlaps(hit_sets: Mapping[str, set[int]]) -> dict[str, tuple[float, str | None, float]]:
    """Per rule: share of its hits some other rule also hit, and its closest rule by Jaccard."""
    hit_count = Counter(ordinal for hits in hit_sets.values() for ordinal in hits)
    result = {}
    for rule_id, hits in hit_sets.items():
        shared = sum(1 for ordinal in hits if hit_count[ordinal] > 1) / len(hits) if hits else 0.0
        closest, best = None, 0.0
        for other, other_hits in hit_sets.items():
            score = _jaccard(hits, other_hits) if other != rule_id else 0.0
            if score > best:
                closest, best = other, score
        result[rule_id] = (shared, closest, best)
    return result


def _jaccard(first: set[int], second: set[int]) -> float:
    if not first or not second:
        return 0.0
    common = len(first & second)
    return common / (len(first) + len(second) - common)


def _diff(rule: Rule, active: RuleSet, replay: _Replay, hits: set[int]) -> ActiveDiff:
    deployed = next((r for r in active.rules if r.id == rule.id), None)
    if deployed is None:
        return ActiveDiff("new")
    if _behaviour(deployed) == _behaviour(rule):
        return ActiveDiff("unchanged", deployed.version, deployed.mode)
    previous = set(replay.previous_hits.get(rule.id, ()))
    return ActiveDiff(
        "changed",
        deployed.version,
        deployed.mode,
        len(previous),
        len(hits - previous),
        len(previous - hits),
    )


def _report(
    replay: _Replay,
    candidates: RuleSet,
    active: RuleSet,
    maturity_days: float,
    as_of: datetime | None,
    started: float,
) -> BacktestReport:
    seen = replay.first_at <= replay.last_at
    end = as_of.timestamp() if as_of is not None else (replay.last_at if seen else 0.0)
    days = max((replay.last_at - replay.first_at) / DAY, 1.0) if seen else 1.0
    truth = _truth(replay, end, maturity_days)
    hit_sets = {rule.id: set(replay.hits.get(rule.id, ())) for rule in candidates.rules}
    overlaps = _overlaps(hit_sets)
    transactions = len(replay.times) - replay.repayments
    stats = tuple(
        _stats(rule, hit_sets[rule.id], overlaps[rule.id], replay, active, truth, days)
        for rule in candidates.rules
    )
    seconds = time.perf_counter() - started
    return BacktestReport(
        rules=stats,
        events=replay.events,
        transactions=transactions,
        repayments=replay.repayments,
        labels=sum(1 for _, _, at in replay.labels if at <= end),
        labels_after_as_of=sum(1 for _, _, at in replay.labels if at > end),
        confirmed_frauds=len(truth.frauds),
        bad_lines=dict(sorted(replay.bad.items())),
        first_at=replay.first_at if seen else None,
        last_at=replay.last_at if seen else None,
        as_of=end if seen or as_of is not None else None,
        days=days,
        maturity_days=maturity_days,
        seconds=seconds,
        events_per_second=replay.events / seconds if seconds > 0 else 0.0,
        candidates_version=candidates.version,
        active_version=active.version,
    )


def _stats(
    rule: Rule,
    hits: set[int],
    overlap: tuple[float, str | None, float],
    replay: _Replay,
    active: RuleSet,
    truth: _Truth,
    days: float,
) -> RuleStats:
    is_tx = rule.applies_to == "transaction"
    evaluated = len(replay.times) - replay.repayments if is_tx else replay.repayments
    labels = _label_figures(hits, truth, replay.times) if is_tx else _NO_LABELS
    return RuleStats(
        rule_id=rule.id,
        version=rule.version,
        mode=rule.mode,
        applies_to=rule.applies_to,
        kind=rule.kind,
        severity=rule.severity,
        action=rule.action,
        evaluated=evaluated,
        hits=len(hits),
        hit_rate=len(hits) / evaluated if evaluated else 0.0,
        alerts_per_day=len(hits) / days,
        errors=replay.errors.get(rule.id, 0),
        overlap_share=overlap[0],
        overlaps_most_with=overlap[1],
        jaccard=overlap[2],
        active=_diff(rule, active, replay, hits),
        **labels,
    )
