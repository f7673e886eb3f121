"""Forged snapshots and checkpoints fail to load instead of running code."""

from __future__ import annotations

import os
import pickle
import zlib
from pathlib import Path
from typing import Any

import pytest

from duoli.errors import DuoliError
from models import pickles
from models.snapshot import ModelSnapshot
from models.trainer import IncompatibleCheckpoint, Trainer, TrainerConfig


class _Calls:
    """Pickles as a call of ``function(*args)``, as an attacker's record would."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.function, self.args


def _forged(function: Any, *args: Any) -> bytes:
    return zlib.compress(pickle.dumps(_Calls(function, *args), protocol=pickle.HIGHEST_PROTOCOL))


def _global(module: str, name: str) -> bytes:
    """A protocol-4 pickle of nothing but the global ``module name``."""

    def text(value: str) -> bytes:
        raw = value.encode()
        return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE

    return zlib.compress(b"\x80\x04" + text(module) + text(name) + b"\x93.")  # STACK_GLOBAL, STOP


def test_a_pickle_that_would_run_a_command_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(pickles.ForbiddenGlobal, match=r"^(posix|os)\.system is not a model class$"):
        pickles.loads(_forged(os.system, f"touch {marker}"))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("subprocess", "Popen"),
        ("models.snapshot", "ModelSnapshot.from_bytes.__globals__"),  # an attribute path
        ("models.snapshot", "version_day"),  # a function of the models, not a class
        ("models.snapshot", "pickles"),  # a module
    ],
)
def test_only_model_classes_and_plain_containers_resolve(module: str, name: str) -> None:
    with pytest.raises(pickles.ForbiddenGlobal, match="is not a model class"):
        pickles.loads(_global(module, name))


def test_model_classes_and_containers_resolve() -> None:
    assert pickles.loads(_global("models.snapshot", "ModelSnapshot")) is ModelSnapshot
    assert pickles.loads(_global("collections", "deque")).__name__ == "deque"


def test_a_forged_snapshot_is_an_unreadable_snapshot() -> None:
    with pytest.raises(DuoliError, match=r"unreadable model snapshot: .* is not a model class"):
        ModelSnapshot.from_bytes(_forged(os.system, "true"))


def test_a_forged_checkpoint_is_an_incompatible_one() -> None:
    with pytest.raises(IncompatibleCheckpoint, match="is not a model class"):
        Trainer.restore(_forged(os.system, "true"))


def test_a_new_trainer_checkpoint_loads() -> None:
    trainer = Trainer(TrainerConfig())
    assert Trainer.restore(trainer.checkpoint()).config == trainer.config
