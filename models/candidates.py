"""The supervised candidates: River classifiers that can explain a score. Pure.

Each candidate learns ``(x, y, w)`` online, gives the probability of the positive class
and explains it as (input name, contribution) pairs. ``frozen()`` returns a small
immutable predictor for workers: it answers as the candidate did when frozen (to the
last rounding), and later learning does not change it.

- ``LogisticCandidate``: logistic regression. With ``bins`` > 0 each input also gets a
  one-hot of its bin (``bins`` equal slices of its fixed bounds), so the model can learn a
  curve per input, not only a slope: a generalised additive model, as cheap and as
  explainable as the plain one. A contribution is the input's share of the logit: its
  weight times its scaled value, plus the weight of its bin.

  The inputs are scaled by a running ``StandardScaler`` and learned by SGD, or
  (``scaling="bounds"``, ``optimizer="adam"``, as the fraud model's binned candidate
  does) mapped to [0, 1] by their fixed bounds and learned by Adam. A running scaler
  divides a nearly constant input (the credit limit of a book without credit lines,
  moved for a few accounts only) by a tiny deviation, and the regression then learns
  those few accounts as fraud; fixed bounds cannot. Adam gives the weight of a rare bin
  that matters (a merchant with confirmed frauds) steps as large as a common one's, so a
  few hundred frauds are enough. Without bins it does not help: every weight then moves
  almost in step after each heavily weighted fraud, and the plain model keeps SGD.

  ``monotone`` names inputs that can only raise the risk (+1) or only lower it (-1) as
  they grow: evidence such as a merchant's confirmed frauds. Their slope keeps that sign
  and their bins are coded as steps from the safe end, each step's weight kept at 0 or
  more (projected after every update), so the curve can rise but never turn back; frozen,
  the steps add up to ordinary bin weights and scoring costs the same. Labels come late:
  the legitimate transactions at a merchant with fresh frauds are learned before the
  frauds among them are labelled, and an unconstrained model learns there that the
  merchant's frauds mean safety.
- ``TreeCandidate``: a Hoeffding tree bounded in depth and memory, with majority-class
  leaves; a contribution is how much the positive share of the training data changes at
  each split on the input's path (a split credits its feature), the usual path
  attribution of a decision tree. (The adaptive variant, ``HoeffdingAdaptiveTree``, was
  measured too: its drift resets cost precision on delayed labels, and time.)
- ``BlendPredictor``: the mean of several frozen predictors, so the learner can also
  weigh the average of two candidates as a challenger without learning anything twice.

Positives are rare, so a positive label weighs ``positive_weight`` times a negative one.
Every probability is then given back as if they weighed the same (its odds divided by
the weight, the usual prior correction): without it a probability overstates the odds
``positive_weight`` times, by a factor that differs between candidates, so neither a
threshold on the score nor a ranking across model versions would mean anything.

>>> import random
>>> rng = random.Random(1)
>>> model = LogisticCandidate(("amount", "prior_tx"), bins=4, learning_rate=0.05)
>>> for _ in range(3000):
...     x = {"amount": rng.uniform(0, 12), "prior_tx": rng.uniform(0, 10)}
...     model.learn_one(x, x["amount"] > 9)
>>> risky, calm = {"amount": 11.0, "prior_tx": 5.0}, {"amount": 2.0, "prior_tx": 5.0}
>>> model.predict_proba_one(risky) > 0.9 > 0.1 > model.predict_proba_one(calm)
True
>>> model.explain(risky, k=1)[0][0]
'amount'
>>> frozen = model.frozen()
>>> model.learn_one(risky, False)
>>> frozen.predict_proba_one(risky) > model.predict_proba_one(risky)
True
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from river import linear_model, optim, preprocessing, tree

from duoli.errors import ConfigError
from models.features import BOUNDS, FRAUD_FEATURES

__all__ = [
    "BlendPredictor",
    "Candidate",
    "LinearPredictor",
    "LogisticCandidate",
    "OnlineCandidate",
    "Predictor",
    "TreeCandidate",
    "TreePredictor",
    "sigmoid",
    "unweighted",
]

Contributions = list[tuple[str, float]]


class Predictor(Protocol):
    """What a worker holds: a probability and its explanation, never a change of state."""

    def predict_proba_one(self, x: Mapping[str, float]) -> float: ...

    def explain(self, x: Mapping[str, float], k: int = 3) -> Contributions: ...

    def score(self, x: Mapping[str, float]) -> tuple[float, Contributions]:
        """The probability and every contribution (unsorted), in one pass."""
        ...


class Candidate(Predictor, Protocol):
    """A supervised model the learner trains and may promote."""

    def learn_one(self, x: Mapping[str, float], y: bool, w: float = 1.0) -> None: ...

    def frozen(self) -> Predictor | None:
        """An immutable copy for the workers; None while it has nothing to score with."""
        ...

    def refit(self) -> None:
        """At the end of each closed day: a batch learner fits what it has learned."""
        ...

    def forget_one(self, x: Mapping[str, float], y: bool) -> bool:
        """Take back an example learned as ``(x, y)`` whose label turned out wrong, if it
        can; False if not."""
        ...


class OnlineCandidate:
    """A candidate that learns as each example comes: nothing to refit, and what it has
    learned it cannot take back (it learns the corrected label on top)."""

    def refit(self) -> None:
        return None

    def forget_one(self, x: Mapping[str, float], y: bool) -> bool:
        return False


def sigmoid(logit: float) -> float:
    """River's logistic function, clamped the same way."""
    if logit < -30:
        return 0.0
    if logit > 30:
        return 1.0
    return 1 / (1 + math.exp(-logit))


