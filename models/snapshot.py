"""A model snapshot: what every worker scores with, as of one event-time midnight.

The trainer publishes one after each day it closes; workers keep the last few and score
an event of day ``d`` with the version as of midnight starting day ``d - 1``. Snapshots
travel as a compressed pickle that loads only model classes (``models.pickles``).

>>> snapshot = ModelSnapshot.cold()
>>> ModelSnapshot.from_bytes(snapshot.to_bytes()).versions()
{'fraud': 'fraud-cold', 'pd': 'pd-cold'}
"""

from __future__ import annotations

from dataclasses import dataclass

from duoli.errors import DuoliError
from models import pickles
from models.learners import DelinquencyLearner, FraudLearner, FraudScorer, PdScorer

__all__ = ["FixedModels", "ModelSnapshot", "version_day"]

DAY = 86_400.0


def version_day(at: float) -> float:
    """The version an event is scored with: as of the midnight starting the day before.

    >>> version_day(3 * DAY + 5.0) == 2 * DAY
    True
    """
    return (at // DAY - 1) * DAY


@dataclass(frozen=True)
class ModelSnapshot:
    as_of: float  # every example known before this midnight (event time) is learned
    fraud: FraudScorer
    pd: PdScorer

    @classmethod
    def cold(cls) -> ModelSnapshot:
        """Untrained models, for before the trainer's first version."""
        return cls(0.0, FraudLearner().scorer("fraud-cold"), DelinquencyLearner().scorer("pd-cold"))

    def versions(self) -> dict[str, str]:
        return {"fraud": self.fraud.version, "pd": self.pd.version}

    def to_bytes(self) -> bytes:
        return pickles.dumps(self)

    @staticmethod
    def from_bytes(data: bytes) -> ModelSnapshot:
        try:
            snapshot = pickles.loads(data)
        except Exception as error:
            raise DuoliError(f"unreadable model snapshot: {error}") from error
        if not isinstance(snapshot, ModelSnapshot):
            raise DuoliError("the record is not a model snapshot")
        return snapshot


class FixedModels:
    """One snapshot for every event: backtests, tools and tests, where nothing trains."""

    def __init__(self, snapshot: ModelSnapshot | None = None) -> None:
        self.snapshot = snapshot or ModelSnapshot.cold()

    def for_time(self, at: float) -> ModelSnapshot:
        return self.snapshot

    async def wait_for(self, as_of: float, timeout: float) -> bool:
        return True
