"""Processes as Linux's /proc shows them, for tests that check what a command started."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "brokers_under",
    "children_of",
    "command_line",
    "descendants_of",
    "gone",
    "running_parents",
]


def running_parents() -> dict[int, int]:
    """Every running process (a zombie is not) and its parent's pid."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:  # it ended meanwhile
            continue
        if state != "Z":
            parents[int(stat.parent.name)] = int(parent)
    return parents


def children_of(pid: int | None) -> list[int]:
    return sorted(child for child, parent in running_parents().items() if parent == pid)


def descendants_of(pid: int | None) -> list[int]:
    """Its children, theirs, and so on: a worker's writers are children of its fork server."""
    parents = running_parents()
    found: list[int] = []
    generation = [pid]
    while generation:
        generation = [child for child, parent in parents.items() if parent in generation]
        found += generation
    return sorted(found)


def brokers_under(pid: int | None) -> list[int]:
    """The children of ``pid`` that run the embedded broker (Tansu); a worker's other child,
    the fork server of its writers, does not count."""
    return [child for child in children_of(pid) if "tansu" in command_line(child)]


def gone(pid: int) -> bool:
    return pid not in running_parents()


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
