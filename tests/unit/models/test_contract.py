"""The contract every model object of ``models`` honours, River-style.

For every candidate, frozen predictor, detector, learner and scorer: a pickle round-trip
gives identical scores; scoring, predicting and explaining leave the input dict as it
was; nothing non-finite ever reaches a model; memory stays bounded however long it
learns. And a challenger is promoted only with enough labels, and only by the margin.
"""

from __future__ import annotations

import copy
import functools
import math
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest

import models.learners as learners
from models.anomaly import AnomalyDetector, FrozenDetector
from models.boosted import BoostedCandidate
from models.candidates import LogisticCandidate, TreeCandidate
from models.features import (
    BOUNDS,
    FRAUD_FEATURES,
    FRAUD_INPUTS,
    PD_FEATURES,
    fraud_inputs,
    pd_inputs,
)
from models.learners import DelinquencyLearner, FraudLearner, LearningConfig, fraud_candidates


def fraud_example(rng: random.Random) -> tuple[dict[str, float], bool]:
    fraud = rng.random() < 0.05
    facts = {
        "amount": rng.lognormvariate(7.0 if fraud else 4.0, 0.8),
        "amount_ratio": rng.lognormvariate(1.0 if fraud else 0.0, 0.6),
        "tx_count_1h": rng.randint(1, 6),
        "merchant_tx_count_7d": rng.randint(0, 400),
        "merchant_frauds_30d": rng.randint(0, 2),
        "hour_of_day": rng.randrange(24),
        "credit_limit": 5000.0,
        "balance": rng.uniform(0, 4000),
    }
    return fraud_inputs(facts, rng.random() * 0.3), fraud


def pd_example(rng: random.Random) -> tuple[dict[str, float], bool]:
    late = rng.random() < 0.1
    account = {
        "credit_limit": 6000.0,
        "apr": 0.2 if late else 0.12,
        "utilisation": rng.random(),
        "days_past_due": rng.randint(3, 20) if late else 0,
        "overdue_installments": int(late),
        "outstanding_installments": rng.randint(0, 2),
        "settled_installments": rng.randint(0, 6),
        "amount_owed": rng.uniform(0, 900),
    }
    return pd_inputs(account), late


def examples(maker, n: int, seed: int = 11) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(seed)
    return [maker(rng) for _ in range(n)]


FRAUD = examples(fraud_example, 700)
PD = examples(pd_example, 600)


def trained_candidate(candidate):
    for x, y in FRAUD:
        candidate.learn_one(x, y)
    return candidate


def refitted_boosted() -> BoostedCandidate:
    model = trained_candidate(BoostedCandidate(iterations=10))
    model.refit()
    return model


def trained_detector() -> AnomalyDetector:
    detector = AnomalyDetector(n_trees=5, height=6, window_size=100, reference_size=300)
    for x, _ in FRAUD[:400]:
        detector.learn_one(x)
    return detector


def trained_fraud_learner(config: LearningConfig | None = None) -> FraudLearner:
    learner = FraudLearner(config or LearningConfig(warmup_positives=200))
    for t, (x, y) in enumerate(FRAUD):
        learner.observe(x)
        learner.learn(x, y, at=float(t))
    learner.close_day(float(len(FRAUD)))
    return learner


def trained_pd_learner() -> DelinquencyLearner:
    learner = DelinquencyLearner(LearningConfig(warmup_positives=200))
    for t, (x, y) in enumerate(PD):
        learner.learn(x, y, at=float(t))
    return learner


