"""The anomaly detector's two views: the trees over all inputs, and each input's tail."""

from __future__ import annotations

import pickle
import random

import pytest

from models import pickles
from models.anomaly import TAIL_STEP, AnomalyDetector, Tails
from models.features import fraud_inputs


def usual_transaction(rng: random.Random, amount: float | None = None) -> dict[str, float]:
    amount = amount or rng.lognormvariate(3.5, 0.5)
    facts = {
        "amount": amount,
        "amount_ratio": amount / 33.0,  # against the account's typical amount, e ** 3.5
        "tx_count_1h": rng.randint(1, 3),
        "hour_of_day": rng.randrange(24),
        "seconds_since_prev_tx": rng.uniform(3_600, 200_000),
        "credit_limit": 5000.0,
        "balance": rng.uniform(0, 2000),
    }
    return fraud_inputs(facts, 0.0)


def trained(rng: random.Random, rows: int = 1500) -> AnomalyDetector:
    detector = AnomalyDetector(window_size=250, reference_size=1000, tail_size=1000)
    for _ in range(rows):
        detector.learn_one(usual_transaction(rng))
    return detector


def test_an_amount_past_every_recent_one_ranks_above_all_usual_traffic():
    """The case the trees alone missed: an amount far out, the rest of the habits usual."""
    rng = random.Random(4)
    detector = trained(rng)
    usual = [detector.score_one(usual_transaction(rng)) for _ in range(500)]
    large = usual_transaction(rng, amount=1_100.0)
    assert detector.score_one(large) > max(usual)


def test_each_input_adds_how_far_out_in_its_tail_the_value_lies():
    tails = Tails(("a", "b"), size=256, refresh=256)
    for n in range(256):
        tails.learn_one((float(n), 0.0))
    assert tails.raw((0.0, 0.0)) == 0.0  # the least usual of nothing
    assert tails.raw((128.5, 0.0)) == pytest.approx(2 * TAIL_STEP)  # the top half: 1 bit
    top = tails.raw((255.5, 0.0))
    assert top == pytest.approx(16 * TAIL_STEP)  # past all 16 edges: the top 1/256
    assert tails.raw((255.5, 1.0)) == pytest.approx(2 * top)  # a value "b" never had


def test_an_input_whose_low_values_are_unusual_counts_its_low_tail():
    tails = Tails(("days_since",), size=64, refresh=64, lower_is_unusual=frozenset({"days_since"}))
    for n in range(64):
        tails.learn_one((float(n),))
    assert tails.raw((-1.0,)) > tails.raw((10.0,)) > tails.raw((60.0,)) == 0.0


def test_the_tail_edges_move_with_traffic_only_at_each_refresh():
    tails = Tails(("a",), size=100, refresh=50)
    for _ in range(100):
        tails.learn_one((1.0,))
    assert tails.raw((2.0,)) > 0
    for _ in range(49):
        tails.learn_one((2.0,))
    assert tails.raw((2.0,)) > 0  # the edges are those of the last refresh
    tails.learn_one((2.0,))
    assert tails.raw((2.0,)) == TAIL_STEP  # now half the window is 2.0: past 1/sqrt(2) only


def test_a_pickled_detector_learns_on_exactly_as_the_one_it_was_taken_from():
    rng = random.Random(5)
    detector = trained(rng, rows=1200)
    copy = pickle.loads(pickle.dumps(detector))
    later = [usual_transaction(rng) for _ in range(600)]
    for x in later:
        detector.learn_one(x)
        copy.learn_one(x)
    probes = [usual_transaction(rng) for _ in range(50)]
    assert [copy.score_one(x) for x in probes] == [detector.score_one(x) for x in probes]


def test_a_detector_snapshot_of_an_older_layout_fails_to_load_rather_than_to_score():
    old = trained(random.Random(6), rows=600).frozen()
    for name in ("tail_edges", "tail_lower", "tail_reference"):
        delattr(old, name)  # what a snapshot of a detector without the tails view holds
    with pytest.raises(ValueError, match="tail_edges"):
        pickles.loads(pickles.dumps(old))