def unweighted(probability: float, positive_weight: float) -> float:
    """The probability learned with positives weighing ``positive_weight`` times, as if
    every example had weighed the same: the odds divided by the weight."""
    if positive_weight == 1.0 or probability <= 0.0:
        return probability
    return probability / (probability + (1 - probability) * positive_weight)


def top(contributions: Contributions, k: int) -> Contributions:
    """The ``k`` largest contributions, largest first."""
    return sorted(contributions, key=lambda pair: pair[1], reverse=True)[:k]


def _bin(value: float, low: float, scale: float, bins: int) -> int:
    """Which of ``bins`` equal slices of the bounds holds the value (clamped at both ends)."""
    index = int((value - low) * scale)
    return 0 if index < 0 else bins - 1 if index >= bins else index


class LogisticCandidate(OnlineCandidate):
    """Online logistic regression on standardised inputs, optionally with per-input bins."""

    def __init__(
        self,
        features: Sequence[str] = FRAUD_FEATURES,
        bins: int = 0,
        learning_rate: float = 0.002,
        l2: float = 1e-4,
        positive_weight: float = 20.0,
        scaling: str = "standard",
        optimizer: str = "sgd",
        monotone: Mapping[str, int] | None = None,
    ) -> None:
        self.features = tuple(features)
        self.bins = bins
        self.learning_rate = learning_rate
        self.l2 = l2
        self.positive_weight = positive_weight
        self.scaling = scaling
        self.optimizer = optimizer
        self.monotone = dict(monotone or {})
        self.scaler = _scaler(scaling, self.features)
        self.model = linear_model.LogisticRegression(
            optimizer=_optimizer(optimizer, learning_rate), l2=l2, intercept_lr=learning_rate
        )
        self._slices = tuple(_slices(name, bins) for name in self.features)
        self._bin_keys = tuple(
            tuple(_bin_key(name, index) for index in range(bins)) for name in self.features
        )
        self._signs = tuple(self.monotone.get(name, 0) for name in self.features)
        # The sign each weight of a monotone input must keep: its slope the input's, its
        # steps (added from the safe end towards the risky one) positive.
        self._held = {
            key: held
            for name, sign, keys in zip(self.features, self._signs, self._bin_keys, strict=True)
            if sign
            for key, held in ((name, sign), *((key, 1) for key in keys))
        }

    def learn_one(self, x: Mapping[str, float], y: bool, w: float = 1.0) -> None:
        row = {name: x[name] for name in self.features}
        self.scaler.learn_one(row)
        weight = w * (self.positive_weight if y else 1.0)
        design = self._design(row)
        self.model.learn_one(design, bool(y), w=weight)
        if self._held:
            self._hold_monotone(design)

    def _hold_monotone(self, design: Mapping[str, float]) -> None:
        """Project the weights just moved back onto their allowed sign: a monotone input's
        slope and its steps. (River's regression has no constraints, hence ``_weights``.)"""
        weights, held = self.model._weights, self._held
        for key in design:
            sign = held.get(key)
            if sign and weights[key] * sign < 0:
                weights[key] = 0.0

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        row = {name: x[name] for name in self.features}
        weighted = float(self.model.predict_proba_one(self._design(row))[True])
        return unweighted(weighted, self.positive_weight)

    def explain(self, x: Mapping[str, float], k: int = 3) -> Contributions:
        return self.frozen().explain(x, k)

    def score(self, x: Mapping[str, float]) -> tuple[float, Contributions]:
        return self.frozen().score(x)

    def frozen(self) -> LinearPredictor:
        weights = self.model.weights
        return LinearPredictor(
            features=self.features,
            means=self.scaler.centres(),
            stds=self.scaler.spreads(),
            weights=tuple(weights.get(name, 0.0) for name in self.features),
            intercept=float(self.model.intercept) - math.log(self.positive_weight),
            slices=self._slices,
            bin_weights=tuple(
                _levels(tuple(weights.get(key, 0.0) for key in keys), sign)
                for keys, sign in zip(self._bin_keys, self._signs, strict=True)
            )
            if self.bins
            else (),
        )

    def _design(self, row: dict[str, float]) -> dict[str, float]:
        """The scaled inputs, plus a 1 for each input's bin, or for a monotone input a 1
        for each step between the bin at its low-risk end and its own bin."""
        design = self.scaler.transform_one(row)
        if self.bins:
            for name, (low, scale), keys, sign in zip(
                self.features, self._slices, self._bin_keys, self._signs, strict=True
            ):
                index = _bin(row[name], low, scale, self.bins)
                for key in _steps(keys, index, sign):
                    design[key] = 1.0
        return design