# Each subject: a name, how to build it trained, and how it scores one input dict.
Score = Callable[[Any, dict[str, float]], Any]
SUBJECTS: dict[str, tuple[Callable[[], Any], Score, list[tuple[dict[str, float], bool]]]] = {
    "logistic": (lambda: trained_candidate(LogisticCandidate()), lambda m, x: m.score(x), FRAUD),
    "binned": (
        lambda: trained_candidate(fraud_candidates()["binned"]),
        lambda m, x: (m.predict_proba_one(x), m.explain(x)),
        FRAUD,
    ),
    "tree": (
        lambda: trained_candidate(TreeCandidate(grace_period=50)),
        lambda m, x: (m.predict_proba_one(x), m.score(x), m.explain(x)),
        FRAUD,
    ),
    "linear predictor": (
        lambda: trained_candidate(fraud_candidates()["binned"]).frozen(),
        lambda m, x: (m.score(x), m.explain(x)),
        FRAUD,
    ),
    "tree predictor": (
        lambda: trained_candidate(TreeCandidate(grace_period=50)).frozen(),
        lambda m, x: (m.score(x), m.explain(x)),
        FRAUD,
    ),
    "boosted": (refitted_boosted, lambda m, x: (m.predict_proba_one(x), m.explain(x)), FRAUD),
    "boosted predictor": (
        lambda: refitted_boosted().frozen(),
        lambda m, x: (m.score(x), m.explain(x)),
        FRAUD,
    ),
    "detector": (trained_detector, lambda m, x: m.score_one(x), FRAUD),
    "fraud learner": (
        trained_fraud_learner,
        lambda m, x: [c.score(x) for c in m.candidates.values()],
        FRAUD,
    ),
    "fraud scorer (warm-up)": (
        lambda: trained_fraud_learner().scorer("v1"),
        lambda m, x: m.score(x, 0.2),
        FRAUD,
    ),
    "fraud scorer": (
        lambda: trained_fraud_learner(LearningConfig(warmup_positives=5)).scorer("v2"),
        lambda m, x: m.score(x, 0.2),
        FRAUD,
    ),
    "pd learner": (trained_pd_learner, lambda m, x: m.scorer("v").pd(x), PD),
    "pd scorer": (lambda: trained_pd_learner().scorer("v"), lambda m, x: m.pd(x), PD),
}


# What the trainer and the workers call: these guard their inputs themselves.
ENTRY_POINTS = ("fraud scorer (warm-up)", "fraud scorer", "pd learner", "pd scorer")


@functools.cache
def built(name: str) -> tuple[Any, Score, list[tuple[dict[str, float], bool]]]:
    build, score, data = SUBJECTS[name]
    return build(), score, data


@pytest.fixture(params=list(SUBJECTS))
def subject(request):
    return built(request.param)


@pytest.fixture(params=ENTRY_POINTS)
def entry_point(request):
    return built(request.param)


def test_pickle_round_trip_gives_identical_scores(subject):
    model, score, data = subject
    copied = pickle.loads(pickle.dumps(model))
    for x, _ in data[:50]:
        assert score(copied, x) == score(model, x)


def test_scoring_predicting_and_explaining_leave_the_input_alone(subject):
    model, score, data = subject
    for x, _ in data[:50]:
        before = copy.deepcopy(x)
        score(model, x)
        assert x == before


def test_non_finite_or_missing_inputs_score_as_their_neutral_values(entry_point):
    model, score, data = entry_point
    names = FRAUD_FEATURES if data is FRAUD else PD_FEATURES
    x = dict(data[0][0])
    dirty = {**x, names[0]: math.nan, names[1]: math.inf, names[2]: -math.inf}
    del dirty[names[3]]
    dirty["stray"] = 5.0
    neutral = fraud_inputs({}, 0.0) if data is FRAUD else pd_inputs({})
    clean = {**x, **{name: neutral[name] for name in names[:4]}}
    assert score(model, dirty) == score(model, clean)


class Spy:
    """Wraps a candidate or detector and checks every input it is handed."""

    def __init__(self, inner: Any, names: tuple[str, ...]) -> None:
        self.inner = inner
        self.names = names
        self.seen = 0

    def _check(self, x: dict[str, float]) -> None:
        assert tuple(x) == self.names
        assert all(isinstance(v, float) and math.isfinite(v) for v in x.values()), x
        self.seen += 1

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def checked(x, *args, **kwargs):
            self._check(x)
            return method(x, *args, **kwargs)

        return checked if name in {"learn_one", "predict_proba_one", "score_one"} else method


def test_nothing_non_finite_ever_reaches_a_fraud_model(monkeypatch):
    spies: list[Spy] = []

    def spied():
        made = {name: Spy(c, FRAUD_FEATURES) for name, c in original().items()}
        spies.extend(made.values())
        return made

    original = learners.fraud_candidates
    monkeypatch.setattr(learners, "fraud_candidates", spied)
    learner = FraudLearner(LearningConfig(warmup_positives=1000))
    learner.detector = Spy(learner.detector, FRAUD_FEATURES)  # type: ignore[assignment]
    rng = random.Random(2)
    poison = (math.nan, math.inf, -math.inf, None, "12")
    for t in range(300):
        x, y = fraud_example(rng)
        for name in rng.sample(FRAUD_FEATURES, 5):
            x[name] = rng.choice(poison)  # type: ignore[assignment]
        del x[rng.choice(FRAUD_FEATURES)]
        learner.observe(x)
        learner.learn(x, y, at=float(t))
    assert all(spy.seen >= 600 for spy in spies)  # each predicted and learned 300 times
    assert learner.detector.seen == 300
    assert all(
        math.isfinite(w) for w in learner.candidates["logistic"].inner.model.weights.values()
    )


