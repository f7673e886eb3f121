from __future__ import annotations

import math
import random

import pytest

from duoli.errors import ConfigError
from models.candidates import LogisticCandidate, TreeCandidate, sigmoid
from models.metrics import roc_auc

FEATURES = ("amount", "prior_tx", "new_device")


def stream(n: int, seed: int, label):
    rng = random.Random(seed)
    for _ in range(n):
        x = {
            "amount": rng.uniform(0, 12),
            "prior_tx": rng.uniform(0, 10),
            "new_device": float(rng.random() < 0.1),
        }
        yield x, label(x)


def trained(model, label, n=4000, seed=1):
    for x, y in stream(n, seed, label):
        model.learn_one(x, y)
    return model


def auc_of(model, label, seed=99):
    pairs = list(stream(2000, seed, label))
    return roc_auc([y for _, y in pairs], [model.predict_proba_one(x) for x, _ in pairs])


def large(x):
    return x["amount"] > 9


def band(x):
    return 4 < x["amount"] < 7


def test_logistic_ranks_by_what_drives_the_label_and_says_so():
    model = trained(LogisticCandidate(FEATURES, learning_rate=0.05, positive_weight=1), large)
    assert auc_of(model, large) > 0.97
    risky = {"amount": 11.5, "prior_tx": 3.0, "new_device": 0.0}
    assert model.explain(risky, k=1)[0][0] == "amount"


def test_bins_learn_a_curve_that_a_slope_cannot():
    plain = trained(LogisticCandidate(FEATURES, learning_rate=0.05, positive_weight=1), band)
    binned = trained(
        LogisticCandidate(FEATURES, bins=12, learning_rate=0.05, positive_weight=1), band
    )
    assert auc_of(plain, band) < 0.7
    assert auc_of(binned, band) > 0.95


def test_contributions_add_up_to_the_logit():
    model = trained(LogisticCandidate(FEATURES, bins=6, learning_rate=0.05), large)
    frozen = model.frozen()
    x = {"amount": 10.0, "prior_tx": 1.0, "new_device": 1.0}
    probability, parts = frozen.score(x)
    assert [name for name, _ in parts] == list(FEATURES)
    assert probability == pytest.approx(sigmoid(frozen.intercept + sum(p for _, p in parts)))
    assert probability == pytest.approx(model.predict_proba_one(x), abs=1e-12)


def test_positive_weight_raises_the_probabilities_of_rare_positives():
    def rare(x):
        return x["amount"] > 11.5

    light = trained(LogisticCandidate(FEATURES, learning_rate=0.02, positive_weight=1), rare)
    heavy = trained(LogisticCandidate(FEATURES, learning_rate=0.02, positive_weight=20), rare)
    x = {"amount": 11.8, "prior_tx": 5.0, "new_device": 0.0}
    assert heavy.predict_proba_one(x) > light.predict_proba_one(x)


def test_frozen_predictor_is_not_moved_by_later_learning():
    model = trained(LogisticCandidate(FEATURES, learning_rate=0.05), large)
    frozen = model.frozen()
    x = {"amount": 10.5, "prior_tx": 2.0, "new_device": 0.0}
    before = frozen.predict_proba_one(x)
    for _ in range(300):
        model.learn_one(x, False)
    assert frozen.predict_proba_one(x) == before > model.predict_proba_one(x)


def test_tree_learns_a_threshold_and_credits_the_split_feature():
    model = trained(TreeCandidate(FEATURES, grace_period=100, positive_weight=1), large, n=6000)
    assert auc_of(model, large) > 0.95
    risky = {"amount": 11.0, "prior_tx": 5.0, "new_device": 0.0}
    name, contribution = model.explain(risky, k=1)[0]
    assert name == "amount" and contribution > 0
    frozen = model.frozen()
    assert frozen.predict_proba_one(risky) == model.predict_proba_one(risky)
    assert math.isfinite(frozen.score(risky)[0])


def test_an_untrained_candidate_is_undecided_and_explains_nothing_away():
    x = {"amount": 5.0, "prior_tx": 5.0, "new_device": 0.0}
    other = {"amount": 11.0, "prior_tx": 0.0, "new_device": 1.0}
    model = LogisticCandidate(FEATURES, positive_weight=1)
    assert model.predict_proba_one(x) == model.predict_proba_one(other) == 0.5
    assert TreeCandidate(FEATURES).explain(x) == []


