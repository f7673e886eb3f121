"""A tamper-evident ledger of decisions and alerts: a pure sha256 hash chain.

Each entry is a plain JSON-able dict, ready for a Kafka topic::

    {"seq": 0, "kind": "decision", "payload": {...}, "prev_hash": "00…0", "hash": "…"}

``hash`` is sha256 over the canonical JSON (sorted keys, compact, UTF-8) of ``seq``,
``kind``, ``payload`` and ``prev_hash``; the first entry's ``prev_hash`` is 64 zeros.
:func:`verify` names the first entry that breaks the chain and how.

What a chain cannot show by itself: entries cut from its *end*. Compare the last
``seq`` with the one the writer reports. An entry rewritten together with its hash is
reported as "modified" at that entry, because the next entry no longer points to it.

>>> ledger = Ledger()
>>> first = ledger.append("alert", {"alert_id": "x1", "severity": "high"})
>>> second = ledger.append("decision", {"decision_id": "d1", "new_limit": 6000})
>>> verify([first, second])
Verdict(ok=True, count=2, index=None, seq=None, problem=None, detail='')
>>> verify([first, {**second, "payload": {"decision_id": "d1", "new_limit": 60000}}]).problem
'modified'
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from duoli.errors import DuoliError

__all__ = ["GENESIS", "KINDS", "Ledger", "LedgerError", "Verdict", "entry_hash", "verify"]

GENESIS: Final = "0" * 64
KINDS: Final = ("decision", "alert")
FIELDS: Final = ("seq", "kind", "payload", "prev_hash", "hash")
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
Problem = Literal["modified", "removed", "reordered", "malformed"]


class LedgerError(DuoliError):
    """An entry that cannot be appended, or a resume point that is not a sound entry."""


def _canonical(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def entry_hash(seq: int, kind: str, payload: Mapping[str, Any], prev_hash: str) -> str:
    """The sha256 hex digest that seals one entry."""
    body = {"seq": seq, "kind": kind, "payload": payload, "prev_hash": prev_hash}
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


class Ledger:
    """The head of a chain: appends entries after the last one it knows."""

    def __init__(self, next_seq: int = 0, last_hash: str = GENESIS) -> None:
        self.next_seq = next_seq
        self.last_hash = last_hash

    @classmethod
    def resume(cls, last_entry: Mapping[str, Any] | None) -> Ledger:
        """Continue after an entry read back from the topic (None: a new chain)."""
        if last_entry is None:
            return cls()
        problem = _shape_problem(last_entry) or _seal_problem(last_entry)
        if problem is not None:
            raise LedgerError(f"cannot resume after this entry: {problem}")
        return cls(last_entry["seq"] + 1, last_entry["hash"])

    def append(self, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Seal the payload into the next entry and move the head past it."""
        if kind not in KINDS:
            raise LedgerError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        body = _json_copy(payload)
        sealed = entry_hash(self.next_seq, kind, body, self.last_hash)
        entry: dict[str, Any] = {"seq": self.next_seq, "kind": kind, "payload": body}
        entry.update(prev_hash=self.last_hash, hash=sealed)
        self.next_seq += 1
        self.last_hash = sealed
        return entry


