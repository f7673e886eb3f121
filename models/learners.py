"""The online learners the trainer feeds, and the immutable scorers the workers hold.

How a transaction's fraud score is made
---------------------------------------
::

    fraud_score    = noisy_or(this_one, peak)
    this_one       = noisy_or(w * p_champion + (1 - w) * rules_score, 0.05 * anomaly)
    w              = min(1, positives_learned / warmup_positives)
    noisy_or(a, b) = 1 - (1 - a) * (1 - b)

- ``p_champion`` is the champion candidate's probability of fraud, read as if frauds
  had weighed no more than legitimate transactions in learning (``models.candidates``),
  so that it means the same whichever candidate or version gives it. ``rules_score``
  (0..1, the noisy-OR of the analysts' active fraud hits) is also one of its inputs, so
  the model learns how far to trust the rules.
- ``anomaly`` comes from the detector of ``models.anomaly``: River ``HalfSpaceTrees``
  over the inputs, each mapped to [0, 1] by fixed bounds (``models.features``), averaged
  with how far out each input lies in its own recent tail. It scores from the first
  day, and reads against recent traffic so that the top 1% read above one half. It
  counts as a fraud probability of at most ``ANOMALY_AS_FRAUD`` (0.05): it orders the
  transactions no rule flags, and a rule hit or a trained model's confident score still
  ranks above it. It covers the cold start, and it keeps counting once ``w`` is 1: it
  needs no labels, so it is the one signal that label delay does not hold back. Frauds
  are labelled days or weeks late, so the supervised model has learned a new kind of
  fraud only well after it began; the detector sees such transactions as unusual from
  the first (``duoli eval``, default book, seed 7: compromised-merchant frauds rank at
  0.75 ROC AUC with it, 0.62 without).
- ``peak`` is the account's highest fraud score so far, fading by 1/e every hour
  (``AccountState.peak_score``), also an input of the model. Frauds come in runs on
  one account (a taken-over account drained in several steps, a stolen card tested,
  then used), and the first of a run is often the one the model catches: the rest of
  the run keeps that score while it lasts, and the run's reason code comes first
  (``duoli eval``, default book, seed 7: average precision 0.438 without the peak,
  0.506 with it).
- Before any label there is no model: the score is the fallback alone.

The candidates
--------------
The champion at start is "boosted": gradient-boosted trees refitted at each closed day
(``close_day``) on a bounded ring of the examples learned (``models.boosted`` says why a
batch learner leads). Until it has learned enough frauds to fit, it has no model and the
score is the fallback. Its challengers learn online with River: "binned", a logistic
regression on each input scaled by its fixed bounds plus a one-hot of its bin (a
generalised additive model that learns a curve per input), learned with Adam
(``models.candidates`` says why); the plain ``StandardScaler | LogisticRegression``
("logistic"); a bounded Hoeffding tree ("tree"); and "blend", the mean of "binned" and
"tree", which learns nothing of its own. Both linear candidates hold the evidence inputs
monotone (``FRAUD_MONOTONE``: the merchant's and the account's confirmed frauds, the rules
score), so labels that come late cannot teach them that evidence of fraud lowers the
risk; the boosted candidate instead forgets an example whose label a later one corrects.
Every candidate explains a score with the inputs that raised it (``models.explain``).

Learning is prequential: each candidate first predicts a labelled transaction (recorded
in its event-time window), then learns it; a positive weighs more than a negative
(``positive_weight``), as frauds are rare. ``promote_if_better`` makes the best
challenger the champion only when the window holds ``promotion_min_labels`` labels and
``promotion_min_positives`` positives, and its average precision beats the champion's
by ``promotion_margin``. Every input goes through ``models.features.guard`` first, so
nothing non-finite reaches a model.

The probability of default
--------------------------
``pd = w * p_model + (1 - w) * p_scorecard``, with ``w = min(1, defaults_learned /
warmup_positives)``: a default is only known 30 days after its due date, so the first
bills are scored by a fixed, hand-set scorecard on the account's standing (``SCORECARD``)
until the online logistic regression has learned enough defaults.

>>> import random
>>> from models.features import fraud_inputs
>>> rng = random.Random(5)
>>> learner = FraudLearner(LearningConfig(warmup_positives=10))
>>> for n in range(3000):
...     fraud = rng.random() < 0.05
...     x = fraud_inputs({"amount": rng.lognormvariate(7 if fraud else 4, 0.5)}, 0.0)
...     learner.observe(x)
...     learner.learn(x, fraud, at=float(n))
>>> _ = learner.close_day(at=3000.0)  # the boosted champion refits
>>> scorer = learner.scorer("v1")
>>> big = scorer.score(fraud_inputs({"amount": 3000.0}, 0.0), 0.0)
>>> small = scorer.score(fraud_inputs({"amount": 40.0}, 0.0), 0.0)
>>> big.weight, big.fraud_score > 0.2 > 0.01 > small.fraud_score
(1.0, True)
>>> big.reasons[0]["code"]
'LARGE_AMOUNT'
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from models.anomaly import AnomalyDetector, FrozenDetector
from models.boosted import BoostedCandidate
from models.candidates import (
    BlendPredictor,
    Candidate,
    LogisticCandidate,
    Predictor,
    TreeCandidate,
    sigmoid,
)
from models.explain import reason_codes
from models.features import FRAUD_INPUTS, FRAUD_MONOTONE, PD_FEATURES, PD_INPUTS, guard
from models.metrics import Prequential

__all__ = [
    "DelinquencyLearner",
    "FraudLearner",
    "FraudScore",
    "FraudScorer",
    "LearningConfig",
    "PdScorer",
    "Promotion",
    "noisy_or",
]

KEEP_PROMOTIONS = 20
REASONS = 3
# The fraud probability that the most unusual transaction (anomaly score 1) stands for.
# An outlier is not a fraud: among the cold-start transactions the detector scored 0.5 or
# more, 1% were frauds on the sparse book and 12% on the default one (8 of 65). Read at
# face value, those first days' outliers would outrank every later transaction the
# trained model finds likely fraud.
ANOMALY_AS_FRAUD = 0.05


@dataclass(frozen=True)
class LearningConfig:
    """How the learners learn and when a challenger is promoted."""

    window_days: float = 30.0  # prequential window, event time
    window_max: int = 20_000  # most labels kept per window (bounded memory)
    promotion_margin: float = 0.02  # challenger must beat the champion's AP by this
    promotion_min_labels: int = 2_000
    # Average precision over 20 positives varies by about 0.1 from one sample to the next,
    # five times the margin: a challenger promoted on so few wins by luck as often as not.
    promotion_min_positives: int = 100
    warmup_positives: int = 20  # positives learned before the supervised model takes over
    seed: int = 7


@dataclass(frozen=True)
class Promotion:
    """A challenger that became champion, and the figures that justified it."""

    at: float  # event time
    champion: str
    previous: str
    labels: int  # labels in the window when promoted
    metrics: dict[str, dict[str, float | None]]  # per candidate: roc_auc, average_precision


@dataclass(frozen=True)
class FraudScore:
    """One transaction's fraud score and how it was made."""

    fraud_score: float  # 0..1, what the score record reports
    model_score: float | None  # the champion's probability (None before any label)
    anomaly_score: float | None  # the detector's score (None without a detector)
    weight: float  # how much the supervised model counts, 0..1
    reasons: tuple[dict[str, Any], ...]  # top inputs as reason codes


