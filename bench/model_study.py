"""``python -m bench.model_study DIR``: how far each learner gets on one simulated history.

``DIR`` is an ``--out`` folder of ``duoli eval`` (its ``events.jsonl`` and ``truth.json``).
The events go through the engine in one process, as a worker handles them, and each
transaction's model inputs are kept. Then, without the broker:

- **online**: every learner scores day ``d`` with what it learned from the labels known
  before ``d``, exactly as the trainer feeds the workers' models: a label known within
  the maturity period trains its class, an unlabelled transaction trains as legitimate once
  it matures (a quarter of them, weighing four), and a later fraud label corrects it;
- **hindsight**: a gradient-boosted model trained on the first half of the history, with
  the true labels or with the labels known by then, and tested on the second half after
  a maturity gap: what the inputs allow when learning is not the limit.

Figures are ROC AUC and average precision of the model's probability alone, over every
day and after the warm-up, as ``duoli eval`` reports them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from river import forest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

from duoli.engine import AccountEngine, day_of
from duoli.errors import InvalidEvent
from duoli.evaluation import WARMUP_DAYS
from duoli.events import Transaction, parse_event
from duoli.merchant import add_fact, merchant_features
from duoli.settings import Settings
from models.candidates import OnlineCandidate
from models.features import FRAUD_FEATURES, FRAUD_INPUTS, guard, unpack
from models.learners import fraud_candidates
from rules import LIBRARY_DIR, load_rules
from rules.control import Controls

DAY = 86_400.0
MATURITY = 7 * DAY
NEGATIVE_RATE = 0.25


@dataclass(frozen=True, slots=True)
class Row:
    event_id: str
    at: float
    x: dict[str, float]
    fraud: bool


def rows_and_labels(folder: Path) -> tuple[list[Row], dict[str, tuple[float, bool]]]:
    """Each transaction's inputs as a worker computed them, and the first label of each."""
    frauds = set(json.loads((folder / "truth.json").read_text())["fraud_transactions"])
    settings = Settings()
    engine = AccountEngine(settings, Controls(load_rules(LIBRARY_DIR)))
    states: dict[str, Any] = {}
    buckets: dict[str, dict[int, list[float]]] = {}
    rows: list[Row] = []
    labels: dict[str, tuple[float, bool]] = {}
    clock = 0.0
    for line in (folder / "events.jsonl").open("rb"):
        try:
            event = parse_event(line, settings.max_amount)
            state = states.setdefault(event.account_id, engine.new_state(event.account_id))
            merchant = None
            if isinstance(event, Transaction):
                merchant = merchant_features(buckets.get(event.merchant_id, {}), day_of(event.at))
            engine.check(state, event, clock)
            outcome = engine.handle(state, event, merchant, clock)
        except InvalidEvent:
            continue
        clock = max(clock, event.at)
        for fact in outcome.merchant_facts:
            add_fact(buckets.setdefault(fact.merchant_id, {}), fact)
        for kind, item_id, at, extra in outcome.training:
            if kind == "tx":
                x = guard(unpack(extra, FRAUD_FEATURES), FRAUD_INPUTS)
                rows.append(Row(item_id, at, x, item_id in frauds))
            elif kind == "label":
                labels.setdefault(item_id, (at, bool(extra)))
    return sorted(rows, key=lambda row: row.at), labels


Lesson = tuple[float, Row, bool, float, bool]  # known at, transaction, label, weight, corrects


def lessons(rows: list[Row], labels: dict[str, tuple[float, bool]]) -> list[Lesson]:
    """The lessons in the order the trainer would learn them."""
    taught = []
    for row in rows:
        label = labels.get(row.event_id)
        if label is not None and label[0] <= row.at + MATURITY:
            taught.append((label[0], row, label[1], 1.0, False))
            continue
        digest = hashlib.blake2b(row.event_id.encode(), digest_size=4).digest()
        learned = int.from_bytes(digest, "big") < NEGATIVE_RATE * 2**32
        if learned:
            taught.append((row.at + MATURITY, row, False, 1 / NEGATIVE_RATE, False))
        if label is not None and label[1]:
            taught.append((label[0], row, True, 1.0, learned))  # the correction
    return sorted(taught, key=lambda lesson: lesson[0])


