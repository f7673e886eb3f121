"""A single writer's process follows ownership: one at a time, started again if it dies.

The writer here only notes its pid in a file and sleeps; the real trainer and ledger
writer are run on the broker in ``tests/integration/test_models.py`` and ``test_credit.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from duoli.processes import wait_for
from streams.elected import ElectedProcess, SingleWriter


class NotingWriter(SingleWriter):
    role = "noting writer"

    def __init__(self, notes: Path) -> None:
        super().__init__("unused:9092", [])
        self.notes = notes

    async def run(self) -> None:
        with self.notes.open("a") as notes:
            notes.write(f"start {os.getpid()}\n")
        try:
            await asyncio.sleep(3600)
        finally:
            with self.notes.open("a") as notes:
                notes.write(f"stop {os.getpid()}\n")


def _notes(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def _settle(elected: ElectedProcess, notes: Path, count: int) -> list[str]:
    for _ in range(100):
        await elected._follow_owner()
        if len(_notes(notes)) >= count:
            break
        await asyncio.sleep(0.1)
    return _notes(notes)


def test_a_writer_runs_only_while_its_worker_owns_and_one_at_a_time(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    elected = ElectedProcess(NotingWriter(notes))

    async def scenario() -> list[str]:
        elected.set_owner(True)
        await _settle(elected, notes, 1)
        elected.set_owner(False)  # handed over, then back before the process was stopped
        elected.set_owner(True)
        await elected._follow_owner()
        elected.set_owner(False)
        await elected._follow_owner()  # stops it, and waits until it has stopped
        elected.set_owner(True)
        lines = await _settle(elected, notes, 3)
        await elected.on_stop()
        return lines

    lines = asyncio.run(scenario())
    first, second = (line.split()[1] for line in lines if line.startswith("start"))
    assert lines == [f"start {first}", f"stop {first}", f"start {second}"]
    assert first != second and elected.process is None


def test_a_writer_process_that_dies_is_started_again(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    elected = ElectedProcess(NotingWriter(notes))

    async def scenario() -> tuple[int, int]:
        elected.set_owner(True)
        await _settle(elected, notes, 1)
        assert elected.process is not None and elected.process.pid is not None
        killed = elected.process.pid
        os.kill(killed, signal.SIGKILL)
        assert wait_for(lambda: not elected.process or not elected.process.is_alive(), 10)
        await _settle(elected, notes, 2)
        assert elected.process is not None and elected.process.pid is not None
        again = elected.process.pid
        await elected.on_stop()
        return killed, again

    killed, again = asyncio.run(scenario())
    assert _notes(notes)[:2] == [f"start {killed}", f"start {again}"] and killed != again
