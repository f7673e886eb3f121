from __future__ import annotations

import json
import random

import pytest

from models.features import fraud_inputs, pd_inputs
from models.learners import (
    ANOMALY_AS_FRAUD,
    DelinquencyLearner,
    FraudLearner,
    LearningConfig,
    noisy_or,
    scorecard_pd,
)


def transaction(rng: random.Random, fraud: bool) -> dict[str, float]:
    amount = rng.lognormvariate(7.0 if fraud else 4.0, 0.5)
    return fraud_inputs({"amount": amount, "hour_of_day": rng.randrange(24)}, 0.0)


def feed(learner: FraudLearner, n: int, seed: int = 3, rate: float = 0.05, start: int = 0):
    rng = random.Random(seed)
    for t in range(start, start + n):
        fraud = rng.random() < rate
        x = transaction(rng, fraud)
        learner.observe(x)
        learner.learn(x, fraud, at=float(t))
    learner.close_day(float(start + n))  # the boosted candidate refits at the day's end


def test_noisy_or():
    assert noisy_or(0.0, 0.0) == 0.0
    assert noisy_or(0.5, 0.5) == 0.75
    assert noisy_or(1.0, 0.2) == 1.0


def test_before_any_label_the_score_is_the_rules_and_the_detector():
    learner = FraudLearner()
    rng = random.Random(1)
    for _ in range(300):
        learner.observe(transaction(rng, False))
    score = learner.scorer("v0").score(transaction(rng, True), rules_score=0.3)
    assert score.model_score is None and score.weight == 0.0 and score.reasons == ()
    assert score.anomaly_score is not None
    unusual = ANOMALY_AS_FRAUD * score.anomaly_score
    assert score.fraud_score == pytest.approx(noisy_or(0.3, unusual))


def test_before_any_label_a_rule_hit_outranks_any_anomaly():
    learner = FraudLearner()
    rng = random.Random(1)
    for _ in range(300):
        learner.observe(transaction(rng, False))
    scorer = learner.scorer("v0")
    odd = fraud_inputs({"amount": 90_000.0, "hour_of_day": 4, "tx_count_1h": 9}, 0.0)
    unusual = scorer.score(odd, rules_score=0.0)
    flagged = scorer.score(transaction(rng, False), rules_score=0.3)
    assert unusual.anomaly_score > 0.9
    assert unusual.fraud_score == pytest.approx(ANOMALY_AS_FRAUD)
    assert unusual.fraud_score < 0.3 <= flagged.fraud_score


def test_during_warm_up_the_model_weighs_its_share_of_the_positives():
    learner = FraudLearner(LearningConfig(warmup_positives=1000))
    feed(learner, 400)
    assert 0 < learner.weight < 1
    score = learner.scorer("v1").score(transaction(random.Random(2), True), rules_score=0.6)
    w = learner.positives / 1000
    assert score.weight == pytest.approx(w)
    assert score.model_score is not None and score.anomaly_score is not None
    unusual = ANOMALY_AS_FRAUD * score.anomaly_score
    expected = noisy_or(w * score.model_score + (1 - w) * 0.6, unusual)
    assert score.fraud_score == pytest.approx(expected)


def test_after_warm_up_the_champion_scores_with_the_detector_and_not_the_rules():
    learner = FraudLearner(LearningConfig(warmup_positives=10))
    feed(learner, 600)
    assert learner.weight == 1.0
    score = learner.scorer("v2").score(transaction(random.Random(2), True), rules_score=0.9)
    assert score.weight == 1.0
    assert score.model_score is not None and score.anomaly_score is not None
    unusual = ANOMALY_AS_FRAUD * score.anomaly_score
    assert score.fraud_score == pytest.approx(noisy_or(score.model_score, unusual))


def test_after_warm_up_the_detector_still_learns_and_ranks_the_unusual_higher():
    learner = FraudLearner(LearningConfig(warmup_positives=10))
    feed(learner, 600)
    assert learner.weight == 1.0
    reference = learner.detector.joint_reference.recent
    before = len(reference)
    learner.observe(transaction(random.Random(3), False))
    assert len(reference) == before + 1  # label delay does not hold it back
    scorer = learner.scorer("v3")
    x = transaction(random.Random(4), False)
    odd = dict(x, tx_count_1h=5.0, merchants_1h=4.0, new_device=1.0, new_city=1.0)
    usual, unusual = scorer.score(x, 0.0), scorer.score(odd, 0.0)
    assert unusual.anomaly_score > usual.anomaly_score
    assert unusual.model_score is not None
    assert unusual.fraud_score > noisy_or(unusual.model_score, 0.0)  # the detector counts


def test_learning_is_prequential_the_window_holds_the_prediction_made_before_learning():
    learner = FraudLearner()
    x = transaction(random.Random(4), True)
    untrained = learner.candidates["logistic"].predict_proba_one(x)
    learner.learn(x, True, at=10.0)
    assert learner.windows["logistic"]._entries[0] == (10.0, True, untrained)
    assert learner.candidates["logistic"].predict_proba_one(x) > untrained
    assert (learner.labels, learner.positives) == (1, 1)


