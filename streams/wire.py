"""The bytes of the records a worker sends: compact JSON, right-sized.

orjson 3.12 and later return a buffer rounded up to a power of two and never shrink it:
an 800-byte score record holds 16 KiB, a 1.5 KB account state 32 KiB. A worker keeps
thousands of them until their batch is sent; measured, each kept one cost 5-6 µs more
than serialising it, a right-sized copy about 1 µs.

>>> json_bytes({"b": 1, "a": [0.5, None]}, sort_keys=True)
b'{"a":[0.5,null],"b":1}'
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["json_bytes", "right_sized"]


def json_bytes(value: Any, *, sort_keys: bool = False) -> bytes:
    """``value`` as compact JSON, in a buffer of its own size."""
    return right_sized(orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0))


def right_sized(data: bytes) -> bytes:
    """A copy of ``data`` that holds no more memory than its length needs."""
    return bytes(memoryview(data))