def noisy_or(a: float, b: float) -> float:
    """The chance that at least one of two independent signals fires."""
    return 1 - (1 - a) * (1 - b)


def _unit(value: float) -> float:
    """A score argument forced into [0, 1]; not a number reads 0."""
    return min(max(value, 0.0), 1.0) if value == value else 0.0


def fraud_candidates() -> dict[str, Candidate]:
    """The champion at start (the first) and its challengers, fresh."""
    return {
        "boosted": BoostedCandidate(),
        "binned": LogisticCandidate(
            bins=10,
            learning_rate=0.005,
            scaling="bounds",
            optimizer="adam",
            monotone=FRAUD_MONOTONE,
        ),
        "logistic": LogisticCandidate(monotone=FRAUD_MONOTONE),
        "tree": TreeCandidate(),
    }


# Challengers that learn nothing themselves: the mean of the named candidates.
BLENDS: dict[str, tuple[str, ...]] = {"blend": ("binned", "tree")}


class FraudScorer:
    """What a worker holds: a frozen champion, a frozen detector, and ``w``."""

    def __init__(
        self,
        version: str,
        predictor: Predictor | None,
        detector: FrozenDetector | None,
        weight: float,
    ) -> None:
        self.version = version
        self.predictor = predictor
        self.detector = detector
        self.weight = weight

    def score(self, x: dict[str, float], rules_score: float) -> FraudScore:
        """The combined score of one transaction's inputs; ``x`` is left untouched."""
        row = guard(x, FRAUD_INPUTS)
        probability, contributions = self._model(row)
        anomaly = self.detector.score_one(row) if self.detector else None
        w = self.weight if probability is not None else 0.0
        unusual = ANOMALY_AS_FRAUD * (anomaly or 0.0)
        evidence = w * (probability or 0.0) + (1 - w) * _unit(rules_score)
        this_one = noisy_or(evidence, unusual)
        peak = row["peak_score"]  # the account's recent peak: frauds come in runs
        reasons = reason_codes(contributions, row, REASONS)
        if peak > this_one:  # the run, more than this transaction, makes the score
            reasons = _first(reason_codes([("peak_score", peak)], row, 1), reasons)
        return FraudScore(
            fraud_score=_unit(noisy_or(this_one, peak)),
            model_score=probability,
            anomaly_score=anomaly,
            weight=w,
            reasons=reasons,
        )

    def _model(self, row: dict[str, float]) -> tuple[float | None, list[tuple[str, float]]]:
        if self.predictor is None:
            return None, []
        return self.predictor.score(row)


