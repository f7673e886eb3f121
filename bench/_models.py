"""What the online models cost: scoring per event, learning per transaction, pending memory.

The models are trained the way the pipeline trains them, by the trainer, on a simulated
book whose frauds are labelled two days after the fact. The baseline for both costs is
what the engine already spends per event on computing the features the models read
(``transaction_features``), measured on the same events in the same run.

The pending store is filled with a week of the public benchmark's volume (10,000
transactions a day) and measured with tracemalloc; the baseline is the raw features
alone (4 bytes per value).
"""

from __future__ import annotations

import functools
import json
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from bench._rules import feature_dicts
from duoli.events import event_time
from duoli.scoring import rules_score
from duoli.simulate import SimulationConfig, simulate_with_truth
from models.boosted import BoostedCandidate
from models.features import (
    FRAUD_FEATURES,
    FRAUD_INPUTS,
    PD_FEATURES,
    fraud_inputs,
    guard,
    pack,
    pd_inputs,
)
from models.learners import fraud_candidates
from models.pending import PendingStore
from models.trainer import DAY, Trainer, TrainerConfig

__all__ = ["learning_section", "pending_section", "refit_section", "scoring_section"]

BOOK = SimulationConfig(seed=13, accounts=600, days=45)
WEEK_OF_TRANSACTIONS = 70_000
LABEL_DELAY = 2 * DAY


def _book() -> tuple[list[dict[str, Any]], list[dict[str, Any]], frozenset[str]]:
    events, truth = simulate_with_truth(BOOK)
    transactions = [event for event in events if event["type"] == "transaction"]
    return events, transactions, truth.fraud_transactions


def _best_per_item(run: Callable[[], object], items: int, repeats: int = 3) -> float:
    """Microseconds per item of the fastest of ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best / items * 1e6


def _train(
    transactions: Sequence[dict[str, Any]],
    inputs: Sequence[dict[str, float]],
    frauds: frozenset[str],
) -> Trainer:
    """Every transaction, and a fraud label two days after each fraud, through the trainer."""
    items: list[list[Any]] = []
    for seq, (event, x) in enumerate(zip(transactions, inputs, strict=True)):
        at = _time(event)
        items.append(["tx", event["event_id"], at, 2 * seq, at, pack(x, FRAUD_FEATURES)])
        if event["event_id"] in frauds:
            known = at + LABEL_DELAY
            items.append(["label", event["event_id"], known, 2 * seq + 1, known, True])
    items.sort(key=lambda item: item[4])
    trainer = Trainer(TrainerConfig())
    for offset, item in enumerate(items):
        item[3] = offset  # a partition's sequence numbers rise in the order it sends them
        trainer.consume({"p": 0, "clock": item[4], "items": [item]}, offset)
        trainer.close_epochs()
    return trainer


def _time(event: dict[str, Any]) -> float:
    return event_time(event["occurred_at"])


def scoring_section() -> dict[str, Any]:
    events, transactions, frauds = _book()
    facts = feature_dicts(events)
    inputs = [fraud_inputs(f, rules_score([])) for f in facts]
    trainer = _train(transactions, inputs, frauds)
    snapshot = trainer.snapshot()
    pd_rows = [pd_inputs(f) for f in facts]

    def score() -> None:
        for x, account in zip(inputs, pd_rows, strict=True):
            snapshot.fraud.score(x, 0.0)
            snapshot.pd.pd(account)

    return {
        "us_per_event": round(_best_per_item(score, len(inputs)), 2),
        "baseline_features_us_per_event": round(_features_cost(events, len(facts)), 2),
        "events": len(inputs),
        "versions": snapshot.versions(),
        "candidates_us_per_transaction": _candidates_cost(trainer, inputs),
    }


def _candidates_cost(trainer: Trainer, inputs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each candidate's frozen predictor alone: probability and contributions."""
    rows = [guard(x, FRAUD_INPUTS) for x in inputs]
    costs = {}
    for name in trainer.fraud.windows:
        predictor = trainer.fraud.frozen(name)
        if predictor is not None:
            run = functools.partial(_score_all, predictor.score, rows)
            costs[name] = round(_best_per_item(run, len(rows)), 2)
    return costs


def _score_all(score: Callable[[dict[str, float]], object], rows: list[dict[str, float]]) -> None:
    for x in rows:
        score(x)


def _features_cost(events: list[dict[str, Any]], count: int) -> float:
    return _best_per_item(lambda: feature_dicts(events), count)


def learning_section() -> dict[str, Any]:
    events, transactions, frauds = _book()
    facts = feature_dicts(events)
    inputs = [fraud_inputs(f, 0.0) for f in facts]
    started = time.perf_counter()
    trainer = _train(transactions, inputs, frauds)
    seconds = time.perf_counter() - started
    boosted = [c for c in trainer.fraud.candidates.values() if isinstance(c, BoostedCandidate)]
    refits = sum(candidate.fit_seconds for candidate in boosted)
    return {
        "us_per_transaction": round((seconds - refits) / len(transactions) * 1e6, 2),
        "baseline_features_us_per_event": round(_features_cost(events, len(facts)), 2),
        "transactions": len(transactions),
        "labels_learned": trainer.fraud.labels,
        "daily_refits": sum(candidate.fits for candidate in boosted),
        "daily_refit_seconds": round(refits, 2),
        "status": json.loads(json.dumps(trainer.status(), default=str)),
    }


def refit_section() -> dict[str, Any]:
    """One refit of a full buffer, against the binned candidate learning the same examples
    online (what a day's refit costs next to learning them one by one)."""
    events, transactions, frauds = _book()
    inputs = [fraud_inputs(facts, 0.0) for facts in feature_dicts(events)]
    examples = [(x, tx["event_id"] in frauds) for x, tx in zip(inputs, transactions, strict=True)]
    candidate, online = BoostedCandidate(), fraud_candidates()["binned"]
    rows = [examples[n % len(examples)] for n in range(candidate.capacity)]
    guarded = [(guard(x, FRAUD_INPUTS), y) for x, y in rows]
    for x, y in guarded:
        candidate.learn_one(x, y)
    started = time.perf_counter()
    candidate.refit()
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    for x, y in guarded:
        online.learn_one(x, y)
    online_seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "baseline_online_seconds": round(online_seconds, 2),
        "examples": candidate.capacity,
        "positives": sum(y for _, y in rows),
    }


def pending_section() -> dict[str, Any]:
    width = len(FRAUD_FEATURES)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = PendingStore(limit=WEEK_OF_TRANSACTIONS + 1)
    for n in range(WEEK_OF_TRANSACTIONS):
        store.add(f"tx-{n:09d}", "tx", n * 8.64, [float(n % 97)] * width)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {
        "bytes_per_example": round(held / WEEK_OF_TRANSACTIONS, 1),
        "baseline_raw_feature_bytes": width * 4,
        "examples": WEEK_OF_TRANSACTIONS,
        "megabytes": round(held / 2**20, 1),
        "estimate_bytes": store.nbytes(),
        "features": width,
        "pd_features": len(PD_FEATURES),
        "default_limit": TrainerConfig().pending_limit,
    }
