"""Model snapshots and trainer checkpoints as compressed pickles that load only models.

Both travel on Kafka topics, and a plain ``pickle.loads`` calls whatever a record names:
anyone able to write to those topics could run code in every worker. Loading here
resolves only classes of Duoli's ``models`` package and of River, and a few plain
containers; any other name fails the load, before its module is even imported.

>>> from collections import deque
>>> loads(dumps(deque([1.5, 2.5], maxlen=3)))
deque([1.5, 2.5], maxlen=3)
"""

from __future__ import annotations

import io
import pickle
import zlib
from typing import Any

__all__ = ["ForbiddenGlobal", "dumps", "loads"]

MODEL_PACKAGES = frozenset({"models", "river"})
PLAIN = frozenset(
    {
        *(("builtins", name) for name in ("bool", "bytearray", "bytes", "complex", "dict")),
        *(("builtins", name) for name in ("float", "frozenset", "int", "list", "range")),
        *(("builtins", name) for name in ("set", "slice", "str", "tuple")),
        *(("collections", name) for name in ("Counter", "OrderedDict", "defaultdict", "deque")),
        ("array", "array"),
        ("array", "_array_reconstructor"),  # rebuilds an array from its bytes, nothing more
        ("functools", "partial"),  # calls only what this unpickler resolved itself
        ("random", "Random"),
    }
)


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names something that is not a model class nor a plain container."""


def dumps(obj: Any) -> bytes:
    return zlib.compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), 3)


def loads(data: bytes) -> Any:
    """The object ``dumps`` wrote; ``ForbiddenGlobal`` if the pickle names anything else,
    ``zlib.error`` or ``pickle.UnpicklingError`` if it is not one."""
    return _ModelUnpickler(io.BytesIO(zlib.decompress(data))).load()


class _ModelUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in PLAIN:
            return super().find_class(module, name)
        if module.split(".")[0] not in MODEL_PACKAGES or "." in name:  # no attribute paths
            raise ForbiddenGlobal(f"{module}.{name} is not a model class")
        found = super().find_class(module, name)
        if not isinstance(found, type):  # a function could do anything with its arguments
            raise ForbiddenGlobal(f"{module}.{name} is not a model class")
        return found
