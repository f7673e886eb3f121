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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from river import anomaly

from models.compiled import walk_of
from models.features import FRAUD_INPUTS, values_of

__all__ = ["FRAUD_LIMITS", "AnomalyDetector", "FrozenDetector"]

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
        return _against(self._sorted, raw, self.top_share)

    def frozen(self) -> FrozenDetector:
        """A copy that only scores, exactly as this one does now."""
        return FrozenDetector(self)

    def _remember(self, raw: float) -> None:
        self._recent.append(raw)
        insort(self._sorted, raw)
        if len(self._recent) > self.reference_size:
            old = self._recent.popleft()
            del self._sorted[bisect_left(self._sorted, old)]

    def _row(self, x: Mapping[str, float]) -> dict[str, float]:
        return {name: x[name] for name in self.features}


def _against(reference: Sequence[float], raw: float, top_share: float) -> float:
    """A raw score read against the sorted reference scores (see the module's docstring)."""
    lower = bisect_left(reference, raw) + bisect_right(reference, raw)
    share = lower / (2 * len(reference))  # ties count half
    return share ** (math.log(0.5) / math.log(1 - top_share))


class FrozenDetector:
    """The scoring half of an ``AnomalyDetector``, flattened, for the model snapshots.

    River's trees are objects, one per node: unpickling a snapshot's 25 trees took a
    worker about 25 ms per model version, and walking them most of the detector's cost.
    Here each tree is three lists in heap order (node ``i`` has children ``2i + 1`` and
    ``2i + 2``): the split's input, its threshold, and the node's mass in the reference
    window. That is what a snapshot stores. On loading, each tree becomes its paths:
    where ``HalfSpaceTrees.score_one`` stops (a node of too little mass, or the bottom)
    and the score it has summed by then, so a walk is only the comparisons (24 µs per
    transaction before, 11 µs after), and the paths of all trees become one expression
    of nested comparisons (``_walker``: 4 µs where a loop over the lists took 15, on the
    same machine). The result is read as ``AnomalyDetector.score_one`` reads it.
    """

    def __init__(self, detector: AnomalyDetector) -> None:
        model = detector.model
        self.features = detector.features
        self.top_share = detector.top_share
        self.height = model.height
        self.size_limit = model.size_limit
        self.max_score = model._max_score
        self.reference = tuple(detector._sorted)
        index = {name: position for position, name in enumerate(self.features)}
        self.trees = tuple(_flatten(tree, index) for tree in model.trees)
        self._compile()

    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if name not in _COMPILED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._compile()

    def _compile(self) -> None:
        paths = [_stops(tree, self.height, self.size_limit) for tree in self.trees]
        self.walk = _walker(paths)
        self.row = values_of(self.features)

    def score_one(self, x: Mapping[str, float]) -> float:
        """The same value as the detector it was made from gives for ``x``."""
        if not self.reference:
            return 0.0
        total = self.walk(self.row(x))
        return _against(self.reference, 1 - total / self.max_score, self.top_share)


_COMPILED = ("walk", "row")  # rebuilt from the trees on loading, never stored


def _walker(paths: Sequence[_Paths]) -> Callable[[Sequence[float]], float]:
    """Every tree's walk as one Python expression: the sum, tree by tree, of nested
    ``(left if row[split] < threshold else right)`` down to each path's score.

    Built only from ints and floats (``repr`` of a float is exact), so evaluating it
    runs nothing a snapshot could smuggle in.
    """
    return walk_of(" + ".join(_expression(path, 0) for path in paths) or "0.0")


def _expression(path: _Paths, node: int) -> str:
    splits, thresholds, scores = path
    split = int(splits[node])
    if split < 0:
        return repr(float(scores[node]))
    left, right = _expression(path, 2 * node + 1), _expression(path, 2 * node + 2)
    return f"({left} if row[{split}] < {float(thresholds[node])!r} else {right})"


_Paths = tuple[list[int], list[float], list[float]]  # split input (-1: stop), threshold, score


def _stops(tree: _FlatTree, height: int, size_limit: float) -> _Paths:
    """Where a walk of ``tree`` stops, and the score it has summed there.

    The walk adds each node's mass times ``2 ** depth`` and stops below ``size_limit``
    or at the bottom; nodes under a stop are never reached and keep a score of 0.
    """
    features, thresholds, masses = tree
    splits, scores = list(features), [0.0] * len(masses)
    above = {0: 0.0}  # node -> score summed by its ancestors, for the nodes reached
    for node in range(len(masses)):
        if node not in above:
            splits[node] = -1
            continue
        depth = (node + 1).bit_length() - 1
        scores[node] = above.pop(node) + masses[node] * (1 << depth)
        if depth == height or masses[node] < size_limit:
            splits[node] = -1
        else:
            above[2 * node + 1] = above[2 * node + 2] = scores[node]
    return splits, list(thresholds), scores


_FlatTree = tuple[list[int], list[float], list[float]]


def _flatten(root: Any, index: Mapping[str, int]) -> _FlatTree:
    """A padded tree (full to its height) as heap-ordered lists; leaves split on nothing."""
    features: list[int] = []
    thresholds: list[float] = []
    masses: list[float] = []
    level = [root]
    while level:
        for node in level:
            leaf = not getattr(node, "children", None)
            features.append(-1 if leaf else index[node.feature])
            thresholds.append(0.0 if leaf else float(node.threshold))
            masses.append(float(node.r_mass))
        level = [child for node in level for child in getattr(node, "children", ())]
    return features, thresholds, masses
