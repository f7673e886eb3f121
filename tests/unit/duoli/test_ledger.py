from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duoli.errors import DuoliError
from duoli.ledger import GENESIS, Ledger, LedgerError, entry_hash, verify

Chain = list[dict[str, Any]]


@pytest.fixture
def make_chain() -> Callable[[int], Chain]:
    """``make_chain(5)``: five sound entries, alternating decisions and alerts."""

    def build(length: int) -> Chain:
        ledger = Ledger()
        kinds = ("decision", "alert")
        return [ledger.append(kinds[i % 2], {"n": i, "why": ["PD_ROSE"]}) for i in range(length)]

    return build


def test_a_clean_chain_passes(make_chain):
    chain = make_chain(5)
    verdict = verify(chain)
    assert verdict.ok and verdict.count == 5 and verdict.problem is None
    assert chain[0]["prev_hash"] == GENESIS
    assert [e["seq"] for e in chain] == [0, 1, 2, 3, 4]


def test_an_empty_chain_is_sound():
    assert verify([]).ok


def test_the_chain_survives_a_json_round_trip():
    ledger = Ledger()
    chain = [ledger.append("decision", {"reasons": ("A", "B"), "limit": 6e3, "by": {7: "x"}})]
    read_back = [json.loads(json.dumps(entry)) for entry in chain]
    assert verify(read_back).ok and read_back == chain


def test_a_modified_payload_is_named(make_chain):
    chain = make_chain(5)
    chain[2] = {**chain[2], "payload": {"n": 99, "why": ["PD_ROSE"]}}
    verdict = verify(chain)
    assert (verdict.ok, verdict.index, verdict.seq, verdict.problem) == (False, 2, 2, "modified")
    assert verdict.count == 2


def test_a_modified_and_resealed_entry_is_named_by_its_broken_link(make_chain):
    chain = make_chain(5)
    forged = {**chain[2], "payload": {"n": 99}}
    forged["hash"] = entry_hash(2, forged["kind"], forged["payload"], forged["prev_hash"])
    chain[2] = forged
    verdict = verify(chain)
    assert (verdict.index, verdict.seq, verdict.problem) == (2, 2, "modified")
    assert "rewritten" in verdict.detail


def test_an_edited_seq_is_a_modification(make_chain):
    chain = make_chain(5)
    chain[3] = {**chain[3], "seq": 7}
    assert (verify(chain).index, verify(chain).problem) == (3, "modified")


def test_a_removed_entry_is_named_at_the_gap(make_chain):
    chain = make_chain(5)
    del chain[2]
    verdict = verify(chain)
    assert (verdict.index, verdict.seq, verdict.problem) == (2, 3, "removed")
    assert "seq 2 " in verdict.detail


def test_several_removed_entries_are_reported_as_a_range(make_chain):
    chain = make_chain(6)
    del chain[1:4]
    verdict = verify(chain)
    assert (verdict.seq, verdict.problem) == (4, "removed") and "1..3" in verdict.detail


def test_swapped_entries_are_reordered_not_removed(make_chain):
    chain = make_chain(5)
    chain[2], chain[3] = chain[3], chain[2]
    verdict = verify(chain)
    assert (verdict.index, verdict.seq, verdict.problem) == (2, 3, "reordered")


def test_a_repeated_entry_is_reordered(make_chain):
    chain = make_chain(4)
    chain.insert(3, chain[1])
    verdict = verify(chain)
    assert (verdict.index, verdict.seq, verdict.problem) == (3, 1, "reordered")


def test_the_last_entry_moved_to_the_front_is_reordered(make_chain):
    chain = make_chain(4)
    chain.insert(0, chain.pop())
    assert (verify(chain).index, verify(chain).problem) == (0, "reordered")


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda e: {k: v for k, v in e.items() if k != "hash"}, "missing field 'hash'"),
        (lambda e: {**e, "seq": "1"}, "seq must be an integer"),
        (lambda e: {**e, "kind": "memo"}, "kind must be one of"),
        (lambda e: {**e, "payload": [1]}, "payload must be a mapping"),
        (lambda e: {**e, "prev_hash": "abc"}, "prev_hash must be 64"),
        (lambda e: ["not", "a", "mapping"], "an entry is a mapping"),
    ],
)
def test_malformed_entries_are_named_with_the_problem(make_chain, damage, words):
    chain = make_chain(3)
    chain[1] = damage(chain[1])
    verdict = verify(chain)
    assert (verdict.index, verdict.problem) == (1, "malformed") and words in verdict.detail


def test_resuming_from_the_last_entry_continues_the_chain(make_chain):
    chain = make_chain(3)
    stored = json.loads(json.dumps(chain[-1]))
    ledger = Ledger.resume(stored)
    chain.append(ledger.append("alert", {"n": 3}))
    assert chain[-1]["seq"] == 3 and chain[-1]["prev_hash"] == chain[2]["hash"]
    assert verify(chain).ok
    assert verify(chain[3:], after=chain[2]).ok
    assert verify(chain[3:]).problem == "removed"


def test_resuming_from_nothing_starts_a_new_chain():
    ledger = Ledger.resume(None)
    assert (ledger.next_seq, ledger.last_hash) == (0, GENESIS)


def test_resuming_from_a_tampered_entry_is_refused(make_chain):
    last = {**make_chain(2)[-1], "payload": {"n": 5}}
    with pytest.raises(LedgerError, match="hash does not match"):
        Ledger.resume(last)


def test_a_sealed_entry_does_not_follow_later_changes_to_the_callers_payload():
    payload: dict[str, Any] = {"reasons": ["A"]}
    entry = Ledger().append("decision", payload)
    payload["reasons"].append("B")
    assert verify([entry]).ok and entry["payload"] == {"reasons": ["A"]}


@pytest.mark.parametrize(
    ("kind", "payload", "words"),
    [
        ("memo", {}, "kind must be one of"),
        ("alert", {"score": float("nan")}, "not JSON-able"),
        ("alert", {"ids": {1, 2}}, "not JSON-able"),
        ("alert", ["x"], "a payload is a mapping"),
    ],
)
def test_append_refuses_what_cannot_be_sealed(kind, payload, words):
    ledger = Ledger()
    with pytest.raises(LedgerError, match=words) as caught:
        ledger.append(kind, payload)
    assert isinstance(caught.value, DuoliError) and ledger.next_seq == 0


payloads = st.dictionaries(
    st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5), st.booleans()), max_size=3
)


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(payloads, min_size=3, max_size=15),
    tamper=st.sampled_from(["modified", "removed", "reordered"]),
    data=st.data(),
)
def test_any_single_tampering_is_found_at_the_right_entry(bodies, tamper, data):
    ledger = Ledger()
    chain = [ledger.append("decision", body) for body in bodies]
    assert verify(chain).ok
    at = data.draw(st.integers(1, len(chain) - 2), label="at")
    if tamper == "modified":
        chain[at] = {**chain[at], "payload": {**chain[at]["payload"], "tampered": True}}
    elif tamper == "removed":
        del chain[at]
    else:
        chain[at], chain[at + 1] = chain[at + 1], chain[at]
    verdict = verify(chain)
    assert (verdict.ok, verdict.index, verdict.problem) == (False, at, tamper)
