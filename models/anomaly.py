"""The unsupervised detector that scores transactions before enough frauds are known.

River's ``HalfSpaceTrees`` over the fraud inputs, with each input's range fixed by its
bounds in ``models.features`` rather than learned, so the trees are built from the very
first transaction and never need rescaling. It learns every transaction it observes.

The trees' raw score is not a probability: most transactions score around one half. So
``score_one`` reads it against the raw scores of the last ``reference_size`` observed
transactions: with ``q`` the share of them that scored lower, the score is
``q ** (log 0.5 / log(1 - top_share))``, which is one half at the top ``top_share``
(1%) of recent traffic, about 0 for the typical transaction and near 1 for the most
unusual. That puts it on the same footing as a fraud probability at a fraud rate of
about 1%, so the fallback and the supervised model can be mixed.

>>> import random
>>> rng = random.Random(3)
>>> detector = AnomalyDetector(features=("a", "b"), limits={"a": (0, 1), "b": (0, 1)})
>>> for _ in range(1000):
...     detector.learn_one({"a": rng.uniform(0.4, 0.6), "b": rng.uniform(0.4, 0.6)})
>>> odd = detector.score_one({"a": 0.98, "b": 0.02})
>>> usual = detector.score_one({"a": 0.5, "b": 0.5})
>>> odd > 0.9 > 0.1 > usual
True
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Mapping, Sequence

from river import anomaly

from models.features import FRAUD_INPUTS

__all__ = ["FRAUD_LIMITS", "AnomalyDetector"]

FRAUD_LIMITS: dict[str, tuple[float, float]] = {
    spec.name: (spec.low, spec.high) for spec in FRAUD_INPUTS
}


class AnomalyDetector:
    """Half-space trees over inputs with fixed limits; ``score_one`` is in [0, 1]."""

    def __init__(
        self,
        features: Sequence[str] = tuple(FRAUD_LIMITS),
        limits: Mapping[str, tuple[float, float]] = FRAUD_LIMITS,
        n_trees: int = 25,
        height: int = 7,
        window_size: int = 250,
        reference_size: int = 2_000,
        top_share: float = 0.01,
        seed: int = 7,
    ) -> None:
        self.features = tuple(features)
        self.limits = dict(limits)
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.reference_size = reference_size
        self.top_share = top_share
        self.seed = seed
        self.model = anomaly.HalfSpaceTrees(
            n_trees=n_trees,
            height=height,
            window_size=window_size,
            limits={name: self.limits[name] for name in self.features},
            seed=seed,
        )
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []

    def learn_one(self, x: Mapping[str, float]) -> None:
        row = self._row(x)
        raw = float(self.model.score_one(row))
        if raw > 0:  # the trees score 0 until their first reference window is full
            self._remember(raw)
        self.model.learn_one(row)

    def score_one(self, x: Mapping[str, float]) -> float:
        """How unusual ``x`` is against recent traffic: about 0 typical, 0.5 at the top 1%."""
        if not self._sorted:
            return 0.0
        raw = float(self.model.score_one(self._row(x)))
        lower = bisect_left(self._sorted, raw) + bisect_right(self._sorted, raw)
        share = lower / (2 * len(self._sorted))  # ties count half
        return share ** (math.log(0.5) / math.log(1 - self.top_share))

    def _remember(self, raw: float) -> None:
        self._recent.append(raw)
        insort(self._sorted, raw)
        if len(self._recent) > self.reference_size:
            old = self._recent.popleft()
            del self._sorted[bisect_left(self._sorted, old)]

    def _row(self, x: Mapping[str, float]) -> dict[str, float]:
        return {name: x[name] for name in self.features}
