"""The boosted candidate: its compiled trees answer as scikit-learn does, its memory is a
fixed ring, and it learns nothing until it has both classes."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from models.boosted import BoostedCandidate, BoostedPredictor, binned, class_edges
from models.features import BOUNDS, FRAUD_FEATURES
from models.pickles import dumps, loads

FEATURES = ("amount", "prior_tx", "merchant_frauds")


def example(rng: random.Random) -> tuple[dict[str, float], bool]:
    x = {name: rng.uniform(*BOUNDS[name]) for name in FEATURES}
    return x, x["amount"] + 2 * x["merchant_frauds"] + rng.gauss(0, 1.5) > 14


def examples(n: int, seed: int = 3) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(seed)
    return [example(rng) for _ in range(n)]


def matrix(rows: list[dict[str, float]]) -> np.ndarray:
    return np.array([[x[name] for name in FEATURES] for x in rows])


@pytest.fixture(scope="module")
def fitted() -> tuple[HistGradientBoostingClassifier, BoostedPredictor, tuple]:
    data = examples(3000)
    inputs = matrix([x for x, _ in data])
    labels = np.array([y for _, y in data])
    edges = class_edges(inputs, labels)
    model = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=9, random_state=0)
    model.fit(binned(inputs, edges), labels)
    return model, BoostedPredictor.fitted(model, FEATURES, edges), edges


def test_the_compiled_trees_on_raw_inputs_give_scikit_learns_probability_on_bins(fitted):
    model, predictor, edges = fitted
    rows = [x for x, _ in examples(500, seed=4)]
    rows += [{name: float(edge) for name in FEATURES} for edge in edges[0][::7]]  # on edges
    expected = model.predict_proba(binned(matrix(rows), edges))[:, 1]
    ours = [predictor.predict_proba_one(x) for x in rows]
    assert np.allclose(ours, expected, rtol=0, atol=1e-12)


def test_each_class_places_half_the_bins():
    rng = np.random.default_rng(0)
    legitimate = rng.normal(4.0, 1.0, size=(20_000, 1))
    frauds = rng.uniform(8.0, 12.0, size=(100, 1))  # past every legitimate amount but a few
    inputs = np.vstack([legitimate, frauds])
    edges = class_edges(inputs, np.r_[np.zeros(20_000), np.ones(100)] > 0)
    overall = np.quantile(inputs, np.linspace(0, 1, 256)[1:-1])  # bins of all examples alike
    assert len(edges[0]) <= 254
    assert np.sum(edges[0] >= 8.0) >= 120 and np.sum(overall >= 8.0) <= 2


def test_contributions_add_up_to_the_logit_and_name_what_drove_it(fitted):
    _, predictor, _ = fitted
    risky = {"amount": 11.5, "prior_tx": 3.0, "merchant_frauds": 4.0}
    probability, parts = predictor.score(risky)
    logit = predictor.expected + sum(part for _, part in parts)
    assert math.isclose(1 / (1 + math.exp(-logit)), probability, rel_tol=1e-9)
    assert {name for name, _ in predictor.explain(risky, k=2)} == {"amount", "merchant_frauds"}


def test_a_snapshot_stores_numbers_and_loads_to_the_same_answers(fitted):
    _, predictor, _ = fitted
    stored = pickle.dumps(predictor)
    assert b"sklearn" not in stored and b"numpy" not in stored
    copied = pickle.loads(stored)
    for x, _ in examples(50, seed=5):
        assert copied.score(x) == predictor.score(x)


def test_the_buffer_is_a_fixed_ring_of_the_latest_examples():
    model = BoostedCandidate(FEATURES, capacity=100)
    data = examples(250)
    sizes = []
    for n, (x, y) in enumerate(data, start=1):
        model.learn_one(x, y, w=float(n))
        if n in (100, 250):
            sizes.append(len(pickle.dumps(model)))
    assert len(model.y) == 100 and len(model.x) == 100 * len(FEATURES)
    assert sorted(model.w) == [float(n) for n in range(151, 251)]  # the oldest went first
    assert sizes[0] == sizes[1]


def test_it_predicts_nothing_until_the_buffer_holds_enough_of_both_classes():
    model = BoostedCandidate(FEATURES, min_positives=5)
    for x, _ in examples(200):
        model.learn_one(x, False)
    model.refit()
    assert model.predict_proba_one(examples(1)[0][0]) == 0.0
    for x, _ in examples(5, seed=6):
        model.learn_one(x, True)
    model.refit()
    assert model.predict_proba_one({"amount": 5.0, "prior_tx": 1.0, "merchant_frauds": 0.0}) > 0


def test_a_corrected_example_leaves_the_buffer():
    model = BoostedCandidate(FEATURES)
    data = examples(300)
    for x, y in data:
        model.learn_one(x, y)
    x, y = data[10]
    assert model.forget_one(x, not y) is False  # never learned with that label
    assert model.forget_one(x, y) is True
    assert model.w[10] == 0.0 and sum(w == 0.0 for w in model.w) == 1
    assert model.forget_one(x, y) is False  # already gone


def test_the_same_examples_give_the_same_trees():
    twins = [BoostedCandidate(FEATURES, iterations=10) for _ in range(2)]
    for model in twins:
        for x, y in examples(1500):
            model.learn_one(x, y)
        model.refit()
    assert twins[0].frozen().trees == twins[1].frozen().trees


def test_the_fraud_candidate_reads_every_fraud_input():
    assert BoostedCandidate().features == FRAUD_FEATURES


def test_a_checkpoint_of_the_candidate_loads_through_the_model_only_unpickler():
    model = BoostedCandidate(FEATURES, iterations=5)
    for x, y in examples(600):
        model.learn_one(x, y)
    model.refit()
    restored = loads(dumps(model))
    for x, _ in examples(20, seed=12):
        assert restored.score(x) == model.score(x)
    assert restored.y == model.y and restored.learned_since_fit == 0


@pytest.mark.parametrize("field", [0, 1, 2])  # split input, threshold, left child
def test_a_forged_snapshot_refuses_to_load_instead_of_running_code(fitted, field):
    _, predictor, _ = fitted
    features, baseline, trees = predictor.__getstate__()
    tree = list(trees[0])
    payload = "0] or ().__class__.__base__.__subclasses__() or row[0"
    tree[field] = (payload, *tree[field][1:])
    tampered = BoostedPredictor.__new__(BoostedPredictor)
    with pytest.raises((ValueError, TypeError)):
        tampered.__setstate__((features, baseline, (tuple(tree), *trees[1:])))
