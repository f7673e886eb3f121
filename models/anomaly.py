"""The unsupervised detector that scores transactions before enough frauds are known.

Two views of the fraud inputs, each learned from every transaction observed:

- **joint**: River's ``HalfSpaceTrees``, with each input's range fixed by its bounds in
  ``models.features`` rather than learned, so the trees are built from the very first
  transaction and never need rescaling. They find transactions in a sparse region of
  the inputs taken together (a new device, at night, at a new merchant);
- **tails** (``Tails``): how far out in each input's own tail the transaction lies
  among the last ``tail_size`` transactions, summed over the inputs, as in COPOD (Li et
  al., 2020, "COPOD: Copula-Based Outlier Detection"). It finds a value far past the usual
  on one or a few inputs (an amount above every recent one), which the trees' random
  splits over 46 inputs rarely isolate.

Neither raw score is a probability. So each is read against the raw scores of the last
``reference_size`` observed transactions: with ``q`` the share of them that scored lower,
the view's score is ``q ** (log 0.5 / log(1 - top_share))``, one half at the top
``top_share`` (1%) of recent traffic, about 0 for the typical transaction and near 1 for
the most unusual. ``score_one`` is the mean of the two views. That puts it on the same
footing as a fraud probability at a fraud rate of about 1%, so the fallback and the
supervised model can be mixed.

Measured on ``duoli eval`` histories replayed in one process (the detector alone, ROC
AUC / average precision): trees 0.80 / 0.11, tails 0.85 / 0.17, mean 0.83 / 0.22 on the
sparse stream; trees 0.91 / 0.19, tails 0.88 / 0.21, mean 0.92 / 0.26 on the default
book. The trees lead on card testing (many small payments), the tails on large amounts.

>>> import random
>>> rng = random.Random(3)
>>> limits = {"a": (0, 1), "b": (0, 1)}
>>> detector = AnomalyDetector(features=("a", "b"), limits=limits, tail_size=500)
>>> for _ in range(1000):
...     detector.learn_one({"a": rng.uniform(0.4, 0.6), "b": rng.uniform(0.4, 0.6)})
>>> odd = detector.score_one({"a": 0.98, "b": 0.02})
>>> usual = detector.score_one({"a": 0.5, "b": 0.5})
>>> odd > 0.6 > 0.1 > usual
True
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from river import anomaly

from models.compiled import walk_of
from models.features import FRAUD_INPUTS, values_of

__all__ = ["FRAUD_LIMITS", "LOWER_IS_UNUSUAL", "AnomalyDetector", "FrozenDetector", "Tails"]

FRAUD_LIMITS: dict[str, tuple[float, float]] = {
    spec.name: (spec.low, spec.high) for spec in FRAUD_INPUTS
}
# Inputs whose low values are the unusual ones: evidence that can only lower the risk
# when it grows (days since the account's last fraud); every other input's tail is high.
LOWER_IS_UNUSUAL = frozenset(spec.name for spec in FRAUD_INPUTS if spec.monotone < 0)
TAIL_STEP = 0.5 * math.log(2)  # each edge halves the share above it twice over: sqrt(2)


class Reference:
    """The last ``size`` raw scores, sorted, to read a new raw score against."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.recent: deque[float] = deque()
        self.sorted: list[float] = []

    def remember(self, raw: float) -> None:
        self.recent.append(raw)
        insort(self.sorted, raw)
        if len(self.recent) > self.size:
            del self.sorted[bisect_left(self.sorted, self.recent.popleft())]


class Tails:
    """Each input's recent values, and edges in its tail: ``raw`` is ``TAIL_STEP`` times
    the number of edges a row's values lie past, summed over the inputs.

    An input's edges are its values that a share 1/sqrt(2), 1/2, 1/(2 sqrt(2)), ... down
    to 1/``size`` of the window lies at or above: a value past ``k`` of them lies in about
    the top ``2 ** (-k / 2)`` of recent traffic, and adds ``-log`` of that share. A usual
    value adds about 0; a value never seen before adds the most. Inputs in
    ``lower_is_unusual`` count their low tail. The edges are worked out again every
    ``refresh`` rows learned, so that scoring is a bisection per input, and a frozen copy
    scores exactly as the learner did when it was frozen.

    >>> tails = Tails(("a",), size=64, refresh=64)
    >>> for n in range(64):
    ...     tails.learn_one((float(n),))
    >>> [round(tails.raw((v,)) / TAIL_STEP) for v in (-1.0, 31.0, 50.0, 63.0, 99.0)]
    [0, 1, 4, 11, 12]
    """

    def __init__(
        self, features: Sequence[str], size: int = 2_000, refresh: int = 250,
        lower_is_unusual: frozenset[str] = LOWER_IS_UNUSUAL,
    ) -> None:  # fmt: skip
        self.lower = tuple(i for i, name in enumerate(features) if name in lower_is_unusual)
        self.size = size
        self.refresh = refresh
        self.shares = tuple(2 ** (-k / 2) for k in range(1, int(2 * math.log2(size)) + 1))
        self.rows: deque[tuple[float, ...]] = deque(maxlen=size)
        self.edges: tuple[tuple[float, ...], ...] = ()
        self._since_refresh = 0

    @property
    def ready(self) -> bool:
        return bool(self.edges)

    def raw(self, values: Sequence[float]) -> float:
        return tail_raw(self.edges, self.lower, values)

    def learn_one(self, values: Sequence[float]) -> None:
        self.rows.append(tuple(_lower_negated(values, self.lower)))
        self._since_refresh += 1
        if self._since_refresh >= self.refresh:
            self._since_refresh = 0
            self.edges = self._edges()

    def _edges(self) -> tuple[tuple[float, ...], ...]:
        """Every input's edges, from the window sorted column by column: one numpy sort
        per refresh (about 2 ms) where keeping each column sorted row by row cost the
        trainer 150 µs per transaction (``make bench``, model learning)."""
        columns = np.sort(np.array(self.rows, dtype=float), axis=0)
        n = len(columns)
        picks = [n - math.ceil(share * n) for share in self.shares]
        return tuple(map(tuple, columns[picks].T.tolist()))


