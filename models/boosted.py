"""Gradient-boosted trees, refitted each closed day on a bounded window of recent examples.

River's online learners take one example at a time and forget nothing on purpose; with a
few hundred delayed fraud labels among tens of thousands of transactions, they rank the
frauds well below what the same inputs allow (``python -m bench.model_study``: trained
in hindsight on the labels known by mid-history, gradient boosting reached an average
precision of 0.68 where the best online learner reached 0.32). So one candidate is
batch learning made online: ``learn_one`` keeps the example in a ring buffer of the last
``capacity`` examples (fixed memory), and ``refit`` trains scikit-learn's
``HistGradientBoostingClassifier`` on the buffer, once per closed day, in the trainer's
own process. A transaction learned as legitimate when it matured and labelled a fraud
later is taken out of the buffer (``forget_one``) before it is learned as a fraud; an
online learner cannot unlearn it. Unlike the linear candidates, it does not hold the
evidence inputs monotone: in the same replay that cost average precision (0.40 against
0.44), and taking corrected examples out deals with what made the constraint necessary.

What it predicts with, and what a snapshot carries, is ``BoostedPredictor``: the fitted
trees as plain tuples of numbers, compiled on loading into one expression of nested
comparisons (as ``models.anomaly`` does), so a worker never loads scikit-learn objects.
A contribution is the usual path attribution of a tree ensemble: at each split on a
transaction's path, the change of the mean leaf value below it (leaves weighted by their
training counts), credited to the split's input; with the ensemble's mean value they
add up to the logit.

>>> import random
>>> rng = random.Random(2)
>>> model = BoostedCandidate(("amount", "prior_tx"), min_positives=5, iterations=20)
>>> for _ in range(2000):
...     x = {"amount": rng.uniform(0, 12), "prior_tx": rng.uniform(0, 10)}
...     model.learn_one(x, x["amount"] > 10)
>>> model.predict_proba_one({"amount": 11.0, "prior_tx": 5.0})  # not refitted yet
0.0
>>> model.refit()
>>> frozen = model.frozen()
>>> frozen.predict_proba_one({"amount": 11.0, "prior_tx": 5.0}) > 0.9
True
>>> frozen.predict_proba_one({"amount": 2.0, "prior_tx": 5.0}) < 0.05
True
>>> frozen.explain({"amount": 11.0, "prior_tx": 5.0}, k=1)[0][0]
'amount'
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from models.candidates import Contributions, sigmoid, top
from models.compiled import walk_of
from models.features import FRAUD_FEATURES, values_of

__all__ = ["BoostedCandidate", "BoostedPredictor"]

# One tree: per node its split input (-1 for a leaf), threshold, children, leaf value and
# training count, in scikit-learn's node order (the root first).
_Tree = tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...], tuple[int, ...],
              tuple[float, ...], tuple[int, ...]]  # fmt: skip
_Steps = tuple[tuple[int, float], ...]  # (input, change of the mean leaf value) on a path
Edges = tuple[np.ndarray, ...]  # per input, the sorted raw values its bins are cut at
MAX_BINS = 255  # scikit-learn's most


class BoostedPredictor:
    """Fitted trees that predict and explain, never learn; ``trees`` are plain numbers."""

    def __init__(self, features: tuple[str, ...], baseline: float, trees: tuple[_Tree, ...]):
        self.features = features
        self.baseline = baseline
        self.trees = trees
        self._compile()

    @classmethod
    def fitted(
        cls, model: HistGradientBoostingClassifier, features: tuple[str, ...], edges: Edges
    ) -> BoostedPredictor:
        """The trees of a binary classifier fitted on ``binned`` inputs, as plain numbers
        that compare the raw inputs."""
        baseline = float(np.ravel(model._baseline_prediction)[0])
        return cls(features, baseline, _trees(model, edges))

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.features, self.baseline, self.trees)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.features, self.baseline, self.trees = state
        self._compile()

    def _compile(self) -> None:
        leaves: list[_Steps] = []
        means = [_mean_values(tree) for tree in self.trees]
        sources = [
            _leaf_expression(tree, 0, leaves, mean)
            for tree, mean in zip(self.trees, means, strict=True)
        ]
        self.expected = self.baseline + sum(mean[0] for mean in means)
        self.leaves = tuple(leaves)
        self.walk = walk_of(f"({', '.join(sources)},)" if sources else "()")
        self.row = values_of(self.features)

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        return self.score(x)[0]

    def explain(self, x: Mapping[str, float], k: int = 3) -> Contributions:
        return top(self.score(x)[1], k)

    def score(self, x: Mapping[str, float]) -> tuple[float, Contributions]:
        """The probability of fraud and each input's share of its logit, in one walk."""
        parts, leaves = [0.0] * len(self.features), self.leaves
        for leaf in self.walk(self.row(x)):
            for feature, change in leaves[leaf]:
                parts[feature] += change
        names = self.features
        logit = self.expected + sum(parts)
        return sigmoid(logit), [(names[i], part) for i, part in enumerate(parts) if part]


