"""Record bytes hold no more memory than their length needs."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson

from streams.wire import json_bytes, right_sized

SCORE_LIKE = {f"field_{n}": 0.123456789 * n for n in range(40)}  # about 750 bytes of JSON


def held_bytes(make: Callable[[], Any]) -> tuple[int, int]:
    """Bytes traced as held after ``make()``, and the length of what it returned."""
    tracemalloc.start()
    try:
        made = make()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return held, len(made)


def test_a_record_holds_about_its_own_length() -> None:
    held, length = held_bytes(lambda: json_bytes(SCORE_LIKE, sort_keys=True))
    assert length > 500
    assert held < 2 * length


def test_right_sized_keeps_the_bytes_and_drops_the_slack() -> None:
    raw = orjson.dumps(SCORE_LIKE)
    assert right_sized(raw) == raw
    held, length = held_bytes(lambda: right_sized(orjson.dumps(SCORE_LIKE)))
    assert held < 2 * length