def _steps(keys: tuple[str, ...], index: int, sign: int) -> tuple[str, ...]:
    """The bin keys a value in bin ``index`` switches on: its own, or for a monotone input
    the steps climbed from the bin where it is safest (first if it rises, last if it falls)."""
    if sign > 0:
        return keys[1 : index + 1]
    if sign < 0:
        return keys[index : len(keys) - 1]
    return (keys[index],)


def _levels(steps: tuple[float, ...], sign: int) -> tuple[float, ...]:
    """Each bin's weight for the predictor: a monotone input's is the sum of its steps."""
    if sign > 0:
        return tuple(sum(steps[1 : index + 1], 0.0) for index in range(len(steps)))
    if sign < 0:
        return tuple(sum(steps[index : len(steps) - 1], 0.0) for index in range(len(steps)))
    return steps


class BoundsScaler:
    """Each input mapped to [0, 1] by its fixed bounds: nothing to learn, nothing to drift."""

    def __init__(self, features: Sequence[str]) -> None:
        self.features = tuple(features)
        self._lows = tuple(BOUNDS.get(name, (0.0, 1.0))[0] for name in self.features)
        self._spans = tuple(_span(name) for name in self.features)

    def learn_one(self, x: Mapping[str, float]) -> None:
        return None

    def transform_one(self, x: Mapping[str, float]) -> dict[str, float]:
        return {
            name: (x[name] - low) / span
            for name, low, span in zip(self.features, self._lows, self._spans, strict=True)
        }

    def centres(self) -> tuple[float, ...]:
        return self._lows

    def spreads(self) -> tuple[float, ...]:
        return self._spans


class RunningScaler:
    """River's ``StandardScaler``, read the way a ``LinearPredictor`` wants it."""

    def __init__(self, features: Sequence[str]) -> None:
        self.features = tuple(features)
        self.scaler = preprocessing.StandardScaler()

    def learn_one(self, x: Mapping[str, float]) -> None:
        self.scaler.learn_one(dict(x))

    def transform_one(self, x: Mapping[str, float]) -> dict[str, float]:
        return self.scaler.transform_one(dict(x))

    def centres(self) -> tuple[float, ...]:
        return tuple(self.scaler.means.get(name, 0.0) for name in self.features)

    def spreads(self) -> tuple[float, ...]:
        return tuple(self.scaler.vars.get(name, 0.0) ** 0.5 for name in self.features)