def _mean_values(tree: _Tree) -> list[float]:
    """Each node's mean leaf value below it, leaves weighted by their training counts."""
    splits, _, lefts, rights, values, counts = tree
    means = list(values)
    for node in reversed(range(len(splits))):  # children come after their parent
        if splits[node] >= 0:
            left, right = lefts[node], rights[node]
            total = counts[left] + counts[right]
            means[node] = (
                (means[left] * counts[left] + means[right] * counts[right]) / total
                if total
                else 0.0
            )
    return means


def _leaf_expression(
    tree: _Tree,
    node: int,
    leaves: list[_Steps],
    means: list[float],
    steps: _Steps = (),
) -> str:
    """The tree's walk from ``node`` as nested comparisons ending in leaf numbers; each
    leaf is appended to ``leaves`` as the changes on its path, summed per input."""
    splits, thresholds, lefts, rights, _, _ = tree
    split = int(splits[node])
    if split < 0:
        summed: dict[int, float] = {}
        for feature, change in steps:
            summed[feature] = summed.get(feature, 0.0) + change
        leaves.append(tuple(summed.items()))
        return str(len(leaves) - 1)
    branches = []
    for child in (int(lefts[node]), int(rights[node])):
        step = ((split, float(means[child] - means[node])),)
        branches.append(_leaf_expression(tree, child, leaves, means, steps + step))
    left, right = branches
    return f"({left} if row[{split}] <= {float(thresholds[node])!r} else {right})"


def _trees(model: HistGradientBoostingClassifier, edges: Edges) -> tuple[_Tree, ...]:
    """The fitted trees as plain numbers (leaf values include the learning rate), each
    split's threshold turned back from a bin number into the raw input's edge."""
    trees: list[Any] = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        splits = np.where(nodes["is_leaf"], -1, nodes["feature_idx"]).tolist()
        thresholds = [
            float(edges[split][int(threshold)]) if split >= 0 else 0.0
            for split, threshold in zip(splits, nodes["num_threshold"].tolist(), strict=True)
        ]
        columns = (splits, thresholds, *(nodes[name].tolist() for name in _NODE_FIELDS))
        trees.append(tuple(tuple(column) for column in columns))
    return tuple(trees)


_NODE_FIELDS = ("left", "right", "value", "count")