def test_nothing_non_finite_ever_reaches_the_pd_model():
    learner = DelinquencyLearner()
    spy = Spy(learner.model, PD_FEATURES)
    learner.model = spy  # type: ignore[assignment]
    rng = random.Random(3)
    for t in range(200):
        x, y = pd_example(rng)
        x[rng.choice(PD_FEATURES)] = math.nan
        learner.learn(x, y, at=float(t))
    assert spy.seen >= 200  # every learn, and every prediction once it counts


def pickled_size(obj: Any) -> int:
    return len(pickle.dumps(obj))


@pytest.mark.parametrize(
    ("bins", "optimizer", "bytes_per_weight"),
    [(0, "sgd", 48), (10, "sgd", 48), (10, "adam", 96)],  # Adam: two moments a weight
)
def test_linear_candidates_hold_one_weight_per_input_and_bin_however_long_they_learn(
    bins, optimizer, bytes_per_weight
):
    model = LogisticCandidate(bins=bins, optimizer=optimizer)
    rng = random.Random(5)
    for _ in range(1000):
        x, y = fraud_example(rng)
        x = {name: rng.uniform(*BOUNDS[name]) for name in x}  # every bin gets visited
        model.learn_one(x, y)
    weights = len(FRAUD_FEATURES) * (1 + bins)
    assert len(model.model.weights) == weights
    assert pickled_size(model) < 4_096 + bytes_per_weight * weights
    assert pickled_size(model.frozen()) < 12_000


def test_windows_keep_at_most_their_maximum():
    learner = FraudLearner(LearningConfig(window_max=200))
    rng = random.Random(6)
    sizes = []
    for t in range(800):
        x, y = fraud_example(rng)
        learner.learn(x, y, at=float(t))
        if t in (399, 799):
            sizes.append(pickled_size(learner.windows))
    assert all(w.labels == 200 for w in learner.windows.values())
    assert sizes[1] == sizes[0] < 40_000
    assert pickled_size(learner.scorer("v").predictor) < 8_000


def test_the_detector_has_fixed_trees_a_fixed_reference_and_a_fixed_tail_window():
    detector = AnomalyDetector(window_size=100, reference_size=300, tail_size=400)
    rng = random.Random(8)
    sizes = []
    for n in range(1000):
        detector.learn_one(fraud_example(rng)[0])
        if n in (499, 999):
            sizes.append(pickled_size(detector))
    assert len(detector.joint_reference.sorted) == len(detector.tail_reference.sorted) == 300
    assert len(detector.tails.rows) == 400
    assert sizes[1] == sizes[0] < 500_000


def test_the_tree_is_bounded_by_its_depth_and_ships_without_its_split_statistics():
    model = TreeCandidate(grace_period=10, max_depth=3)
    rng = random.Random(7)
    for _ in range(1200):
        x, y = fraud_example(rng)
        model.learn_one(x, y)
    assert model.model.height <= 4
    assert model.model.n_nodes <= 2**4
    assert pickled_size(model.frozen()) < pickled_size(model) / 5


class Flipped(LogisticCandidate):
    """A deliberately bad champion: it learns every label the wrong way round."""

    def learn_one(self, x, y, w=1.0):
        super().learn_one(x, not y, w)


def learner_with(monkeypatch, candidates, **config) -> FraudLearner:
    monkeypatch.setattr(learners, "fraud_candidates", lambda: candidates)
    return FraudLearner(LearningConfig(**config))


def teach(learner: FraudLearner, n: int, seed: int = 9, rate: float = 0.05) -> None:
    rng = random.Random(seed)
    for t in range(learner.labels, learner.labels + n):
        x, y = fraud_example(rng)
        learner.learn(x, y or rng.random() < rate / 10, at=float(t))


