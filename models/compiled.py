"""Tree walks compiled into one Python expression, built from numbers only.

Walking a tree node by node in Python costs a loop turn and a few lookups per node; one
expression of nested ``(a if row[i] <= t else b)`` costs a comparison. Both the anomaly
detector (``models.anomaly``) and the boosted trees (``models.boosted``) compile their
trees this way when a snapshot loads. The trees come off a Kafka topic, so the callers
write every number into the source through ``int()``, ``float()`` and ``repr`` (exact for
a float): whatever else a forged snapshot holds fails to convert, and never becomes code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["walk_of"]

_NUMBERS_ONLY = {"__builtins__": {}, "inf": math.inf, "nan": math.nan}


def walk_of(body: str) -> Callable[[Sequence[float]], Any]:
    """``lambda row: <body>``, evaluated without builtins; ``body`` is the caller's, made of
    numbers it converted itself."""
    return eval(f"lambda row: {body}", dict(_NUMBERS_ONLY))  # numbers only, see above