def class_edges(inputs: np.ndarray, labels: np.ndarray) -> Edges:
    """Each input's bin edges: as many quantiles of the frauds as of the legitimate ones.

    scikit-learn places the bins at quantiles of all the examples, and frauds are a few
    per cent of them, so the range where they lie shares a bin or two with the
    legitimate transactions nearest it: the trees could not learn that every amount
    past some value is a fraud, and scored legitimate ones just below it as frauds. In
    a daily-refit replay of ``duoli eval --profile sparse``'s book (the model alone, as
    ``bench.model_study`` replays it), average precision went from 0.40 with
    scikit-learn's bins to 0.48 with these; on the default book, seeds 7 and 11, it
    moved by less than 0.015 either way.
    """
    levels = np.linspace(0, 1, MAX_BINS // 2 + 2)[1:-1]  # at most MAX_BINS - 1 edges
    by_class = (inputs[labels], inputs[~labels])
    return tuple(
        np.unique(np.concatenate([np.quantile(rows[:, j], levels) for rows in by_class]))
        for j in range(inputs.shape[1])
    )


def binned(inputs: np.ndarray, edges: Edges) -> np.ndarray:
    """Each input as its bin: the number of its edges below it (``x <= edge`` is bin <=
    the edge's index, which is how ``_trees`` reads the thresholds back)."""
    return np.column_stack(
        [np.searchsorted(column_edges, inputs[:, j]) for j, column_edges in enumerate(edges)]
    ).astype(np.float64)


class BoostedCandidate:
    """Gradient-boosted trees over the last ``capacity`` examples, refitted by ``refit``."""

    def __init__(
        self,
        features: Sequence[str] = FRAUD_FEATURES,
        capacity: int = 40_000,
        iterations: int = 50,
        learning_rate: float = 0.2,
        max_leaf_nodes: int = 15,
        min_positives: int = 5,
    ) -> None:
        self.features = tuple(features)
        self.capacity = capacity
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_positives = min_positives
        self.x = array("d")  # ``capacity`` rows of inputs, a ring: row ``i`` at i * width
        self.y = array("b")
        self.w = array("d")
        self.next = 0  # the row the next example overwrites once the ring is full
        self.learned_since_fit = 0
        self.predictor = BoostedPredictor(self.features, -math.inf, ())
        self.fits = 0
        self.fit_seconds = 0.0  # all fits together, for ``make bench``

    def learn_one(self, x: Mapping[str, float], y: bool, w: float = 1.0) -> None:
        row = array("d", (x[name] for name in self.features))
        if len(self.y) < self.capacity:
            self.x.extend(row)
            self.y.append(bool(y))
            self.w.append(w)
        else:
            width = len(self.features)
            self.x[self.next * width : (self.next + 1) * width] = row
            self.y[self.next], self.w[self.next] = bool(y), w
            self.next = (self.next + 1) % self.capacity
        self.learned_since_fit += 1

    def forget_one(self, x: Mapping[str, float], y: bool) -> bool:
        """Drop an example learned as ``(x, y)``, as when a transaction that matured as
        legitimate turns out a fraud: kept, it would go on teaching the trees that this
        fraud was legitimate. False if the buffer no longer holds it."""
        width = len(self.features)
        row = np.array([x[name] for name in self.features])
        same = (np.array(self.x).reshape(-1, width) == row).all(axis=1)
        found = np.flatnonzero(same & (np.array(self.y) == y) & (np.array(self.w) > 0))
        if not len(found):
            return False
        self.w[int(found[-1])] = 0.0
        self.learned_since_fit += 1
        return True

    def refit(self) -> None:
        """Train on the buffer, if it holds anything new and both classes."""
        labels = np.array(self.y)
        positives = int(labels.sum())
        if not self.learned_since_fit or positives < self.min_positives or positives == len(labels):
            return
        model = HistGradientBoostingClassifier(
            max_iter=self.iterations,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=20,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=0,
        )
        inputs = np.array(self.x).reshape(len(labels), len(self.features))
        started = time.perf_counter()
        edges = class_edges(inputs, labels.astype(bool))
        with threadpool_limits(1):  # the trainer shares the machine with the workers
            model.fit(binned(inputs, edges), labels, sample_weight=np.array(self.w))
        self.fits += 1
        self.fit_seconds += time.perf_counter() - started
        self.predictor = BoostedPredictor.fitted(model, self.features, edges)
        self.learned_since_fit = 0

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        return self.predictor.predict_proba_one(x)

    def explain(self, x: Mapping[str, float], k: int = 3) -> Contributions:
        return self.predictor.explain(x, k)

    def score(self, x: Mapping[str, float]) -> tuple[float, Contributions]:
        return self.predictor.score(x)

    def frozen(self) -> BoostedPredictor | None:
        """The trees of the last ``refit`` (immutable, so shared, not copied); None before
        the first, so that no one mistakes a model that has seen too few frauds to fit
        for one that finds nothing risky."""
        return self.predictor if self.predictor.trees else None
