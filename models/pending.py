"""The pending store: what each example was scored with, until its outcome is known. Pure.

A transaction's features wait here, keyed by its ``event_id``, until a label arrives or
the label maturity period passes; an installment's features wait until it is repaid or
reaches 30 days past due. Once resolved, an example stays a while longer among the
*resolved*, so a label that comes after maturity can still correct the model.

Memory is bounded by ``limit`` examples: past it, the oldest resolved example goes first,
then the pending example nearest maturity (dropped unlearned, and counted).

>>> store = PendingStore(limit=2)
>>> store.add("t1", "tx", mature_at=10.0, x=[0.5, 1.0])
True
>>> store.add("t1", "tx", mature_at=10.0, x=[0.5, 1.0])  # a repeated id is kept once
False
>>> [(example_id, example.x.tolist()) for example_id, example in store.due(until=11.0)]
[('t1', [0.5, 1.0])]
>>> store.take("t1") is None, len(store)  # matured: no longer pending
(True, 0)
"""

from __future__ import annotations

import heapq
from array import array
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["Example", "PendingStore"]


@dataclass(slots=True)
class Example:
    """One scored transaction or billed installment: its features and when it matures.

    ``outcome`` is what the model learned from it once resolved (None: nothing yet).
    """

    kind: str  # "tx" (fraud model) or "bill" (delinquency model)
    mature_at: float
    x: array[float]
    outcome: bool | None = None
    expires_at: float = 0.0  # when a resolved example is forgotten

    @property
    def values(self) -> list[float]:
        return self.x.tolist()


class PendingStore:
    """Examples waiting for their outcome, and recently resolved ones, in bounded memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending: dict[str, Example] = {}
        self.done: OrderedDict[str, Example] = OrderedDict()
        self.evicted = 0
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self.pending) + len(self.done)

    def add(self, example_id: str, kind: str, mature_at: float, x: Sequence[float]) -> bool:
        """Keep an example until its outcome; False (and nothing kept) for a known id."""
        if example_id in self.pending or example_id in self.done:
            return False
        self._make_room()
        self.pending[example_id] = Example(kind, mature_at, array("f", x))
        heapq.heappush(self._heap, (mature_at, example_id))
        return True

    def take(self, example_id: str) -> Example | None:
        """The pending example, removed from the pending; None if not pending."""
        return self.pending.pop(example_id, None)

    def due(self, until: float) -> Iterator[tuple[str, Example]]:
        """Pending examples maturing strictly before ``until``, in maturity order, removed."""
        while self._heap and self._heap[0][0] < until:
            mature_at, example_id = heapq.heappop(self._heap)
            example = self.pending.get(example_id)
            if example is not None and example.mature_at == mature_at:
                del self.pending[example_id]
                yield example_id, example
        self._compact()

    def resolve(
        self, example_id: str, example: Example, outcome: bool | None, keep_until: float
    ) -> None:
        """Remember a resolved example (and what was learned) until ``keep_until``."""
        example.outcome, example.expires_at = outcome, keep_until
        self.done.pop(example_id, None)
        self.done[example_id] = example

    def resolved(self, example_id: str) -> Example | None:
        return self.done.get(example_id)

    def forget_before(self, now: float) -> None:
        """Drop the resolved examples whose correction window has passed."""
        while self.done:
            example_id, example = next(iter(self.done.items()))
            if example.expires_at >= now:
                break
            del self.done[example_id]

    def nbytes(self) -> int:
        """Approximate memory held, for the benchmark: features plus per-entry overhead."""
        per_entry = 200  # dict slot, key string, Example and array headers (measured ~190)
        examples = [*self.pending.values(), *self.done.values()]
        return sum(per_entry + example.x.itemsize * len(example.x) for example in examples)

    def _make_room(self) -> None:
        while len(self) >= self.limit:
            if self.done:
                self.done.popitem(last=False)
                continue
            _, example_id = heapq.heappop(self._heap)
            if self.pending.pop(example_id, None) is not None:
                self.evicted += 1

    def _compact(self) -> None:
        """Taken examples leave stale heap entries; rebuild once they outnumber the live."""
        if len(self._heap) > 2 * len(self.pending) + 64:
            self._heap = [(e.mature_at, example_id) for example_id, e in self.pending.items()]
            heapq.heapify(self._heap)