def test_a_nearly_constant_input_does_not_take_over_a_bounds_scaled_model():
    """A book without credit lines: every limit is the default, a few were cut once. A
    running scaler divides those few by a tiny deviation; fixed bounds keep them small."""
    rng = random.Random(4)

    def example():
        limit = 3.6 if rng.random() < 0.02 else 3.7
        x = {"amount": rng.uniform(0, 12), "log_credit_limit": limit}
        return x, x["amount"] > 10 or rng.random() < 0.01

    features = ("amount", "log_credit_limit")
    running = LogisticCandidate(features, bins=10)
    bounded = LogisticCandidate(features, bins=10, scaling="bounds", optimizer="adam")
    for _ in range(6000):
        x, y = example()
        running.learn_one(x, y)
        bounded.learn_one(x, y)
    pairs = [example() for _ in range(3000)]
    assert auc_on(bounded, pairs) > 0.95

    def lift(model):
        cut, kept = (
            {"amount": 2.0, "log_credit_limit": 3.6},
            {"amount": 2.0, "log_credit_limit": 3.7},
        )
        return model.predict_proba_one(cut) / model.predict_proba_one(kept)

    assert lift(running) > 1.3 and abs(lift(bounded) - 1) < 0.05


def auc_on(model, pairs):
    return roc_auc([y for _, y in pairs], [model.predict_proba_one(x) for x, _ in pairs])


def test_scaling_and_optimizer_are_checked():
    with pytest.raises(ConfigError, match="scaling"):
        LogisticCandidate(FEATURES, scaling="minmax")
    with pytest.raises(ConfigError, match="optimizer"):
        LogisticCandidate(FEATURES, optimizer="lbfgs")


@pytest.mark.parametrize(
    "make",
    [
        lambda: LogisticCandidate(FEATURES, bins=6, scaling="bounds", optimizer="adam"),
        lambda: TreeCandidate(FEATURES, grace_period=100),
    ],
)
def test_a_probability_reads_at_the_true_rate_whatever_the_positive_weight(make):
    """Positives weigh 20 (or 5) times when learning, not when the score is read: about a
    third of large amounts are fraud here, and the model says about a third, not 90%."""
    rng = random.Random(8)
    model = make()
    for x, _ in stream(20_000, 2, large):
        model.learn_one(x, large(x) and rng.random() < 1 / 3)
    risky = {"amount": 10.5, "prior_tx": 5.0, "new_device": 0.0}
    calm = {"amount": 3.0, "prior_tx": 5.0, "new_device": 0.0}
    assert 0.2 < model.predict_proba_one(risky) < 0.5
    assert model.predict_proba_one(calm) < 0.05
    assert model.frozen().predict_proba_one(risky) == pytest.approx(model.predict_proba_one(risky))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_monotone_input_never_lowers_a_score_whatever_the_labels_so_far(optimizer):
    """Delayed labels: the merchant's frauds are known, the frauds of its latest customers
    not yet, so only legitimate transactions at a risky merchant have been learned."""
    rng = random.Random(8)
    features = ("amount", "merchant_fraud_rate", "days_since_account_fraud")

    def example():
        fraud = rng.random() < 0.05
        risky = not fraud and rng.random() < 0.2
        x = {
            "amount": rng.uniform(9, 12) if fraud else rng.uniform(0, 10),
            "merchant_fraud_rate": rng.uniform(4, 7) if risky else 0.0,
            "days_since_account_fraud": rng.uniform(0, 2) if risky else 6.0,
        }
        return x, fraud

    def make(monotone):
        return LogisticCandidate(
            features, bins=10, scaling="bounds", optimizer=optimizer, monotone=monotone
        )

    free = make(None)
    held = make({"merchant_fraud_rate": 1, "days_since_account_fraud": -1})
    for _ in range(5000):
        x, y = example()
        free.learn_one(x, y)
        held.learn_one(x, y)

    def lift(model):
        calm = {"amount": 10.0, "merchant_fraud_rate": 0.0, "days_since_account_fraud": 6.0}
        risky = {"amount": 10.0, "merchant_fraud_rate": 6.0, "days_since_account_fraud": 0.5}
        return model.predict_proba_one(risky) / model.predict_proba_one(calm)

    assert lift(free) < 0.8 and lift(held) >= 1.0
    frozen = held.frozen()
    rising, falling = frozen.bin_weights[1], frozen.bin_weights[2]
    assert list(rising) == sorted(rising) and list(falling) == sorted(falling, reverse=True)
    for x, _ in (example() for _ in range(200)):
        assert frozen.predict_proba_one(x) == pytest.approx(held.predict_proba_one(x), abs=1e-12)