def test_a_scorer_is_a_snapshot_later_learning_does_not_reach_it():
    learner = FraudLearner(LearningConfig(warmup_positives=5))
    feed(learner, 400)
    scorer = learner.scorer("v3")
    x = transaction(random.Random(5), True)
    before = scorer.score(x, 0.0)
    for t in range(200):
        learner.learn(x, False, at=1000.0 + t)
    learner.close_day(1200.0)
    assert scorer.score(x, 0.0) == before
    assert learner.scorer("v4").score(x, 0.0).fraud_score < before.fraud_score
    assert scorer.version == "v3"


def test_the_weight_of_a_label_counts():
    heavy, light = FraudLearner(), FraudLearner()
    x = transaction(random.Random(6), True)
    heavy.learn(x, True, at=1.0, weight=5.0)
    light.learn(x, True, at=1.0, weight=0.5)
    p_heavy = heavy.candidates["logistic"].predict_proba_one(x)
    assert p_heavy > light.candidates["logistic"].predict_proba_one(x)
    assert heavy.positives == light.positives == 1  # weights are not counted


def test_status_is_json_ready_and_names_the_champion():
    learner = FraudLearner(LearningConfig(warmup_positives=5))
    feed(learner, 500)
    status = json.loads(json.dumps(learner.status()))
    assert status["champion"] == "boosted" == next(iter(status["candidates"]))
    assert status["candidates"]["boosted"]["role"] == "champion"
    assert {c["role"] for c in status["candidates"].values()} == {"champion", "challenger"}
    assert all(c["window_labels"] == 500 for c in status["candidates"].values())
    assert 0.5 < status["candidates"]["binned"]["roc_auc"] <= 1.0
    assert status["promotions"] == []


def test_reasons_name_what_raised_a_fraud_score():
    learner = FraudLearner(LearningConfig(warmup_positives=5))
    feed(learner, 800, rate=0.1)
    big = learner.scorer("v5").score(fraud_inputs({"amount": 5000.0}, 0.0), 0.0)
    assert big.reasons and big.reasons[0]["code"] == "LARGE_AMOUNT"
    assert big.reasons[0]["text"] == "amount is 5,000 yuan"


def test_an_accounts_recent_peak_lifts_its_next_transactions_and_leads_their_reasons():
    learner = FraudLearner(LearningConfig(warmup_positives=5))
    feed(learner, 800, rate=0.1)
    scorer = learner.scorer("v5")
    plain = {"amount": 40.0, "hour_of_day": 14}
    alone = scorer.score(fraud_inputs(plain, 0.0), 0.0)
    in_a_run = scorer.score(fraud_inputs({**plain, "peak_fraud_score": 0.7}, 0.0), 0.0)
    assert alone.fraud_score < 0.7
    assert in_a_run.fraud_score == pytest.approx(noisy_or(alone.fraud_score, 0.7), abs=0.05)
    assert in_a_run.reasons[0]["code"] == "RECENT_HIGH_SCORE"
    assert [r["code"] for r in in_a_run.reasons].count("RECENT_HIGH_SCORE") == 1
    assert len(in_a_run.reasons) <= 3
    big = scorer.score(fraud_inputs({"amount": 5000.0, "peak_fraud_score": 0.01}, 0.0), 0.0)
    assert big.reasons[0]["code"] == "LARGE_AMOUNT"  # the peak leads only when it counts more


def bill(dpd: float, late_share: float, outstanding: int) -> dict[str, float]:
    return pd_inputs(
        {
            "credit_limit": 5000.0,
            "apr": 0.18,
            "utilisation": 0.4,
            "days_past_due": dpd,
            "overdue_installments": int(dpd > 0),
            "outstanding_installments": outstanding,
            "settled_installments": 4,
            "settled_late": round(4 * late_share),
            "amount_owed": 500.0 * outstanding,
        }
    )


def test_pd_starts_from_the_scorecard_and_hands_over_to_the_learned_model():
    learner = DelinquencyLearner(LearningConfig(warmup_positives=20))
    good, bad = bill(0, 0.0, 0), bill(12, 0.75, 2)
    scorer = learner.scorer("pd0")
    assert scorer.pd(good) == pytest.approx(scorecard_pd(good))
    assert scorer.pd(bad) > scorer.pd(good)
    rng = random.Random(8)
    for t in range(3000):
        defaulted = rng.random() < 0.1
        learner.learn(bad if defaulted else good, defaulted, at=float(t))
    assert learner.weight == 1.0
    learned = learner.scorer("pd1")
    assert learned.pd(bad) > 0.9 > 0.1 > learned.pd(good)
    assert learner.status()["roc_auc"] == pytest.approx(1.0)
