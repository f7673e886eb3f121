"""Exact ranking metrics and the bounded event-time window they are measured over.

The figures are scikit-learn's (``roc_auc_score``, ``average_precision_score``); this
module only says what happens when they are undefined (one class only: ``None``) and
keeps the prequential record small: at most ``max_size`` labels, none older than
``window_days`` before the newest.

>>> roc_auc([False, True, False, True], [0.1, 0.9, 0.2, 0.8])
1.0
>>> roc_auc([False, False], [0.1, 0.2]) is None
True
>>> window = Prequential(window_days=1.0, max_size=3)
>>> for at, label, score in [(0, True, 0.9), (10, False, 0.2), (20, False, 0.3), (30, True, 0.7)]:
...     window.add(at, label, score)
>>> window.labels, window.positives, window.average_precision()
(3, 1, 1.0)
>>> window.add(86_400 + 25, False, 0.1)
>>> window.labels, window.positives
(2, 1)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
from sklearn import config_context
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = ["Prequential", "average_precision", "roc_auc"]

DAY_SECONDS = 86_400.0


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve; None unless both classes are present."""
    return _figure(roc_auc_score, labels, scores)


def average_precision(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Average precision (area under the precision-recall curve, step-wise); None with
    no positive or no negative."""
    return _figure(average_precision_score, labels, scores)


def _figure(
    metric: Callable[[np.ndarray, np.ndarray], float],
    labels: Sequence[bool],
    scores: Sequence[float],
) -> float | None:
    """scikit-learn's ``metric``, or None unless both classes are present.

    scikit-learn reads arrays faster than lists, and its checks of its arguments' types
    are skipped, since these always pass them (2,500 labels: 8 ms for both figures from
    lists, 5.2 from arrays, 4.0 without the checks; a trainer works them out for every
    candidate at each closed day).
    """
    y = np.fromiter(labels, dtype=bool, count=len(labels))
    if not 0 < np.count_nonzero(y) < len(y):
        return None
    with config_context(skip_parameter_validation=True):
        return float(metric(y, np.fromiter(scores, dtype=float, count=len(scores))))


class Prequential:
    """The last ``window_days`` (event time) of (at, label, score), at most ``max_size``.

    Entries come in roughly time order; anything older than ``window_days`` before the
    newest time seen is dropped, and so is the oldest entry past ``max_size``.
    """

    def __init__(self, window_days: float = 30.0, max_size: int = 20_000) -> None:
        self.window_days = window_days
        self.max_size = max_size
        self._entries: deque[tuple[float, bool, float]] = deque()
        self._positives = 0
        self._newest = float("-inf")

    @property
    def labels(self) -> int:
        return len(self._entries)

    @property
    def positives(self) -> int:
        return self._positives

    def add(self, at: float, label: bool, score: float) -> None:
        """Record one prediction made before its label was learned (ignored if already
        older than the window)."""
        self.expire(at)
        if at < self._newest - self.window_days * DAY_SECONDS:
            return
        self._entries.append((at, bool(label), float(score)))
        self._positives += bool(label)
        if len(self._entries) > self.max_size:
            self._drop_oldest()

    def expire(self, now: float) -> None:
        """Forget the entries older than the window as of ``now`` (event time)."""
        self._newest = max(self._newest, now)
        horizon = self._newest - self.window_days * DAY_SECONDS
        while self._entries and self._entries[0][0] < horizon:
            self._drop_oldest()

    def roc_auc(self) -> float | None:
        labels, scores = self._columns()
        return roc_auc(labels, scores)

    def average_precision(self) -> float | None:
        labels, scores = self._columns()
        return average_precision(labels, scores)

    def _drop_oldest(self) -> None:
        self._positives -= self._entries.popleft()[1]

    def _columns(self) -> tuple[list[bool], list[float]]:
        return [entry[1] for entry in self._entries], [entry[2] for entry in self._entries]