Scaler = BoundsScaler | RunningScaler
SCALERS: dict[str, type[Scaler]] = {"bounds": BoundsScaler, "standard": RunningScaler}
OPTIMIZERS = {"adam": optim.Adam, "sgd": optim.SGD}


def _scaler(scaling: str, features: Sequence[str]) -> Scaler:
    if scaling not in SCALERS:
        raise ConfigError(f"scaling must be one of {sorted(SCALERS)}, not {scaling!r}")
    return SCALERS[scaling](features)


def _optimizer(name: str, learning_rate: float) -> optim.base.Optimizer:
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {sorted(OPTIMIZERS)}, not {name!r}")
    return OPTIMIZERS[name](learning_rate)


def _span(name: str) -> float:
    low, high = BOUNDS.get(name, (0.0, 1.0))
    return high - low if high > low else 1.0


def _slices(name: str, bins: int) -> tuple[float, float]:
    """(low, bins per unit) of an input's fixed bounds."""
    low, high = BOUNDS.get(name, (0.0, 1.0))
    return low, (bins / (high - low) if high > low and bins else 0.0)


def _bin_key(name: str, index: int) -> str:
    return f"{name}#{index}"


class LinearPredictor:
    """A frozen (binned) logistic regression:
    p = sigmoid(b + sum_i w_i (x_i - m_i) / s_i + v_i[bin(x_i)])."""

    __slots__ = (
        "_terms",
        "bin_weights",
        "features",
        "intercept",
        "means",
        "slices",
        "stds",
        "weights",
    )
    _STATE = ("bin_weights", "features", "intercept", "means", "slices", "stds", "weights")

    def __init__(
        self,
        features: tuple[str, ...],
        means: tuple[float, ...],
        stds: tuple[float, ...],
        weights: tuple[float, ...],
        intercept: float,
        slices: tuple[tuple[float, float], ...] = (),
        bin_weights: tuple[tuple[float, ...], ...] = (),
    ) -> None:
        self.features = features
        self.means = means
        self.stds = stds
        self.weights = weights
        self.intercept = intercept
        self.slices = slices
        self.bin_weights = bin_weights
        self._terms = self._compile()

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._STATE)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self._STATE, state, strict=True):
            setattr(self, name, value)
        self._terms = self._compile()

    def _compile(self) -> tuple[tuple[str, float, float, float, float, tuple[float, ...]], ...]:
        """Per input, in one tuple: name, mean, weight / std, and its bins' slice and weights."""
        slices = self.slices or ((0.0, 0.0),) * len(self.features)
        levels = self.bin_weights or ((),) * len(self.features)
        return tuple(
            (name, mean, weight / std if std else 0.0, low, scale, bins)
            for name, mean, std, weight, (low, scale), bins in zip(
                self.features, self.means, self.stds, self.weights, slices, levels, strict=True
            )
        )

    def contributions(self, x: Mapping[str, float]) -> Contributions:
        """Each input's share of the logit."""
        parts = []
        for name, mean, slope, low, scale, levels in self._terms:
            value = x[name]
            part = slope * (value - mean)
            if levels:  # _bin, inlined: this loop is most of a worker's scoring time
                index = int((value - low) * scale)
                part += levels[0 if index < 0 else -1 if index >= len(levels) else index]
            parts.append((name, part))
        return parts

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        return self.score(x)[0]

    def explain(self, x: Mapping[str, float], k: int = 3) -> Contributions:
        return top(self.contributions(x), k)

    def score(self, x: Mapping[str, float]) -> tuple[float, Contributions]:
        parts = self.contributions(x)
        return sigmoid(self.intercept + sum(part for _, part in parts)), parts


