"""The eval's figures, checked against counts made by hand on tiny hand-made cases."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sklearn.metrics import average_precision_score, roc_auc_score

from duoli.evaluation import (
    History,
    Installment,
    Scored,
    card_precision_at_k,
    delinquency_figures,
    expected_hits,
    fraud_figures,
    judge,
    labelled_frauds,
    load_scores,
    measure,
    pd_at_due,
    read_history,
    render_table,
    scored,
    weekly_card_precision_at_k,
)
from duoli.simulate import write_jsonl

DAY = 86_400


def _history(**fields: Any) -> History:
    base: dict[str, Any] = {
        "frauds": frozenset(),
        "fraud_days": {},
        "installments": [],
        "defaulted": frozenset(),
        "first_at": 0.0,
        "end_at": 100 * DAY,
    }
    return History(**(base | fields))


# -- card precision@100 ------------------------------------------------------------------------


def test_card_precision_at_100_matches_a_count_by_hand() -> None:
    # Day 0: 150 accounts; c000 scores highest, c149 lowest. Frauds at ranks 1, 50 and 120:
    # the top 100 hold two of them, so the day scores 2/100.
    rows = [scored(f"c{n:03d}", 0.5, 1.0 - n / 1000, n in (0, 49, 119)) for n in range(150)]
    # Day 1: c000 scores highest but had a fraud on day 0, so it is no candidate. Of the two
    # left, "x" has a fraud that day: 1/2 (fewer than 100 candidates: all of them count).
    rows += [scored("c000", 1.2, 0.99, True), scored("x", 1.3, 0.2, True)]
    rows += [scored("y", 1.4, 0.7, False)]
    # Day 2: "x" is out now (fraud on day 1); "y" and "z" are left, neither with a fraud: 0/2.
    rows += [scored("x", 2.1, 0.9, False), scored("y", 2.2, 0.1, False)]
    rows += [scored("z", 2.3, 0.3, False)]
    fraud_days = {"c000": {0, 1}, "c049": {0}, "c119": {0}, "x": {1}}
    value, days = card_precision_at_k(rows, fraud_days)
    assert days == 3
    assert value == pytest.approx((2 / 100 + 1 / 2 + 0 / 2) / 3, abs=1e-4)


def test_a_fraud_missed_outside_the_top_k_leaves_the_account_a_candidate() -> None:
    # Day 0, k=1: "a" tops the list with a fraud (confirmed); "b" also has one, unseen.
    rows = [scored("a", 0.1, 0.9, True), scored("b", 0.2, 0.5, True)]
    # Day 1: "a" is out; "b" was never confirmed, so it still counts, and has a fraud.
    rows += [scored("a", 1.1, 0.9, True), scored("b", 1.2, 0.8, True), scored("c", 1.3, 0.1, False)]
    assert card_precision_at_k(rows, {"a": {0, 1}, "b": {0, 1}}, k=1) == (1.0, 2)


def test_an_account_ranks_by_its_highest_score_of_the_day() -> None:
    rows = [scored("a", 0.1, 0.1, True), scored("a", 0.2, 0.95, True), scored("b", 0.3, 0.5, False)]
    assert card_precision_at_k(rows, {"a": {0}}, k=1) == (1.0, 1)
    rows = [scored("a", 0.1, 0.1, True), scored("b", 0.3, 0.5, False)]
    assert card_precision_at_k(rows, {"a": {0}}, k=1) == (0.0, 1)


def test_a_fraud_later_the_same_day_does_not_exclude_the_account_that_day() -> None:
    rows = [scored("a", 0.1, 0.9, False), scored("a", 0.9, 0.2, True)]
    assert card_precision_at_k(rows, {"a": {0}}, k=1) == (1.0, 1)


def test_a_tie_across_the_cut_counts_pro_rata_whatever_the_account_ids() -> None:
    ranked = [(0.9, True), (0.4, True), (0.4, False), (0.4, False), (0.1, True)]
    assert expected_hits(ranked, 2) == pytest.approx(1 + 1 / 3)
    rows = [scored(name, 0, 0.0, name == "b") for name in "abcd"]  # rules-only: all zero
    assert card_precision_at_k(rows, {"b": {0}}, k=2) == (0.25, 1)


def test_the_ceiling_is_what_a_perfect_score_would_reach() -> None:
    # Day 0: 3 frauds among 150 accounts, whatever the scores: a perfect top 100 holds all 3.
    rows = [scored(f"c{n:03d}", 0.5, 0.5, n in (0, 49, 119)) for n in range(150)]
    # Day 1: c000 is out; "x" is the only fraud of 2 candidates; day 2: nobody new.
    rows += [scored("x", 1.3, 0.0, True), scored("y", 1.4, 0.7, False)]
    rows += [scored("y", 2.2, 0.1, False)]
    fraud_days = {"c000": {0}, "c049": {0}, "c119": {0}, "x": {1}}
    figures = fraud_figures(rows, fraud_days)
    assert figures["card_precision_at_100_ceiling"] == pytest.approx(
        (3 / 100 + 1 / 2 + 0) / 3, abs=1e-4
    )
    assert figures["card_precision_at_100"] < figures["card_precision_at_100_ceiling"]


def test_no_scored_day_gives_no_figure() -> None:
    assert card_precision_at_k([], {}) == (None, 0)


def test_a_weeks_card_precision_confirms_accounts_afresh_each_week() -> None:
    # "a" is hit on days 1, 3 and 8; "b" never. Over the history "a" is out from day 2 on,
    # so days 3 and 8 score 0 of 1 candidate; a week at a time, day 8 counts "a" again.
    rows = [scored(account, day + 0.5, 0.9 if account == "a" else 0.1, account == "a")
            for day in (1, 3, 8) for account in ("a", "b")]  # fmt: skip
    fraud_days = {"a": {1, 3, 8}}
    assert card_precision_at_k(rows, fraud_days, k=1) == (pytest.approx(1 / 3, abs=1e-4), 3)
    assert weekly_card_precision_at_k(rows, fraud_days, k=1) == pytest.approx(2 / 3, abs=1e-4)
    assert weekly_card_precision_at_k([], {}) is None


# -- fraud figures ----------------------------------------------------------------------------


def test_fraud_figures_are_sklearns_on_every_scored_transaction() -> None:
    scores = [0.9, 0.1, 0.8, 0.3, 0.35, 0.05, 0.6]
    labels = [True, False, False, True, False, False, True]
    rows = [
        scored(f"a{n}", n / 10, s, y) for n, (s, y) in enumerate(zip(scores, labels, strict=True))
    ]
    figures = fraud_figures(rows, {})
    assert figures["roc_auc"] == round(roc_auc_score(labels, scores), 4)
    assert figures["average_precision"] == round(average_precision_score(labels, scores), 4)
    assert (figures["transactions"], figures["frauds"]) == (7, 3)


def test_a_single_class_gives_na_rather_than_an_error() -> None:
    figures = fraud_figures([scored("a", 0, 0.3, False), scored("b", 0, 0.1, False)], {})
    assert figures["roc_auc"] is None
    assert figures["average_precision"] is None


def test_after_warm_up_only_counts_days_from_the_first_day_plus_eight() -> None:
    rows = [scored("a", day, 0.9 if day == 9 else 0.1, day in (2, 9)) for day in range(12)]
    rows += [scored("b", day + 0.5, 0.5, False) for day in range(12)]
    history = _history(first_at=0.25 * DAY, fraud_days={"a": {2, 9}})
    report = measure(rows, history, "sparse")
    warm = report["fraud_after_warmup"]
    assert (warm["transactions"], warm["frauds"], warm["from"]) == (8, 1, "1970-01-09")
    assert warm["roc_auc"] == 1.0
    assert report["fraud"]["roc_auc"] < 1.0


# -- pd at due time ----------------------------------------------------------------------------


def test_pd_is_taken_from_the_accounts_last_score_at_or_before_due() -> None:
    rows = [
        scored("a", 1, 0.0, False, pd=0.1),
        scored("a", 2, 0.0, False, pd=0.2),  # exactly at due: still counts
        scored("a", 3, 0.0, False, pd=0.9),  # after due: too late
        scored("b", 1.5, 0.0, False, pd=0.7),  # another account's
        scored("c", 1, 0.0, False),  # a record without pd
    ]
    bills = [
        Installment("a-1", "a", 2 * DAY),
        Installment("a-0", "a", 0.5 * DAY),  # before any score of "a"
        Installment("b-1", "b", 1.6 * DAY),
        Installment("c-1", "c", 5 * DAY),
        Installment("d-1", "d", 5 * DAY),  # never scored
    ]
    pairs, skipped = pd_at_due(rows, bills)
    assert [(bill.installment_id, pd) for bill, pd in pairs] == [("a-1", 0.2), ("b-1", 0.7)]
    assert skipped == {"no_score": 2, "no_pd": 1}


def test_delinquency_auc_counts_only_bills_whose_outcome_is_known() -> None:
    rows = [scored(name, 1, 0.0, False, pd=pd) for name, pd in (("a", 0.8), ("b", 0.2))]
    rows += [scored("c", 1, 0.0, False, pd=0.1), scored("d", 1, 0.0, False, pd=0.9)]
    bills = [Installment(f"{name}-1", name, 2 * DAY) for name in "abc"]
    bills.append(Installment("d-1", "d", 80 * DAY))  # 30 days past due is after the end
    history = _history(installments=bills, defaulted=frozenset({"a-1"}), end_at=90 * DAY)
    figures = delinquency_figures(rows, history)
    assert figures["roc_auc"] == 1.0
    assert (figures["measured"], figures["measured_defaulted"]) == (3, 1)
    assert (figures["defaulted"], figures["without_outcome_yet"]) == (1, 1)


def test_without_pd_in_the_scores_delinquency_is_na_and_its_bar_fails() -> None:
    rows = [scored("a", 1, 0.9, True), scored("b", 1, 0.1, False)]
    bills = [Installment("a-1", "a", 2 * DAY), Installment("b-1", "b", 2 * DAY)]
    history = _history(installments=bills, defaulted=frozenset({"a-1"}), fraud_days={"a": {1}})
    report = measure(rows, history, "default")
    assert report["delinquency"]["roc_auc"] is None
    verdicts = {verdict["figure"]: verdict["passed"] for verdict in report["bars"]}
    assert verdicts == {
        "fraud.roc_auc": True,
        "fraud.average_precision": True,
        "delinquency.roc_auc": False,
    }
    assert report["passed"] is False


# -- bars and the table ------------------------------------------------------------------------


def test_the_sparse_bars_judge_card_precision_and_pass_together() -> None:
    report = {"fraud": {"roc_auc": 0.85, "average_precision": 0.6, "card_precision_at_100": 0.3}}
    assert all(verdict["passed"] for verdict in judge(report, "sparse"))
    report["fraud"]["card_precision_at_100"] = 0.249
    assert [verdict["passed"] for verdict in judge(report, "sparse")] == [True, True, False]


def test_the_table_shows_each_figure_its_bar_and_verdict() -> None:
    rows = [scored("a", 9, 0.9, True), scored("b", 9, 0.1, False)]
    report = measure(rows, _history(fraud_days={"a": {9}}), "sparse")
    console = Console(record=True, width=140)
    console.print(render_table(report))
    text = console.export_text()
    assert "fraud.card_precision_at_100" in text
    assert "fraud.card_precision_at_100_weekly" in text
    assert "PASS" in text and "n/a" in text  # delinquency: no installments
    assert ">= 0.85" in text


def test_each_fraud_pattern_is_ranked_against_every_legitimate_transaction() -> None:
    legit = [scored(f"l{i}", 9, score, False) for i, score in enumerate((0.1, 0.2, 0.3, 0.4))]
    frauds = [
        Scored("a", 9 * DAY, 0.35, True, pattern="takeover"),  # above 3 of 4 legit
        Scored("b", 9 * DAY, 0.9, True, pattern="takeover"),  # above all 4
        Scored("c", 9 * DAY, 0.2, True, pattern="merchant"),  # ties one, above one
        Scored("d", 9 * DAY, 0.5, True),  # no pattern known: counted in the totals only
    ]
    ranks = fraud_figures(legit + frauds, {})["by_pattern"]
    assert ranks == {
        "merchant": {"frauds": 1, "roc_auc": pytest.approx(1.5 / 4)},
        "takeover": {"frauds": 2, "roc_auc": pytest.approx((3 + 4) / 8)},
    }
    report = measure(legit + frauds, _history(), "default")
    console = Console(record=True, width=140)
    console.print(render_table(report))
    assert "  merchant (1)" in console.export_text()


# -- reading a history file and its scores ------------------------------------------------------


@pytest.fixture
def history_file(tmp_path: Path, make_event: Callable[..., dict[str, Any]]) -> Path:
    """Two accounts, a label of each kind, bills repaid by name, by age, late and never."""
    events = [
        make_event("transaction", event_id="t1", account_id="a"),
        make_event("transaction", event_id="t2", account_id="a", days=1),
        make_event("transaction", event_id="t3", account_id="b", days=2),
        make_event("fraud_label", transaction_id="t2", days=8, account_id="a"),
        make_event("fraud_label", transaction_id="t3", is_fraud=False, days=9, account_id="b"),
        # due on day 30 (the factory's default); repaid on time by name
        make_event("installment_due", installment_id="a-1", amount_due=100.0, account_id="a"),
        make_event("repayment", installment_id="a-1", amount=100.0, days=20, account_id="a"),
        # due on day 31 and 32; an unnamed payment settles the older one only
        make_event(
            "installment_due", installment_id="b-1", amount_due=50.0, account_id="b", days=1
        ),
        make_event(
            "installment_due", installment_id="b-2", amount_due=50.0, account_id="b", days=2
        ),
        make_event("repayment", amount=60.0, days=25, account_id="b"),
        # due on day 33, repaid 31 days late: a default
        make_event(
            "installment_due", installment_id="a-2", amount_due=80.0, account_id="a", days=3
        ),
        make_event("repayment", installment_id="a-2", amount=80.0, days=64, account_id="a"),
        # due on day 60: 30 days past due is after the end of the file
        make_event(
            "installment_due", installment_id="a-3", amount_due=80.0, account_id="a", days=30
        ),
        make_event("transaction", event_id="t4", account_id="b", days=70),
    ]
    path = tmp_path / "history.jsonl"
    write_jsonl(sorted(events, key=lambda event: event["occurred_at"]), path)
    return path


def test_a_files_truth_comes_from_its_labels_and_its_repayments(history_file: Path) -> None:
    frauds = labelled_frauds(history_file)
    assert frauds == {"t2"}
    history = read_history(history_file, frauds)
    assert history.fraud_days == {"a": {int(history.first_at // DAY) + 1}}
    assert [bill.installment_id for bill in history.mature()] == ["a-1", "b-1", "b-2", "a-2"]
    assert history.defaulted == {"b-2", "a-2", "a-3"}  # a-3 has no outcome yet: not measured


def test_scores_are_read_once_per_event_id_and_pd_may_be_missing(tmp_path: Path) -> None:
    records = [
        {"event_id": "t1", "account_id": "a", "occurred_at": "2026-01-01T00:00:00Z",
         "fraud_score": 0.25, "pd": 0.05},
        {"event_id": "t1", "account_id": "a", "occurred_at": "2026-01-01T00:00:00Z",
         "fraud_score": 0.25, "pd": 0.05},
        {"event_id": "t2", "account_id": "b", "occurred_at": "2026-01-02T12:00:00Z",
         "fraud_score": 0.75},
    ]  # fmt: skip
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    rows = load_scores(path, frozenset({"t2"}))
    at = 1767312000.0  # 2026-01-02T00:00:00Z
    assert rows == [
        Scored("a", at - DAY, 0.25, False, 0.05),
        Scored("b", at + DAY / 2, 0.75, True, None),
    ]
