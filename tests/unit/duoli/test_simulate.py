"""The synthetic book must honour the contract, look like a real book and keep its truth honest."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from duoli.errors import ConfigError
from duoli.events import parse_event
from duoli.simulate import SimulationConfig, Truth, simulate, simulate_with_truth, write_jsonl

Event = dict[str, Any]
Book = tuple[list[Event], Truth]
SMALL = SimulationConfig(seed=11, accounts=80, days=60)
LONG = SimulationConfig(seed=5, accounts=120, days=150)  # bills have time to go 30 days past due
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def book() -> Callable[[SimulationConfig], Book]:
    """Factory fixture: simulate each config once per module."""
    made: dict[SimulationConfig, Book] = {}

    def make(config: SimulationConfig) -> Book:
        if config not in made:
            made[config] = simulate_with_truth(config)
        return made[config]

    return make


def _at(event: Event, name: str = "occurred_at") -> datetime:
    return datetime.fromisoformat(event[name])


def _of(events: list[Event], kind: str) -> list[Event]:
    return [event for event in events if event["type"] == kind]


def _end(config: SimulationConfig) -> datetime:
    return config.start + config.days * DAY


def _fraud_by_account(events: list[Event], truth: Truth, pattern: str) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = defaultdict(list)
    for tx in _of(events, "transaction"):
        if truth.fraud_pattern.get(tx["event_id"]) == pattern:
            grouped[tx["account_id"]].append(tx)
    return {account: sorted(txs, key=_at) for account, txs in grouped.items()}


def test_same_seed_gives_byte_identical_jsonl_and_another_seed_does_not(tmp_path: Path) -> None:
    first, again, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    write_jsonl(simulate(SMALL), first)
    write_jsonl(simulate(SMALL), again)
    write_jsonl(simulate(SimulationConfig(seed=12, accounts=80, days=60)), other)
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_every_event_passes_the_contract_and_ids_are_unique(
    book: Callable[[SimulationConfig], Book],
) -> None:
    events, _ = book(SMALL)
    parsed = [parse_event(json.dumps(event)) for event in events]
    assert len({event.event_id for event in parsed}) == len(events)
    assert {event["type"] for event in events} == {
        "credit_line_opened",
        "transaction",
        "installment_due",
        "repayment",
        "fraud_label",
    }


def test_stream_is_time_ordered_but_for_a_few_events_under_30_minutes_late(
    book: Callable[[SimulationConfig], Book],
) -> None:
    events, _ = book(SMALL)
    latest, lags = _at(events[0]), []
    for event in events:
        if _at(event) < latest:
            lags.append(latest - _at(event))
        latest = max(latest, _at(event))
    assert 0 < len(lags) <= 0.01 * len(events)
    assert max(lags) < timedelta(minutes=30)


def test_accounts_act_only_after_their_line_opens_and_strangers_only_transact() -> None:
    events = list(simulate(SimulationConfig(seed=2, accounts=400, days=20)))
    opened = {event["account_id"]: _at(event) for event in _of(events, "credit_line_opened")}
    strangers = {event["account_id"] for event in events if event["account_id"] not in opened}
    assert all(
        _at(event) >= opened[event["account_id"]]
        for event in events
        if event["account_id"] in opened
    )
    assert 0 < len(strangers) <= 5
    assert {event["type"] for event in events if event["account_id"] in strangers} == {
        "transaction"
    }


def test_opening_terms_are_within_the_product_ranges(
    book: Callable[[SimulationConfig], Book],
) -> None:
    opened = _of(book(SMALL)[0], "credit_line_opened")
    assert all(2_000 <= event["credit_limit"] <= 50_000 for event in opened)
    assert all(0.08 <= event["apr"] <= 0.24 for event in opened)
    assert len({_at(event).date() for event in opened}) > 5  # spread over the first weeks


def test_merchant_category_is_fixed_per_merchant_and_optional_fields_go_missing(
    book: Callable[[SimulationConfig], Book],
) -> None:
    txs = _of(book(SMALL)[0], "transaction")
    categories: dict[str, set[str]] = defaultdict(set)
    for tx in txs:
        if "merchant_category" in tx:
            categories[tx["merchant_id"]].add(tx["merchant_category"])
    assert all(len(names) == 1 for names in categories.values())
    for name in ("channel", "merchant_category", "device_id", "city"):
        assert 0.01 < sum(name not in tx for tx in txs) / len(txs) < 0.2, name
    kinds = Counter(tx.get("kind", "purchase") for tx in txs)
    assert (
        kinds["purchase"] > 0.8 * len(txs) and kinds["cash_withdrawal"] and kinds["loan_drawdown"]
    )


def test_card_testing_probes_small_within_minutes_then_spends_big(
    book: Callable[[SimulationConfig], Book],
) -> None:
    events, truth = book(SMALL)
    incidents = _fraud_by_account(events, truth, "card_testing")
    assert incidents
    for txs in incidents.values():
        probes = [tx for tx in txs if tx["amount"] <= 20]
        assert len(probes) >= 3 and _at(probes[-1]) - _at(probes[0]) < timedelta(minutes=30)
        assert len({tx["merchant_id"] for tx in probes}) <= 2
        assert txs[-1]["amount"] > 100  # the big purchase comes after the probes


def test_account_takeover_uses_a_new_device_and_city_for_a_burst(
    book: Callable[[SimulationConfig], Book],
) -> None:
    events, truth = book(SMALL)
    incidents = _fraud_by_account(events, truth, "account_takeover")
    assert incidents
    for account, txs in incidents.items():
        before = [
            tx
            for tx in _of(events, "transaction")
            if tx["account_id"] == account and _at(tx) < _at(txs[0])
        ]
        assert not {tx.get("device_id") for tx in txs} & {tx.get("device_id") for tx in before} - {
            None
        }
        home = Counter(tx.get("city") for tx in before if tx.get("city")).most_common(1)
        assert not home or home[0][0] not in {tx.get("city") for tx in txs}
        assert _at(txs[-1]) - _at(txs[0]) < timedelta(hours=6)
        assert min(tx["amount"] for tx in txs) >= 300


def test_compromised_merchant_frauds_cluster_on_few_merchants_within_weeks(
    book: Callable[[SimulationConfig], Book],
) -> None:
    events, truth = book(SMALL)
    hit = [
        tx
        for tx in _of(events, "transaction")
        if truth.fraud_pattern.get(tx["event_id"]) == "compromised_merchant"
    ]
    merchants = {tx["merchant_id"] for tx in hit}
    assert hit and len(merchants) <= 3 and len({tx["account_id"] for tx in hit}) > len(merchants)
    for merchant in merchants:
        times = sorted(_at(tx) for tx in hit if tx["merchant_id"] == merchant)
        assert times[-1] - times[0] <= 21 * DAY


def test_bust_out_drains_the_line_within_days_then_never_repays(
    book: Callable[[SimulationConfig], Book],
) -> None:
    events, truth = book(LONG)
    incidents = _fraud_by_account(events, truth, "bust_out")
    assert incidents
    for account, txs in incidents.items():
        assert {tx["kind"] for tx in txs} <= {"loan_drawdown", "cash_withdrawal"}
        assert _at(txs[-1]) - _at(txs[0]) <= 4 * DAY
        mine = [event for event in events if event["account_id"] == account]
        assert not [event for event in _of(mine, "repayment") if _at(event) > _at(txs[0])]
        limit = _of(mine, "credit_line_opened")[0]["credit_limit"]
        assert sum(tx["amount"] for tx in txs) > 0.3 * limit
    defaulted = {i.split("-inst-")[0] for i in truth.defaulted_installments}
    assert set(incidents) & defaulted


def test_labels_come_1_to_30_days_after_a_real_transaction_and_tell_the_truth(
    book: Callable[[SimulationConfig], Book],
) -> None:
    events, truth = book(LONG)
    txs = {tx["event_id"]: tx for tx in _of(events, "transaction")}
    labels = _of(events, "fraud_label")
    for label in labels:
        tx = txs[label["transaction_id"]]
        assert DAY <= _at(label) - _at(tx) <= 30 * DAY and label["account_id"] == tx["account_id"]
        assert label["is_fraud"] == (tx["event_id"] in truth.fraud_transactions)
    cleared = [label for label in labels if not label["is_fraud"]]
    assert cleared and {label["source"] for label in cleared} == {"analyst"}
    assert len(cleared) < 0.01 * len(txs)


def test_most_matured_frauds_are_reported_but_not_all(
    book: Callable[[SimulationConfig], Book],
) -> None:
    events, truth = book(LONG)
    reported = {
        label["transaction_id"] for label in _of(events, "fraud_label") if label["is_fraud"]
    }
    matured = [
        tx["event_id"]
        for tx in _of(events, "transaction")
        if tx["event_id"] in truth.fraud_transactions and _at(tx) < _end(LONG) - 30 * DAY
    ]
    share = sum(tx_id in reported for tx_id in matured) / len(matured)
    assert 0.6 <= share <= 0.9


def test_default_fraud_rate_makes_about_one_percent_of_transactions_fraud(
    book: Callable[[SimulationConfig], Book],
) -> None:
    events, truth = book(SimulationConfig())
    share = len(truth.fraud_transactions) / len(_of(events, "transaction"))
    assert 0.005 <= share <= 0.015
    assert 20_000 <= len(events) <= 60_000


def test_no_fraud_rate_means_no_fraud() -> None:
    events, truth = simulate_with_truth(
        SimulationConfig(seed=3, accounts=60, days=40, fraud_rate=0.0)
    )
    assert not truth.fraud_transactions
    assert not [label for label in _of(events, "fraud_label") if label["is_fraud"]]


def test_bills_come_10_to_15_days_before_due_and_ask_at_least_50(
    book: Callable[[SimulationConfig], Book],
) -> None:
    events, _ = book(LONG)
    bills = _of(events, "installment_due")
    assert bills
    for bill in bills:
        assert 10 * DAY <= _at(bill, "due_at") - _at(bill) <= 16 * DAY
        assert bill["amount_due"] >= 50


def _repaid(events: list[Event]) -> dict[str, list[Event]]:
    paid: dict[str, list[Event]] = defaultdict(list)
    for repayment in _of(events, "repayment"):
        if "installment_id" in repayment:
            paid[repayment["installment_id"]].append(repayment)
    return paid


def test_defaulted_installments_are_not_repaid_30_days_after_due(
    book: Callable[[SimulationConfig], Book],
) -> None:
    events, truth = book(LONG)
    bills = {bill["installment_id"]: bill for bill in _of(events, "installment_due")}
    paid = _repaid(events)
    assert len(truth.defaulted_installments) >= 3
    for installment in truth.defaulted_installments:
        deadline = _at(bills[installment], "due_at") + 30 * DAY
        assert deadline <= _end(LONG)
        on_time = sum(r["amount"] for r in paid[installment] if _at(r) <= deadline)
        assert on_time < bills[installment]["amount_due"]


def test_careful_borrowers_repay_before_due_and_risky_ones_default_more(
    book: Callable[[SimulationConfig], Book],
) -> None:
    events, truth = book(LONG)
    paid, end = _repaid(events), _end(LONG)
    bills = [bill for bill in _of(events, "installment_due") if _at(bill, "due_at") < end]

    def before_due(bill: Event) -> bool:
        early = [r["amount"] for r in paid[bill["installment_id"]] if _at(r) < _at(bill, "due_at")]
        return sum(early) >= bill["amount_due"] - 0.01

    careful = [bill for bill in bills if truth.account_risk[bill["account_id"]] < 0.05]
    assert careful and sum(map(before_due, careful)) / len(careful) >= 0.8
    risk = {account for account, value in truth.account_risk.items() if value > 0.2}
    risky_bills = [bill for bill in bills if bill["account_id"] in risk]
    assert risky_bills and sum(map(before_due, risky_bills)) / len(risky_bills) < 0.8


def test_write_jsonl_round_trips_one_compact_object_per_line(
    tmp_path: Path, book: Callable[[SimulationConfig], Book]
) -> None:
    events, _ = book(SMALL)
    path = tmp_path / "book.jsonl"
    assert write_jsonl(events, path) == len(events)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == events
    assert not any(", " in line or ": " in line for line in lines)


@pytest.mark.parametrize(
    "bad", [{"fraud_rate": 1.5}, {"days": 0}, {"accounts": -1}, {"merchants": 1}]
)
def test_nonsense_configs_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SimulationConfig(**bad)
