"""The rule backtest: figures an analyst can count by hand on a tiny history."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from duoli.backtest import BacktestReport, RuleStats, backtest, load_candidates
from duoli.backtest_report import render_table, summary_line
from duoli.errors import RuleError
from duoli.settings import Settings
from duoli.simulate import SimulationConfig, simulate, write_jsonl
from rules import load_rules, parse_rules
from rules.control import NamedList
from tests.conftest import START, EventFactory

CANDIDATES = """
rules:
  - id: big
    description: large purchase
    expression: amount >= 500
    severity: medium
    action: review
    mode: shadow
    version: 2
  - id: huge
    description: very large purchase
    expression: amount >= 750
    severity: high
    action: block
    mode: disabled
    version: 1
  - id: small-repayment
    description: a token repayment
    expression: amount < 100
    severity: low
    action: alert
    mode: active
    version: 1
    applies_to: repayment
    kind: delinquency
"""

ACTIVE = """
rules:
  - id: big
    description: large purchase, or a tiny probe
    expression: amount >= 600 or amount < 60
    severity: medium
    action: review
    mode: active
    version: 1
  - id: huge
    description: very large purchase
    expression: amount >= 750
    severity: high
    action: block
    mode: disabled
    version: 1
"""


@pytest.fixture
def history(tmp_path: Path, make_event: EventFactory) -> Path:
    """Six transactions, two repayments, four labels (one known only on day 12), bad lines."""

    def tx(tx_id: str, amount: float, **when: float) -> dict[str, Any]:
        return make_event("transaction", event_id=tx_id, amount=amount, **when)

    def label(tx_id: str, is_fraud: bool, days: float) -> dict[str, Any]:
        return make_event("fraud_label", transaction_id=tx_id, is_fraud=is_fraud, days=days)

    t1 = tx("t1", 100, minutes=1)
    events: list[dict[str, Any] | str] = [
        make_event("credit_line_opened"),
        t1,
        tx("t2", 550, minutes=2),
        tx("t3", 700, minutes=3),
        tx("t4", 50, minutes=4),
        "{not json",
        "",
        tx("t5", 800, days=1),
        label("t2", True, days=2),
        label("t3", False, days=3),
        label("t4", True, days=4),
        make_event("repayment", amount=50, days=5),
        make_event("repayment", amount=500, days=6),
        tx("t6", 900, days=9),
        t1,  # the same event again: a duplicate
        tx("t7", 5000, minutes=10),  # nine days behind the clock: too late
        label("t5", True, days=12),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in events))
    return path


def run(path: Path, **options: Any) -> BacktestReport:
    return backtest(
        path, parse_rules(CANDIDATES), active=parse_rules(ACTIVE), settings=Settings(), **options
    )


def by_id(report: BacktestReport) -> dict[str, RuleStats]:
    return {stats.rule_id: stats for stats in report.rules}


AS_OF_DAY_10 = START + timedelta(days=10)


def test_counts_hits_rates_and_bad_lines(history: Path) -> None:
    report = run(history, as_of=AS_OF_DAY_10)
    rules = by_id(report)
    assert (report.events, report.transactions, report.repayments) == (16, 6, 2)
    assert report.bad_lines == {"duplicate_event_id": 1, "malformed_json": 1, "too_late": 1}
    assert report.days == 12.0
    assert (rules["big"].hits, rules["big"].hit_rate) == (4, 4 / 6)
    assert (rules["huge"].hits, rules["huge"].alerts_per_day) == (2, 2 / 12)
    assert rules["small-repayment"].hits == 1
    assert rules["small-repayment"].hit_rate == 0.5
    assert rules["small-repayment"].precision is None
    assert [rules[r].mode for r in ("big", "huge")] == ["shadow", "disabled"]


def test_precision_and_recall_use_only_labels_known_by_as_of(history: Path) -> None:
    report = run(history, as_of=AS_OF_DAY_10)
    big, huge = by_id(report)["big"], by_id(report)["huge"]
    assert (report.labels, report.labels_after_as_of, report.confirmed_frauds) == (3, 1, 2)
    # t2 fraud, t3 explicitly legitimate, t5 old enough but its label is not known yet
    assert (big.true_positives, big.matured_hits, big.pending) == (1, 3, 1)
    assert (big.precision, big.recall) == (1 / 3, 1 / 2)
    assert (huge.true_positives, huge.matured_hits, huge.pending) == (0, 1, 1)
    assert (huge.precision, huge.recall) == (0.0, 0.0)


def test_at_the_end_of_the_file_the_late_label_counts(history: Path) -> None:
    report = run(history)
    big, huge = by_id(report)["big"], by_id(report)["huge"]
    assert (report.labels, report.labels_after_as_of, report.confirmed_frauds) == (4, 0, 3)
    assert (big.precision, big.recall) == (2 / 3, 2 / 3)
    assert (huge.precision, huge.recall) == (1.0, 1 / 3)


def test_overlap_between_candidates(history: Path) -> None:
    rules = by_id(run(history))
    assert (rules["big"].overlap_share, rules["big"].overlaps_most_with) == (0.5, "huge")
    assert (rules["huge"].overlap_share, rules["huge"].overlaps_most_with) == (1.0, "big")
    assert rules["big"].jaccard == rules["huge"].jaccard == 0.5
    assert rules["small-repayment"].overlaps_most_with is None


def test_difference_from_the_active_version(history: Path) -> None:
    rules = by_id(run(history))
    big = rules["big"].active
    assert (big.status, big.active_version, big.active_mode) == ("changed", 1, "active")
    # candidate hits t2 t3 t5 t6; the active version hits t3 t4 t5 t6
    assert (big.active_hits, big.only_candidate, big.only_active) == (4, 1, 1)
    assert rules["huge"].active.status == "unchanged"
    assert rules["small-repayment"].active.status == "new"


def test_json_and_table_render(history: Path) -> None:
    report = run(history)
    data = json.loads(json.dumps(report.to_json()))
    assert data["bad_lines"]["too_late"] == 1
    assert data["as_of"] == "2026-03-14T09:00:00Z"
    assert [rule["rule_id"] for rule in data["rules"]] == ["big", "huge", "small-repayment"]
    assert data["rules"][0]["active"]["only_active"] == 1
    assert render_table(report).row_count == 3
    assert "malformed_json 1" in summary_line(report)


def test_progress_reaches_the_file_size(history: Path) -> None:
    seen: list[int] = []
    run(history, progress=seen.append)
    assert seen[-1] == history.stat().st_size


def test_a_rule_id_in_two_files_is_refused(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(ACTIVE)
    with pytest.raises(RuleError, match="duplicate rule id"):
        load_candidates([tmp_path / "a.yaml", tmp_path / "b.yaml"])
    assert len(load_candidates([tmp_path / "a.yaml"])) == 2


@pytest.fixture
def book(tmp_path: Path) -> Callable[[list[dict[str, Any]]], Path]:
    events = list(simulate(SimulationConfig(seed=3, accounts=150, days=30)))

    def write(extra: list[dict[str, Any]]) -> Path:
        path = tmp_path / f"book-{len(extra)}.jsonl"
        write_jsonl(events + extra, path)
        return path

    return write


def test_a_label_after_as_of_is_ignored_on_a_simulated_book(
    book: Callable[[list[dict[str, Any]]], Path], make_event: EventFactory
) -> None:
    library = load_rules(Settings().rules_path)
    plain = backtest(book([]), library, active=library)
    assert any(s.precision is not None for s in plain.rules)
    for stats in plain.rules:
        assert stats.precision is None or 0.0 <= stats.precision <= 1.0
        assert stats.recall is None or 0.0 <= stats.recall <= 1.0
    account_id, tx_id = _unlabelled_transaction(book([]))
    late = make_event(
        "fraud_label", account_id=account_id, transaction_id=tx_id, is_fraud=True, days=400
    )
    assert plain.as_of is not None
    end_of_book = datetime.fromtimestamp(plain.as_of, UTC)
    before = backtest(book([late]), library, active=library, as_of=end_of_book)
    after = backtest(book([late]), library, active=library)
    assert before.labels_after_as_of == 1
    assert _label_figures(before) == _label_figures(plain)
    assert after.confirmed_frauds == plain.confirmed_frauds + 1
    assert _label_figures(after) != _label_figures(plain)


def _unlabelled_transaction(path: Path) -> tuple[str, str]:
    """The first transaction no label calls a fraud."""
    events = [json.loads(line) for line in path.read_text().splitlines()]
    frauds = {e["transaction_id"] for e in events if e["type"] == "fraud_label" and e["is_fraud"]}
    return next(
        (e["account_id"], e["event_id"])
        for e in events
        if e["type"] == "transaction" and e["event_id"] not in frauds
    )


def _label_figures(report: BacktestReport) -> list[tuple[Any, ...]]:
    return [(s.true_positives, s.precision, s.recall) for s in report.rules]


def test_a_candidate_reads_named_lists_as_of_each_event(history: Path) -> None:
    watched = parse_rules(
        """
