from __future__ import annotations

import random

import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from models.metrics import Prequential, average_precision, roc_auc

DAY = 86_400.0


def test_metrics_are_sklearns_and_none_with_one_class():
    rng = random.Random(4)
    labels = [rng.random() < 0.2 for _ in range(300)]
    scores = [rng.random() + (0.5 if label else 0.0) for label in labels]
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert average_precision(labels, scores) == pytest.approx(
        average_precision_score(labels, scores)
    )
    assert roc_auc([True, True], [0.1, 0.9]) is None
    assert average_precision([False, False], [0.1, 0.9]) is None
    assert roc_auc([], []) is None


def test_window_forgets_labels_older_than_its_days_in_event_time():
    window = Prequential(window_days=2.0, max_size=100)
    window.add(0.0, True, 0.9)
    window.add(1.0 * DAY, False, 0.1)
    window.add(2.5 * DAY, False, 0.2)
    assert (window.labels, window.positives) == (2, 0)
    window.expire(10 * DAY)
    assert window.labels == 0


def test_window_keeps_at_most_max_size_labels_and_counts_positives_of_what_it_keeps():
    window = Prequential(window_days=30.0, max_size=50)
    for n in range(200):
        window.add(float(n), n % 10 == 0, n / 200)
    assert window.labels == 50
    assert window.positives == 5
    assert window.roc_auc() is not None


def test_a_late_entry_does_not_pull_the_window_back():
    window = Prequential(window_days=1.0, max_size=10)
    window.add(5 * DAY, True, 0.8)
    window.add(3 * DAY, False, 0.3)  # arrives late: older than the window as of 5 days
    assert window.labels == 1