def test_a_bad_champion_loses_to_a_good_challenger_once_the_window_is_full(monkeypatch):
    learner = learner_with(
        monkeypatch,
        {"bad": Flipped(), "good": LogisticCandidate()},
        promotion_min_labels=400,
        promotion_min_positives=10,
    )
    teach(learner, 399)
    assert learner.promote_if_better(at=399.0) is None  # one label short
    teach(learner, 1)
    promotion = learner.promote_if_better(at=400.0)
    assert promotion is not None
    assert (promotion.champion, promotion.previous, promotion.labels) == ("good", "bad", 400)
    good, bad = promotion.metrics["good"], promotion.metrics["bad"]
    assert good["average_precision"] >= bad["average_precision"] + 0.02  # type: ignore[operator]
    assert learner.champion == "good" and learner.status()["promotions"][0]["champion"] == "good"
    assert learner.promote_if_better(at=401.0) is None  # the bad one cannot win it back


def test_no_promotion_without_enough_positives(monkeypatch):
    learner = learner_with(
        monkeypatch,
        {"bad": Flipped(), "good": LogisticCandidate()},
        promotion_min_labels=100,
        promotion_min_positives=10_000,
    )
    teach(learner, 600)
    assert learner.promote_if_better(at=600.0) is None
    assert learner.champion == "bad"


def test_no_promotion_when_the_margin_is_not_met(monkeypatch):
    twins = learner_with(
        monkeypatch,
        {"a": LogisticCandidate(), "b": LogisticCandidate()},
        promotion_min_labels=100,
        promotion_min_positives=5,
    )
    teach(twins, 600)
    assert twins.promote_if_better(at=600.0) is None  # equal, not better by the margin
    strict = learner_with(
        monkeypatch,
        {"bad": Flipped(), "good": LogisticCandidate()},
        promotion_min_labels=100,
        promotion_min_positives=5,
        promotion_margin=1.5,  # more than average precision can ever differ
    )
    teach(strict, 600)
    assert strict.promote_if_better(at=600.0) is None
    assert strict.champion == "bad"


def test_window_figures_expire_with_event_time(monkeypatch):
    learner = learner_with(
        monkeypatch,
        {"bad": Flipped(), "good": LogisticCandidate()},
        promotion_min_labels=100,
        promotion_min_positives=5,
        window_days=1.0,
    )
    teach(learner, 600)
    assert learner.promote_if_better(at=600.0 + 2 * 86_400) is None  # everything expired
    assert learner.windows["good"].labels == 0


def test_fraud_inputs_cover_every_input_the_models_read():
    assert tuple(spec.name for spec in FRAUD_INPUTS) == FRAUD_FEATURES
    assert set(trained_detector().features) == set(FRAUD_FEATURES)


def test_the_frozen_detector_scores_as_the_detector_and_holds_no_tree_objects():
    detector = AnomalyDetector(window_size=100, reference_size=300)
    rng = random.Random(9)
    for _ in range(700):
        detector.learn_one(fraud_example(rng)[0])
    frozen = detector.frozen()
    probes = [fraud_example(rng)[0] for _ in range(200)]
    assert [frozen.score_one(x) for x in probes] == [detector.score_one(x) for x in probes]
    assert len({frozen.score_one(x) for x in probes}) > 10  # not a constant
    assert b"river" in pickle.dumps(detector) and b"river" not in pickle.dumps(frozen)
    loaded = pickle.loads(pickle.dumps(frozen))
    assert [loaded.score_one(x) for x in probes] == [detector.score_one(x) for x in probes]


def test_a_frozen_detector_stores_its_trees_not_its_compiled_walk():
    """Snapshots already on the models topic hold the trees alone; they still load."""
    frozen = trained_detector().frozen()
    stored = frozen.__getstate__()
    assert "walk" not in stored and "trees" in stored
    older = FrozenDetector.__new__(FrozenDetector)
    older.__setstate__(dict(stored))
    probes = [x for x, _ in FRAUD[400:500]]
    assert [older.score_one(x) for x in probes] == [frozen.score_one(x) for x in probes]
    assert len({older.score_one(x) for x in probes}) > 10  # not a constant


def test_a_frozen_detector_compiles_numbers_only():
    """The walk is compiled from the stored trees: anything but a number in them refuses to
    load instead of running."""
    stored = dict(trained_detector().frozen().__getstate__())
    features, thresholds, masses = stored["trees"][0]
    payload = "__import__('os').getpid()"
    stored["trees"] = ((features, [payload] * len(thresholds), masses), *stored["trees"][1:])
    tampered = FrozenDetector.__new__(FrozenDetector)
    with pytest.raises(ValueError, match="could not convert"):
        tampered.__setstate__(stored)
