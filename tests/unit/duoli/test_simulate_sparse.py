"""The sparse stream keeps the handbook's shape: bare transactions, frauds labelled a week later."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from duoli.errors import ConfigError
from duoli.events import parse_event
from duoli.simulate import Truth
from duoli.simulate_sparse import (
    COMPROMISED_CUSTOMER,
    COMPROMISED_TERMINAL,
    HIGH_AMOUNT,
    SparseConfig,
    simulate_sparse,
    simulate_sparse_with_truth,
    write_sparse_jsonl,
)

Event = dict[str, Any]
Stream = tuple[list[Event], Truth]
SMALL = SparseConfig(seed=5, accounts=300, merchants=600, days=30)
# The handbook's scale, long enough for every compromise window to be running at full strength.
FULL = SparseConfig(seed=2, days=36)
TRANSACTION_FIELDS = {"type", "event_id", "account_id", "occurred_at", "amount", "merchant_id"}
LABEL_FIELDS = {"type", "event_id", "account_id", "occurred_at", "transaction_id", "is_fraud"}


@pytest.fixture(scope="module")
def stream() -> Callable[[SparseConfig], Stream]:
    """Factory fixture: simulate each config once per module."""
    made: dict[SparseConfig, Stream] = {}

    def make(config: SparseConfig) -> Stream:
        if config not in made:
            made[config] = simulate_sparse_with_truth(config)
        return made[config]

    return make


def _of(events: list[Event], kind: str) -> list[Event]:
    return [event for event in events if event["type"] == kind]


def _at(event: Event) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


def test_transactions_carry_only_the_required_fields_and_pass_the_contract(stream) -> None:
    events, _ = stream(SMALL)
    assert {event["type"] for event in events} == {"transaction", "fraud_label"}
    for event in events:
        fields = TRANSACTION_FIELDS if event["type"] == "transaction" else LABEL_FIELDS
        assert set(event) == fields
        parse_event(json.dumps(event))  # raises on anything the engine would dead-letter
    assert all(tx["amount"] > 0 for tx in _of(events, "transaction"))


def test_each_label_is_a_fraud_seven_days_to_the_second_after_it(stream) -> None:
    events, truth = stream(SMALL)
    by_id = {tx["event_id"]: tx for tx in _of(events, "transaction")}
    labels = _of(events, "fraud_label")
    assert labels
    for label in labels:
        tx = by_id[label["transaction_id"]]
        assert label["is_fraud"] is True
        assert label["account_id"] == tx["account_id"]
        assert _at(label) - _at(tx) == timedelta(days=7)
        assert label["transaction_id"] in truth.fraud_transactions


def test_every_fraud_whose_label_falls_inside_the_stream_is_labelled(stream) -> None:
    events, truth = stream(SMALL)
    end = SMALL.start + timedelta(days=SMALL.days)
    due = {
        tx["event_id"]
        for tx in _of(events, "transaction")
        if tx["event_id"] in truth.fraud_transactions and _at(tx) + timedelta(days=7) < end
    }
    assert due == {label["transaction_id"] for label in _of(events, "fraud_label")}


def test_events_come_in_event_time_order_with_labels_interleaved(stream) -> None:
    events, _ = stream(SMALL)
    times = [_at(event) for event in events]
    assert times == sorted(times)
    assert times[-1] < SMALL.start + timedelta(days=SMALL.days)
    first_label = next(n for n, event in enumerate(events) if event["type"] == "fraud_label")
    assert any(event["type"] == "transaction" for event in events[first_label:])


def test_a_legitimate_transaction_never_exceeds_220(stream) -> None:
    events, truth = stream(SMALL)
    legit = [
        tx for tx in _of(events, "transaction") if tx["event_id"] not in truth.fraud_transactions
    ]
    assert max(tx["amount"] for tx in legit) <= 220.0


def test_a_compromised_terminal_turns_every_sale_of_that_day_into_fraud(stream) -> None:
    events, truth = stream(SMALL)
    by_terminal_day: dict[tuple[str, str], list[str]] = defaultdict(list)
    for tx in _of(events, "transaction"):
        by_terminal_day[tx["merchant_id"], tx["occurred_at"][:10]].append(tx["event_id"])
    hit = {
        key
        for key, ids in by_terminal_day.items()
        if any(truth.fraud_pattern.get(i) == COMPROMISED_TERMINAL for i in ids)
    }
    assert hit
    for key in hit:
        assert all(i in truth.fraud_transactions for i in by_terminal_day[key])


def test_at_the_handbooks_scale_fraud_is_rare_and_all_three_scenarios_occur(stream) -> None:
    events, truth = stream(FULL)
    transactions = _of(events, "transaction")
    per_day = len(transactions) / FULL.days
    assert 9_000 < per_day < 11_000
    rate = len(truth.fraud_transactions) / len(transactions)
    assert 0.002 < rate < 0.01
    assert set(truth.fraud_pattern.values()) == {
        HIGH_AMOUNT,
        COMPROMISED_TERMINAL,
        COMPROMISED_CUSTOMER,
    }
    assert len({tx["account_id"] for tx in transactions}) > 4_500


def test_the_truth_fits_the_default_simulators_and_has_no_installments(stream) -> None:
    _, truth = stream(SMALL)
    assert isinstance(truth, Truth)
    assert truth.defaulted_installments == frozenset()
    assert set(truth.fraud_pattern) == truth.fraud_transactions


def test_same_seed_same_stream_and_another_seed_another(stream, tmp_path: Path) -> None:
    events, truth = stream(SMALL)
    assert list(simulate_sparse(SMALL)) == events
    count, again = write_sparse_jsonl(SMALL, tmp_path / "sparse.jsonl")
    lines = (tmp_path / "sparse.jsonl").read_text().splitlines()
    assert count == len(lines) == len(events)
    assert [json.loads(line) for line in lines] == events
    assert again == truth
    other = SparseConfig(seed=6, accounts=300, merchants=600, days=30)
    assert list(simulate_sparse(other)) != events


@pytest.mark.parametrize(
    "fields",
    [{"accounts": 0}, {"merchants": 0}, {"days": 0}, {"radius": 0.0}, {"terminals_per_day": -1}],
)
def test_an_impossible_config_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SparseConfig(**fields)
