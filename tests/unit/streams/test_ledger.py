"""The ledger writer's memory: chain once, resume after a restart, forget old ids."""

from __future__ import annotations

import json

import pytest

from duoli.ledger import verify
from streams import ledger as ledger_module
from streams.ledger import Chainer

KINDS = {"t.decisions": "decision", "t.alerts": "alert"}


def decision(n: int) -> bytes:
    return json.dumps({"decision_id": f"d{n}", "new_limit": 1000 + n}).encode()


def alert(n: int) -> bytes:
    return json.dumps({"alert_id": f"a{n}", "severity": "high"}).encode()


def test_each_record_is_chained_once_even_when_its_topic_repeats_it() -> None:
    chainer = Chainer(KINDS)
    made = [
        chainer.chain("t.decisions", 0, 0, decision(1)),
        chainer.chain("t.alerts", 2, 0, alert(1)),
        chainer.chain("t.decisions", 0, 1, decision(1)),  # redelivered after a crash
        chainer.chain("t.decisions", 1, 0, decision(2)),
    ]
    entries = [entry for entry in made if entry is not None]
    assert [e["kind"] for e in entries] == ["decision", "alert", "decision"]
    assert verify(entries).ok and verify(entries).count == 3
    assert chainer.positions == {("t.decisions", 0): 2, ("t.alerts", 2): 1, ("t.decisions", 1): 1}


def test_a_new_writer_resumes_the_chain_and_each_source_where_the_ledger_left_off() -> None:
    first = Chainer(KINDS)
    written = [first.chain("t.decisions", 0, n, decision(n)) for n in range(5)]
    entries = [json.loads(json.dumps(e)) for e in written if e is not None]
    resumed = Chainer(KINDS)
    resumed.replay(entries[:2])  # read in batches
    resumed.replay(entries[2:])
    assert resumed.positions == {("t.decisions", 0): 5}
    assert resumed.chain("t.decisions", 0, 4, decision(4)) is None  # already chained
    nxt = resumed.chain("t.decisions", 0, 5, decision(5))
    assert nxt is not None and nxt["seq"] == 5
    assert verify([*entries, nxt]).ok


def test_an_unreadable_record_is_skipped_and_its_offset_passed() -> None:
    chainer = Chainer(KINDS)
    assert chainer.chain("t.alerts", 0, 7, b"not json") is None
    assert chainer.chain("t.alerts", 0, 8, b'{"no_id": 1}') is None
    assert chainer.positions == {("t.alerts", 0): 9} and chainer.ledger.next_seq == 0


def test_the_ids_it_remembers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_module, "RECENT_IDS", 3)
    chainer = Chainer(KINDS)
    for n in range(10):
        chainer.chain("t.decisions", 0, n, decision(n))
    assert len(chainer._seen) == 3
