"""Overdue installments in event time: when each days-past-due threshold is crossed. Pure.

An installment not fully repaid by ``due_at`` plus grace crosses threshold ``k`` at
``due_at + grace + k days``. The engine's clock (the highest event time seen, advanced
with the wall clock when the input is quiet) decides when that moment has passed, so an
account that sends nothing more still goes overdue.

>>> from duoli.account import AccountState, Installment
>>> state = AccountState.fresh("a1", 5000.0, 0.18)
>>> state.installments["i1"] = Installment(due_at=0.0, amount_due=100.0)
>>> [(c.installment_id, c.threshold) for c in take_crossings(state, 8 * DAY, (1, 7, 30), 0.0)]
[('i1', 1), ('i1', 7)]
>>> take_crossings(state, 8 * DAY, (1, 7, 30), 0.0)
[]
>>> next_crossing(state, (1, 7, 30), 0.0) == 30 * DAY
True
"""

from __future__ import annotations

from dataclasses import dataclass

from duoli.account import DAY, AccountState

__all__ = ["Crossing", "next_crossing", "take_crossings"]


@dataclass(frozen=True, slots=True)
class Crossing:
    """One installment reaching one days-past-due threshold, at an exact event time."""

    account_id: str
    installment_id: str
    threshold: int
    at: float
    amount_owed: float
    event_id: str


def take_crossings(
    state: AccountState, clock: float, thresholds: tuple[int, ...], grace_seconds: float
) -> list[Crossing]:
    """Crossings due by ``clock`` that have not alerted yet; marks them as alerted."""
    crossings = []
    for installment_id, installment in sorted(state.installments.items()):
        for bit, threshold in enumerate(thresholds):
            at = installment.due_at + grace_seconds + threshold * DAY
            if at <= clock and not installment.alerted & (1 << bit):
                installment.alerted |= 1 << bit
                crossings.append(
                    Crossing(
                        state.account_id,
                        installment_id,
                        threshold,
                        at,
                        installment.owed,
                        installment.event_id,
                    )
                )
    return crossings


def next_crossing(
    state: AccountState, thresholds: tuple[int, ...], grace_seconds: float
) -> float | None:
    """The earliest threshold moment still ahead for this account, or None."""
    pending = [
        installment.due_at + grace_seconds + threshold * DAY
        for installment in state.installments.values()
        for bit, threshold in enumerate(thresholds)
        if not installment.alerted & (1 << bit)
    ]
    return min(pending, default=None)