def _json_copy(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as it will read back from JSON, so its hash survives the round trip;
    a copy, so that changing the caller's dict later cannot break the seal."""
    if not isinstance(payload, Mapping):
        raise LedgerError(f"a payload is a mapping, not {type(payload).__name__}")
    try:
        copy: dict[str, Any] = json.loads(_canonical(payload))
    except (TypeError, ValueError) as exc:
        raise LedgerError(f"the payload is not JSON-able: {exc}") from exc
    return copy


@dataclass(frozen=True, slots=True)
class Verdict:
    """``ok`` with the entry ``count``, or the first bad entry: its position in the input
    (``index``), its ``seq`` when it has one, the ``problem`` and a sentence."""

    ok: bool
    count: int
    index: int | None = None
    seq: int | None = None
    problem: Problem | None = None
    detail: str = ""


def verify(entries: Iterable[Mapping[str, Any]], after: Mapping[str, Any] | None = None) -> Verdict:
    """Check a chain from its start, or from just after a trusted entry ``after``
    (a malformed ``after`` raises :class:`LedgerError`).

    Entries are read into memory: telling a removed entry from a moved one needs to
    know whether the missing ``seq`` turns up later.
    """
    items = list(entries)
    head = Ledger.resume(after)
    expected, last_hash = head.next_seq, head.last_hash
    for index, entry in enumerate(items):
        problem = _shape_problem(entry)
        if problem is not None:
            return _bad(index, entry, "malformed", problem)
        problem = _seal_problem(entry)
        if problem is not None:
            return _bad(index, entry, "modified", problem)
        if entry["seq"] != expected:
            return _out_of_place(items, index, entry, expected)
        if entry["prev_hash"] != last_hash:
            return _broken_link(items, index, entry, after)
        expected, last_hash = expected + 1, entry["hash"]
    return Verdict(ok=True, count=len(items))


def _shape_problem(entry: Any) -> str | None:
    if not isinstance(entry, Mapping):
        return f"an entry is a mapping, not {type(entry).__name__}"
    missing = [name for name in FIELDS if name not in entry]
    if missing:
        return f"missing field {missing[0]!r}"
    checks = [
        (type(entry["seq"]) is int and entry["seq"] >= 0, "seq must be an integer >= 0"),
        (entry["kind"] in KINDS, f"kind must be one of {', '.join(KINDS)}"),
        (isinstance(entry["payload"], Mapping), "payload must be a mapping"),
        (_is_hex64(entry["prev_hash"]), "prev_hash must be 64 lowercase hex digits"),
        (_is_hex64(entry["hash"]), "hash must be 64 lowercase hex digits"),
    ]
    return next((message for ok, message in checks if not ok), None)


def _is_hex64(value: Any) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _seal_problem(entry: Mapping[str, Any]) -> str | None:
    try:
        actual = entry_hash(entry["seq"], entry["kind"], entry["payload"], entry["prev_hash"])
    except (TypeError, ValueError) as exc:
        return f"the payload is not JSON-able: {exc}"
    return None if actual == entry["hash"] else "its hash does not match its content"


def _out_of_place(
    items: list[Mapping[str, Any]], index: int, entry: Mapping[str, Any], expected: int
) -> Verdict:
    seq = entry["seq"]
    if seq < expected:
        return _bad(index, entry, "reordered", f"seq {seq} comes after seq {expected - 1}")
    if any(isinstance(e, Mapping) and e.get("seq") == expected for e in items[index + 1 :]):
        return _bad(index, entry, "reordered", f"seq {seq} comes before seq {expected}")
    gap = str(expected) if seq == expected + 1 else f"{expected}..{seq - 1}"
    return _bad(index, entry, "removed", f"entries with seq {gap} are missing before it")


def _broken_link(
    items: list[Mapping[str, Any]], index: int, entry: Mapping[str, Any], after: Any
) -> Verdict:
    """The seq follows on but the link does not: the entry it should point to was
    rewritten (or, first in the chain, this one was)."""
    if index == 0:
        where = "the genesis hash" if after is None else "the trusted entry"
        return _bad(index, entry, "modified", f"its prev_hash does not match {where}")
    previous = items[index - 1]
    detail = f"the next entry (seq {entry['seq']}) does not point to it: it was rewritten"
    return _bad(index - 1, previous, "modified", detail)


def _bad(index: int, entry: Any, problem: Problem, detail: str) -> Verdict:
    seq = entry.get("seq") if isinstance(entry, Mapping) else None
    return Verdict(
        ok=False,
        count=index,
        index=index,
        seq=seq if type(seq) is int else None,
        problem=problem,
        detail=detail,
    )