def _first(
    reason: tuple[dict[str, Any], ...], others: tuple[dict[str, Any], ...]
) -> tuple[dict[str, Any], ...]:
    """``reason`` ahead of the others (without a repeat of its code), still ``REASONS`` long."""
    codes = {r["code"] for r in reason}
    return (*reason, *(r for r in others if r["code"] not in codes))[:REASONS]


class FraudLearner:
    """The champion and its challengers, the anomaly detector, and their prequential record."""

    def __init__(self, config: LearningConfig | None = None) -> None:
        self.config = config or LearningConfig()
        self.candidates = fraud_candidates()
        self.blends = {
            name: members
            for name, members in BLENDS.items()
            if all(member in self.candidates for member in members)
        }
        self.windows = {name: self._window() for name in (*self.candidates, *self.blends)}
        self.detector = AnomalyDetector(seed=self.config.seed)
        self.champion = next(iter(self.candidates))
        self.labels = 0
        self.positives = 0
        self.promotions: deque[Promotion] = deque(maxlen=KEEP_PROMOTIONS)

    @property
    def weight(self) -> float:
        """How much the supervised model counts: the share of the warm-up positives seen."""
        warmup = self.config.warmup_positives
        return 1.0 if warmup <= 0 else min(1.0, self.positives / warmup)

    def observe(self, x: dict[str, float]) -> None:
        """A scored transaction, labelled or not; only the detector learns it."""
        self.detector.learn_one(guard(x, FRAUD_INPUTS))

    def learn(
        self,
        x: dict[str, float],
        is_fraud: bool,
        at: float,
        weight: float = 1.0,
        correction: bool = False,
    ) -> None:
        """Each candidate predicts ``x`` (recorded at ``at``), then learns the label. A
        ``correction`` overrules the opposite label learned before: a candidate that can
        forget that example does so first."""
        row = guard(x, FRAUD_INPUTS)
        if correction:
            for candidate in self.candidates.values():
                candidate.forget_one(row, not is_fraud)
        scores = {name: model.predict_proba_one(row) for name, model in self.candidates.items()}
        for name, members in self.blends.items():
            scores[name] = sum(scores[member] for member in members) / len(members)
        for name, score in scores.items():
            self.windows[name].add(at, is_fraud, score)
        for candidate in self.candidates.values():
            candidate.learn_one(row, is_fraud, weight)
        self.labels += 1
        self.positives += bool(is_fraud)

    def close_day(self, at: float) -> Promotion | None:
        """The day's end: candidates that learn in batches refit, then the promotion check."""
        for candidate in self.candidates.values():
            candidate.refit()
        return self.promote_if_better(at)

    def promote_if_better(self, at: float) -> Promotion | None:
        """Promote the best challenger if the window is full enough and it wins by the margin."""
        for window in self.windows.values():
            window.expire(at)
        record = self.windows[self.champion]
        config = self.config
        if record.labels < config.promotion_min_labels:
            return None
        if record.positives < config.promotion_min_positives:
            return None
        metrics = self._metrics()
        best = self._best_challenger(metrics)
        if best is None:
            return None
        promotion = Promotion(at, best, self.champion, record.labels, metrics)
        self.champion = best
        self.promotions.append(promotion)
        return promotion

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary for the trainer's status endpoint and logs."""
        metrics = self._metrics()
        return {
            "champion": self.champion,
            "labels": self.labels,
            "positives": self.positives,
            "weight": self.weight,
            "candidates": {
                name: {
                    "role": "champion" if name == self.champion else "challenger",
                    **metrics[name],
                    "window_labels": self.windows[name].labels,
                    "window_positives": self.windows[name].positives,
                }
                for name in self.windows
            },
            "promotions": [asdict(promotion) for promotion in self.promotions],
        }

    def scorer(self, version: str) -> FraudScorer:
        """An independent, frozen copy for the workers."""
        weight = self.weight
        predictor = self.frozen(self.champion) if self.labels else None
        detector = self.detector.frozen()
        return FraudScorer(version, predictor, detector, weight)

    def frozen(self, name: str) -> Predictor | None:
        """The named candidate (or blend) as workers would hold it; None if it cannot score."""
        if name not in self.blends:
            return self.candidates[name].frozen()
        members = tuple(self.candidates[member].frozen() for member in self.blends[name])
        return None if None in members else BlendPredictor(members)  # type: ignore[arg-type]

    def _window(self) -> Prequential:
        return Prequential(self.config.window_days, self.config.window_max)

    def _metrics(self) -> dict[str, dict[str, float | None]]:
        return {
            name: {"roc_auc": window.roc_auc(), "average_precision": window.average_precision()}
            for name, window in self.windows.items()
        }

    def _best_challenger(self, metrics: Mapping[str, Mapping[str, float | None]]) -> str | None:
        """The challenger with the best average precision, if it beats the champion's by
        the margin (a champion without a figure counts as 0)."""
        champion = metrics[self.champion]["average_precision"] or 0.0
        challengers = [
            (precision, name)
            for name, figures in metrics.items()
            if name != self.champion and (precision := figures["average_precision"]) is not None
        ]
        if not challengers:
            return None
        precision, name = max(challengers)
        return name if precision >= champion + self.config.promotion_margin else None