def tail_raw(
    edges: Sequence[Sequence[float]], lower: Sequence[int], values: Sequence[float]
) -> float:
    """``Tails.raw`` for given edges: how many edges each value lies past, where the
    inputs at the ``lower`` positions count negated."""
    if not edges:  # nothing learned yet
        return 0.0
    if len(values) != len(edges):
        raise ValueError(f"{len(values)} values for {len(edges)} inputs")
    return TAIL_STEP * sum(map(bisect_left, edges, _lower_negated(values, lower)))


def _lower_negated(values: Sequence[float], lower: Sequence[int]) -> Sequence[float]:
    """``values`` with those at the ``lower`` positions negated, so every tail is high."""
    if not lower:
        return values
    flipped = list(values)
    for index in lower:
        flipped[index] = -flipped[index]
    return flipped


class AnomalyDetector:
    """The joint and the tails view over inputs with fixed limits; ``score_one`` is in [0, 1]."""

    def __init__(
        self,
        features: Sequence[str] = tuple(FRAUD_LIMITS),
        limits: Mapping[str, tuple[float, float]] = FRAUD_LIMITS,
        n_trees: int = 25,
        height: int = 7,
        window_size: int = 250,
        reference_size: int = 2_000,
        tail_size: int = 2_000,
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
        self.tails = Tails(self.features, size=tail_size, refresh=window_size)
        self.joint_reference = Reference(reference_size)
        self.tail_reference = Reference(reference_size)

    def learn_one(self, x: Mapping[str, float]) -> None:
        row = self._row(x)
        joint = float(self.model.score_one(row))
        if joint > 0:  # the trees score 0 until their first reference window is full
            self.joint_reference.remember(joint)
        values = tuple(row.values())
        if self.tails.ready:
            self.tail_reference.remember(self.tails.raw(values))
        self.model.learn_one(row)
        self.tails.learn_one(values)

    def score_one(self, x: Mapping[str, float]) -> float:
        """How unusual ``x`` is against recent traffic: about 0 typical, 0.5 at the top 1%
        in both views."""
        row = self._row(x)
        joint = float(self.model.score_one(row))
        tail = self.tails.raw(tuple(row.values()))
        return _mean_of_views(
            (self.joint_reference.sorted, joint), (self.tail_reference.sorted, tail),
            self.top_share,
        )  # fmt: skip

    def frozen(self) -> FrozenDetector:
        """A copy that only scores, exactly as this one does now."""
        return FrozenDetector(self)

    def _row(self, x: Mapping[str, float]) -> dict[str, float]:
        return {name: x[name] for name in self.features}


def _mean_of_views(
    joint: tuple[Sequence[float], float], tail: tuple[Sequence[float], float], top_share: float
) -> float:
    """The mean of each view's raw score read against its reference; a view without a
    reference yet reads 0."""
    return sum(_against(reference, raw, top_share) if reference else 0.0
               for reference, raw in (joint, tail)) / 2  # fmt: skip


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
    same machine). The tails view keeps only its edges. The result is read as
    ``AnomalyDetector.score_one`` reads it.
    """

    def __init__(self, detector: AnomalyDetector) -> None:
        model = detector.model
        self.features = detector.features
        self.top_share = detector.top_share
        self.height = model.height
        self.size_limit = model.size_limit
        self.max_score = model._max_score
        self.joint_reference = tuple(detector.joint_reference.sorted)
        self.tail_edges = detector.tails.edges
        self.tail_lower = detector.tails.lower
        self.tail_reference = tuple(detector.tail_reference.sorted)
        index = {name: position for position, name in enumerate(self.features)}
        self.trees = tuple(_flatten(tree, index) for tree in model.trees)
        self._compile()

    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if name not in _COMPILED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if missing := _STORED - state.keys():  # a snapshot of an older Duoli fails to load
            raise ValueError(f"a detector without {', '.join(sorted(missing))}")
        vars(self).update(state)
        self._compile()

    def _compile(self) -> None:
        paths = [_stops(tree, self.height, self.size_limit) for tree in self.trees]
        self.walk = _walker(paths)
        self.row = values_of(self.features)

    def score_one(self, x: Mapping[str, float]) -> float:
        """The same value as the detector it was made from gives for ``x``."""
        row = self.row(x)
        joint = 1 - self.walk(row) / self.max_score
        tail = tail_raw(self.tail_edges, self.tail_lower, row)
        return _mean_of_views(
            (self.joint_reference, joint), (self.tail_reference, tail), self.top_share
        )


_COMPILED = ("walk", "row")  # rebuilt from the trees on loading, never stored
_STORED = frozenset(
    {
        *("features", "top_share", "height", "size_limit", "max_score", "joint_reference"),
        *("tail_edges", "tail_lower", "tail_reference", "trees"),
    }
)


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