class RiverForest(OnlineCandidate):
    """River's Mondrian forest, which takes no sample weights."""

    def __init__(self) -> None:
        self.model = forest.AMFClassifier(n_estimators=10, seed=1)

    def learn_one(self, x: dict[str, float], y: bool, w: float = 1.0) -> None:
        self.model.learn_one(x, y)

    def predict_proba_one(self, x: dict[str, float]) -> float:
        return float(self.model.predict_proba_one(x).get(True, 0.0))


def _shipped(name: str) -> Callable[[], Any]:
    """A fresh candidate exactly as the fraud learner builds it."""
    return lambda: fraud_candidates()[name]


LEARNERS: dict[str, Callable[[], Any]] = {
    **{name: _shipped(name) for name in fraud_candidates()},
    "mondrian_forest": RiverForest,
}


def online(rows: list[Row], labels: dict[str, tuple[float, bool]], make: Callable[[], Any]):
    """Scores of a learner that, each day, has learned what was known before that day."""
    model, taught, next_lesson = make(), lessons(rows, labels), 0
    scores: list[tuple[Row, float]] = []
    for day, day_rows in _by_day(rows):
        while next_lesson < len(taught) and taught[next_lesson][0] < day * DAY:
            _, row, label, weight, corrects = taught[next_lesson]
            if corrects:
                model.forget_one(row.x, not label)
            model.learn_one(row.x, label, weight)
            next_lesson += 1
        model.refit()  # as the trainer does at each closed day
        scores.extend((row, model.predict_proba_one(row.x)) for row in day_rows)
    return scores


def _by_day(rows: list[Row]) -> Iterator[tuple[int, list[Row]]]:
    days: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        days[int(row.at // DAY)].append(row)
    yield from sorted(days.items())


def hindsight(rows: list[Row], labels: dict[str, tuple[float, bool]]) -> dict[str, Any]:
    """Train on the first half (true or known labels), test on the second half."""
    times = np.array([row.at for row in rows])
    x = np.array([[row.x[name] for name in FRAUD_FEATURES] for row in rows])
    truth = np.array([row.fraud for row in rows])
    cut = float(np.quantile(times, 0.5))
    known = np.array([labels.get(row.event_id, (cut, False)) for row in rows], dtype=object)
    known_fraud = np.array([bool(label) and at < cut for at, label in known])
    train = (times < cut) & (known_fraud | (times < cut - MATURITY))
    test = times >= cut + MATURITY
    figures = {}
    for name, taught in (("true_labels", truth), ("known_labels", known_fraud)):
        model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0)
        scores = model.fit(x[train], taught[train]).predict_proba(x[test])[:, 1]
        figures[name] = _figures(truth[test], scores) | {"positives": int(taught[train].sum())}
    return figures


def _figures(truth: Any, scores: Any) -> dict[str, float]:
    return {
        "roc_auc": round(float(roc_auc_score(truth, scores)), 3),
        "average_precision": round(float(average_precision_score(truth, scores)), 3),
    }


def study(folder: Path, learners: list[str]) -> dict[str, Any]:
    rows, labels = rows_and_labels(folder)
    first_day = int(rows[0].at // DAY)
    report: dict[str, Any] = {"transactions": len(rows), "frauds": sum(r.fraud for r in rows)}
    for name in learners:
        scores = online(rows, labels, LEARNERS[name])
        warm = [(r, s) for r, s in scores if r.at // DAY >= first_day + WARMUP_DAYS]
        report[name] = {
            "all_days": _figures([r.fraud for r, _ in scores], [s for _, s in scores]),
            "after_warmup": _figures([r.fraud for r, _ in warm], [s for _, s in warm]),
        }
        print(name, report[name], flush=True)
    report["hindsight"] = hindsight(rows, labels)
    print("hindsight", report["hindsight"], flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.model_study", description=__doc__)
    parser.add_argument("folder", type=Path, help="a duoli eval --out folder")
    parser.add_argument("--learners", nargs="*", default=list(LEARNERS), choices=list(LEARNERS))
    args = parser.parse_args()
    report = study(args.folder, args.learners)
    (args.folder / "model-study.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