# The scorecard the delinquency model starts from: hand-set weights (not fitted to any
# data) on the standing a credit officer looks at first. Without it every bill due in
# the first months would be scored by a model that has never seen a default.
SCORECARD_INTERCEPT = -4.0
SCORECARD: dict[str, float] = {
    "outstanding_installments": 1.5,  # bills still unpaid at their due time
    "overdue_installments": 1.0,
    "days_past_due": 0.5,
    "late_share": 2.0,  # share of past bills settled late
    "on_time_streak": -0.5,
    "owed_to_limit": 1.0,
    "utilisation": 1.0,
    "apr": 5.0,  # risk-based pricing: a dearer line was judged riskier at opening
}


def scorecard_pd(x: Mapping[str, float]) -> float:
    """The starting scorecard's probability of default for guarded PD inputs."""
    logit = SCORECARD_INTERCEPT + sum(
        weight * x.get(name, 0.0) for name, weight in SCORECARD.items()
    )
    return sigmoid(logit)


class PdScorer:
    """A frozen delinquency model: the probability that the next installment reaches 30 days
    past due."""

    def __init__(self, version: str, predictor: Predictor, weight: float) -> None:
        self.version = version
        self.predictor = predictor
        self.weight = weight

    def pd(self, x: dict[str, float]) -> float:
        return _blend(self.predictor, guard(x, PD_INPUTS), self.weight)


def _blend(model: Predictor, row: Mapping[str, float], weight: float) -> float:
    """The learned pd, weighted against the starting scorecard's."""
    learned = model.predict_proba_one(row) if weight > 0 else 0.0
    prior = scorecard_pd(row) if weight < 1 else 0.0
    return weight * learned + (1 - weight) * prior


# Defaults are fewer and later than frauds, and a model that has learned 20 of them
# ranks worse than the scorecard: it takes over more slowly.
PD_CONFIG = LearningConfig(warmup_positives=100)


class DelinquencyLearner:
    """Online logistic regression on the account's standing, learned prequentially.

    Without a config it uses ``PD_CONFIG``: the scorecard gives way over 100 defaults.
    """

    def __init__(self, config: LearningConfig | None = None) -> None:
        self.config = config or PD_CONFIG
        self.model = LogisticCandidate(
            features=PD_FEATURES, learning_rate=0.01, positive_weight=1.0
        )
        self.window = Prequential(self.config.window_days, self.config.window_max)
        self.labels = 0
        self.positives = 0

    @property
    def weight(self) -> float:
        """How much the learned model counts against the starting scorecard."""
        warmup = self.config.warmup_positives
        return 1.0 if warmup <= 0 else min(1.0, self.positives / warmup)

    def learn(self, x: dict[str, float], defaulted: bool, at: float, weight: float = 1.0) -> None:
        """Predict (recorded at ``at``), then learn whether the installment defaulted."""
        row = guard(x, PD_INPUTS)
        self.window.add(at, defaulted, _blend(self.model, row, self.weight))
        self.model.learn_one(row, defaulted, weight)
        self.labels += 1
        self.positives += bool(defaulted)

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary, like ``FraudLearner.status``."""
        return {
            "labels": self.labels,
            "positives": self.positives,
            "weight": self.weight,
            "roc_auc": self.window.roc_auc(),
            "average_precision": self.window.average_precision(),
            "window_labels": self.window.labels,
        }

    def scorer(self, version: str) -> PdScorer:
        """An independent, frozen copy for the workers."""
        return PdScorer(version, self.model.frozen(), self.weight)