class TreeCandidate(OnlineCandidate):
    """A Hoeffding tree, bounded in depth and in memory."""

    def __init__(
        self,
        features: Sequence[str] = FRAUD_FEATURES,
        grace_period: int = 200,
        max_depth: int = 10,
        max_size_mib: float = 4.0,
        positive_weight: float = 5.0,
    ) -> None:
        self.features = tuple(features)
        self.grace_period = grace_period
        self.max_depth = max_depth
        self.max_size_mib = max_size_mib
        self.positive_weight = positive_weight
        self.model = tree.HoeffdingTreeClassifier(
            grace_period=grace_period,
            max_depth=max_depth,
            max_size=max_size_mib,
            memory_estimate_period=2_000,
            leaf_prediction="mc",
        )

    def learn_one(self, x: Mapping[str, float], y: bool, w: float = 1.0) -> None:
        weight = w * (self.positive_weight if y else 1.0)
        self.model.learn_one(self._row(x), bool(y), w=weight)

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        return self.score(x)[0]

    def explain(self, x: Mapping[str, float], k: int = 3) -> Contributions:
        return top(self.score(x)[1], k)

    def score(self, x: Mapping[str, float]) -> tuple[float, Contributions]:
        return TreePredictor(self.model, self.features, self.positive_weight).score(x)

    def frozen(self) -> TreePredictor:
        """A copy without the leaves' split statistics: with majority-class leaves they
        only serve learning, and they are nearly all of a tree's bytes."""
        model = copy.deepcopy(self.model)
        root: Any = getattr(model, "_root", None)
        for leaf in root.iter_leaves() if hasattr(root, "iter_leaves") else [root]:
            if hasattr(leaf, "splitters"):
                leaf.splitters = {}
        return TreePredictor(model, self.features, self.positive_weight)

    def _row(self, x: Mapping[str, float]) -> dict[str, float]:
        return {name: x[name] for name in self.features}


class TreePredictor:
    """A tree that predicts and explains, never learns."""

    __slots__ = ("features", "model", "positive_weight")

    def __init__(self, model: Any, features: tuple[str, ...], positive_weight: float = 1.0) -> None:
        self.model = model
        self.features = features
        self.positive_weight = positive_weight

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.model, self.features, self.positive_weight)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.model, self.features, self.positive_weight = state

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        return self.score(x)[0]

    def explain(self, x: Mapping[str, float], k: int = 3) -> Contributions:
        return top(self.score(x)[1], k)

    def score(self, x: Mapping[str, float]) -> tuple[float, Contributions]:
        """One walk down the tree: the leaf's positive share (what a majority-class leaf
        predicts), unweighted, and the change of that share at each split on the way."""
        root = getattr(self.model, "_root", None)
        if root is None:
            return 0.0, []
        nodes = list(root.walk(x)) if hasattr(root, "walk") else [root]
        share = _positive_share(nodes[-1].stats) or 0.0
        return unweighted(share, self.positive_weight), _path_contributions(nodes)


def _positive_share(stats: Mapping[Any, float]) -> float | None:
    total = sum(stats.values())
    return stats.get(True, 0.0) / total if total > 0 else None


def _path_contributions(nodes: Sequence[Any]) -> Contributions:
    """Per feature, the summed change of the positive share at the splits on a path."""
    totals: dict[str, float] = {}
    for parent, child in itertools.pairwise(nodes):
        before, after = _positive_share(parent.stats), _positive_share(child.stats)
        feature = getattr(parent, "feature", None)
        if before is None or after is None or feature is None:
            continue
        totals[feature] = totals.get(feature, 0.0) + after - before
    return list(totals.items())


class BlendPredictor:
    """The mean of its members' probabilities. A contribution is the members' average, in
    probability units: a linear member's share of the logit is scaled by p (1 - p), its
    first-order effect on the probability."""

    __slots__ = ("members",)

    def __init__(self, members: tuple[Predictor, ...]) -> None:
        self.members = members

    def __getstate__(self) -> tuple[Predictor, ...]:
        return self.members

    def __setstate__(self, state: tuple[Predictor, ...]) -> None:
        self.members = state

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        return self.score(x)[0]

    def explain(self, x: Mapping[str, float], k: int = 3) -> Contributions:
        return top(self.score(x)[1], k)

    def score(self, x: Mapping[str, float]) -> tuple[float, Contributions]:
        share = 1 / len(self.members)
        total, parts = 0.0, dict[str, float]()
        for member in self.members:
            probability, contributions = member.score(x)
            total += probability
            scale = share * (
                probability * (1 - probability) if isinstance(member, LinearPredictor) else 1
            )
            if not parts:
                parts = {name: scale * value for name, value in contributions}
                continue
            for name, value in contributions:
                parts[name] = parts.get(name, 0.0) + scale * value
        return total * share, list(parts.items())