rules:
  - id: watched-merchant
    description: the merchant is on the watch list
    expression: merchant_id in list("watch")
    severity: low
    action: alert
    mode: shadow
    version: 1
"""
    )
    until_day_one = (START + timedelta(hours=12)).timestamp()
    lists = {"watch": NamedList("watch", "merchant", {"m-1": until_day_one})}
    report = backtest(
        history, watched, active=parse_rules(ACTIVE), settings=Settings(), lists=lists
    )
    assert by_id(report)["watched-merchant"].hits == 4  # t1..t4; t5 and t6 come after expiry
    unlisted = backtest(history, watched, active=parse_rules(ACTIVE), settings=Settings())
    assert by_id(unlisted)["watched-merchant"].hits == 0


BIG_SPENDS = """
rules:
  - id: big-spend
    description: a large transaction
    expression: amount >= 800
    severity: high
    action: review
    mode: active
    version: 1
"""


def test_precision_on_a_simulated_book_matches_a_count_by_hand(tmp_path: Path) -> None:
    """The rule reads only the event's amount, so its hits, the labels known at the end of
    the file and the matured hits can be counted straight from the JSONL."""
    path = tmp_path / "book.jsonl"
    write_jsonl(simulate(SimulationConfig(seed=9, accounts=200, days=45)), path)
    events = [json.loads(line) for line in path.read_text().splitlines()]

    def at(event: dict[str, Any]) -> float:
        return datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")).timestamp()

    end = max(at(e) for e in events)
    known = {e["transaction_id"]: e["is_fraud"] for e in events if e["type"] == "fraud_label"}
    hits = [e for e in events if e["type"] == "transaction" and e["amount"] >= 800]
    matured = [h for h in hits if h["event_id"] in known or at(h) <= end - 7 * 86400]
    frauds = [h for h in matured if known.get(h["event_id"]) is True]

    report = backtest(path, parse_rules(BIG_SPENDS), maturity_days=7)
    (stats,) = report.rules
    assert (stats.hits, stats.matured_hits, stats.true_positives) == (
        len(hits), len(matured), len(frauds),
    )  # fmt: skip
    assert stats.precision == pytest.approx(len(frauds) / len(matured))
    assert 0 < len(frauds) < len(matured) < len(hits)  # the example exercises every case
