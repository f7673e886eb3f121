"""Live rule statistics: what each activity adds, and precision only over matured days."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from duoli.rule_stats import (
    RuleActivity,
    clock_fields,
    counters,
    latest,
    record,
    rule_summary,
    stats_key,
)

DAY = 86_400.0


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_each_kind_of_hit_counts_in_its_own_counter() -> None:
    activity = RuleActivity(
        at("2026-03-02T09:00:00"),
        hits=("active",),
        shadow=("trial",),
        snoozed=("quiet",),
        errors=(("broken", "ZeroDivisionError: division by zero"),),
        measured=("active", "trial", "quiet"),
    )
    assert counters(activity) == {
        "rule_stats:active": {"hits": 1, "hits:2026-03-02": 1},
        "rule_stats:trial": {"shadow_hits": 1, "hits:2026-03-02": 1},
        "rule_stats:quiet": {"snoozed_hits": 1, "hits:2026-03-02": 1},
        "rule_stats:broken": {"errors": 1},
    }
    assert latest(activity) == {
        "rule_stats:active": {"last_hit_at": "2026-03-02T09:00:00Z"},
        "rule_stats:trial": {"last_hit_at": "2026-03-02T09:00:00Z"},
        "rule_stats:quiet": {"last_hit_at": "2026-03-02T09:00:00Z"},
        "rule_stats:broken": {"last_error": "ZeroDivisionError: division by zero"},
    }


def test_a_fraud_credit_counts_on_the_transactions_day() -> None:
    credit = RuleActivity(at("2026-03-02T23:59:00"), frauds=("r1", "r2"))
    assert counters(credit) == {
        "rule_stats:r1": {"frauds:2026-03-02": 1},
        "rule_stats:r2": {"frauds:2026-03-02": 1},
    }
    assert latest(credit) == {}  # a label is not a hit


class _Sink:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.hashes: dict[str, dict[str, Any]] = {}

    def increment(self, suffix: str, name: str, amount: int = 1) -> None:
        self.counts[suffix, name] = self.counts.get((suffix, name), 0) + amount

    def put_hash(self, suffix: str, fields: dict[str, Any]) -> None:
        self.hashes.setdefault(suffix, {}).update(fields)


def test_record_queues_the_counters_and_the_latest_fields() -> None:
    sink = _Sink()
    for minute in (1, 2):
        record(sink, RuleActivity(at(f"2026-03-02T09:0{minute}:00"), hits=("r1",)))
    assert sink.counts == {("rule_stats:r1", "hits"): 2}
    assert sink.hashes == {"rule_stats:r1": {"last_hit_at": "2026-03-02T09:02:00Z"}}


def test_clock_fields_name_each_partition() -> None:
    assert clock_fields([("0", 10.0), ("3", 12.5)]) == {"clock:0": 10.0, "clock:3": 12.5}


# Precision --------------------------------------------------------------------------------

# Hand-counted: with the clock at 2026-03-20 12:00 and a 7-day maturity, a day matures
# once all of it is before 2026-03-13 12:00, so 03-01 .. 03-12 count and 03-13 does not.
STORED = {
    "hits": "9",
    "shadow_hits": "0",
    "snoozed_hits": "2",
    "errors": "1",
    "last_error": "ZeroDivisionError: division by zero",
    "last_hit_at": "2026-03-19T08:00:00Z",
    "hits:2026-03-01": "4",
    "frauds:2026-03-01": "1",
    "hits:2026-03-12": "2",
    "frauds:2026-03-12": "2",
    "hits:2026-03-13": "3",  # half matured: not counted
    "frauds:2026-03-13": "3",
    "hits:2026-03-19": "2",
}
CLOCK = at("2026-03-20T12:00:00")


def test_precision_counts_only_matured_days() -> None:
    summary = rule_summary("r1", STORED, CLOCK, maturity_days=7)
    assert summary == {
        "rule_id": "r1",
        "hits": 9,
        "shadow_hits": 0,
        "snoozed_hits": 2,
        "errors": 1,
        "last_error": "ZeroDivisionError: division by zero",
        "last_hit_at": "2026-03-19T08:00:00Z",
        "matured_hits": 6,
        "confirmed_frauds": 3,
        "precision": pytest.approx(0.5),
    }


def test_a_longer_maturity_leaves_fewer_days_counted() -> None:
    summary = rule_summary("r1", STORED, CLOCK, maturity_days=18)
    assert (summary["matured_hits"], summary["confirmed_frauds"]) == (4, 1)
    assert summary["precision"] == pytest.approx(0.25)


@pytest.mark.parametrize("clock", [None, at("2026-03-05T00:00:00")])
def test_precision_is_none_before_any_hit_matured(clock: float | None) -> None:
    summary = rule_summary("r1", STORED, clock, maturity_days=7)
    assert (summary["matured_hits"], summary["confirmed_frauds"]) == (0, 0)
    assert summary["precision"] is None


def test_a_rule_with_only_errors_reads_as_zero_hits() -> None:
    summary = rule_summary("broken", {"errors": "3", "last_error": "boom"}, CLOCK, 7)
    assert (summary["hits"], summary["errors"], summary["last_hit_at"]) == (0, 3, None)
    assert summary["precision"] is None


def test_stats_keys_sit_under_the_rule_stats_hash() -> None:
    assert stats_key("velocity-burst-1h") == "rule_stats:velocity-burst-1h"
