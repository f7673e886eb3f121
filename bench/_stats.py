"""Pure helpers: percentiles, latency summaries and the pass/fail of a measurement.

>>> percentile([1.0, 2.0, 3.0, 4.0], 50)
2.5
>>> measurement(120.0, "ms", bar=Bar("value", "<=", 100.0), baseline=60.0)["passed"]
False
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["Bar", "latency_summary", "measurement", "percentile", "ratio"]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default).

    >>> percentile([5.0], 99)
    5.0
    >>> percentile([1.0, 2.0, 3.0, 4.0, 5.0], 100)
    5.0
    """
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: Sequence[float], sent: int) -> dict[str, Any]:
    """p50, p99 and max in milliseconds, with how many of ``sent`` were received."""
    millis = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(percentile(millis, 50), 2),
        "p99_ms": round(percentile(millis, 99), 2),
        "max_ms": round(max(millis), 2) if millis else math.nan,
        "received": len(millis),
        "sent": sent,
    }


def ratio(value: float, baseline: float) -> float:
    """value / baseline, NaN when the baseline is zero or missing.

    >>> ratio(3.0, 4.0), math.isnan(ratio(1.0, 0.0))
    (0.75, True)
    """
    if not baseline or math.isnan(baseline):
        return math.nan
    return value / baseline


@dataclass(frozen=True)
class Bar:
    """What must hold: ``on`` is either the measured value or its ratio to the baseline."""

    on: Literal["value", "ratio"]
    op: Literal["<=", ">="]
    threshold: float

    def passed(self, observed: float) -> bool:
        if math.isnan(observed):
            return False
        return observed <= self.threshold if self.op == "<=" else observed >= self.threshold

    def __str__(self) -> str:
        return f"{self.on} {self.op} {self.threshold:g}"


def measurement(
    value: float,
    unit: str,
    *,
    bar: Bar,
    baseline: float,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One figure of the report: value, unit, bar, passed, baseline, ratio and details."""
    measured_ratio = ratio(value, baseline)
    observed = measured_ratio if bar.on == "ratio" else value
    return {
        "value": value,
        "unit": unit,
        "bar": asdict(bar) | {"text": str(bar)},
        "passed": bar.passed(observed),
        "baseline": baseline,
        "ratio": round(measured_ratio, 4),
        "details": dict(details or {}),
    }
