"""The bench's pure helpers: percentile math, pass/fail, rates, rules and memory on tiny input.

No broker and no Redis: the broker-side sections are exercised by ``python -m bench``.
"""

from __future__ import annotations

import doctest
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench import _latency, _report, _rules, _stats, _throughput
from bench._kafka import CoresMeter, cpu_seconds
from bench._memory import build_states, fresh_states, memory_section, traced_bytes
from bench._rules import feature_dicts, fifty_rules, plain_lambdas, rules_section
from bench._stats import Bar, latency_summary, measurement, percentile
from bench._throughput import Sample, drain_rate
from duoli.events import Transaction, parse_event
from duoli.simulate import SimulationConfig, simulate
from rules import LIBRARY_DIR, load_rules

TINY_BOOK = SimulationConfig(seed=3, accounts=30, days=12)


@pytest.mark.parametrize("module", [_stats, _throughput, _latency, _rules, _report])
def test_docstring_examples_run(module: object) -> None:
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert failures == 0


# -- percentiles and bars ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([3.0, 1.0, 2.0], 0, 1.0),
        ([3.0, 1.0, 2.0], 100, 3.0),
        (list(map(float, range(1, 101))), 99, 99.01),
        ([7.0], 99, 7.0),
    ],
)
def test_percentile_interpolates_between_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan_and_q_is_checked() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], 101)


def test_latency_summary_is_in_milliseconds_and_counts_what_was_lost() -> None:
    summary = latency_summary([0.010, 0.020, 0.030], sent=4)
    assert summary["p50_ms"] == 20.0
    assert summary["max_ms"] == 30.0
    assert (summary["received"], summary["sent"]) == (3, 4)


def test_a_ratio_bar_judges_the_ratio_and_a_value_bar_the_value() -> None:
    slow = measurement(20.0, "events/s", bar=Bar("ratio", ">=", 0.3), baseline=100.0)
    fast = measurement(40.0, "events/s", bar=Bar("ratio", ">=", 0.3), baseline=100.0)
    assert (slow["passed"], slow["ratio"]) == (False, 0.2)
    assert fast["passed"]
    assert measurement(4.0, "µs", bar=Bar("value", "<=", 5.0), baseline=1.0)["passed"]
    assert not measurement(math.nan, "ms", bar=Bar("value", "<=", 100.0), baseline=1.0)["passed"]


def test_table_says_fail_and_error_plainly() -> None:
    raw: dict[str, dict[str, Any]] = {
        "rule_eval": {"us_per_rule_event": 9.0, "baseline_us_per_rule_event": 1.0},
        "state_memory": {"error": "RuntimeError: boom"},
    }
    table = _report.render_table(_report.measurements(raw))
    assert "FAIL" in table.splitlines()[2]
    assert "ERROR" in table.splitlines()[3]


def test_results_are_written_twice(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    path = _report.write_results({"a": 1}, tmp_path, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert path.name == "bench-20260102T030405Z.json"
    assert json.loads((tmp_path / "latest.json").read_text()) == {"a": 1}


def test_a_run_of_some_sections_leaves_latest_json_to_the_last_full_run(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    _report.write_results({"a": 1}, tmp_path, datetime(2026, 1, 2, tzinfo=UTC))
    partial = _report.write_results(
        {"b": 2}, tmp_path, datetime(2026, 1, 3, tzinfo=UTC), latest=False
    )
    assert json.loads(partial.read_text()) == {"b": 2}
    assert json.loads((tmp_path / "latest.json").read_text()) == {"a": 1}


def test_only_the_named_sections_run(tmp_path: Path) -> None:
    from bench.__main__ import QUICK, run_all
    from duoli.settings import load_settings

    raw = run_all(QUICK, load_settings(), tmp_path, only=["rule_eval"])
    assert list(raw) == ["rule_eval"]
    assert raw["rule_eval"]["us_per_rule_event"] > 0


# -- throughput and latency helpers --------------------------------------------------------


def test_drain_rate_starts_at_the_first_commit_and_ends_at_the_end_offset() -> None:
    samples = [Sample(0.0, 0, 0.0), Sample(0.5, 0, 0.1), Sample(1.0, 200, 0.4),
               Sample(2.0, 700, 1.0), Sample(3.0, 1200, 1.6), Sample(3.5, 1200, 1.6)]  # fmt: skip
    drain = drain_rate(samples, end=1200)
    assert (drain.events, drain.seconds) == (1000, 2.0)
    assert drain.rate == 500.0
    assert drain.cpu_ms_per_event == pytest.approx(1.2)


def test_drain_rate_refuses_a_consumer_that_never_finished() -> None:
    with pytest.raises(ValueError, match="never reached"):
        drain_rate([Sample(0.0, 0, 0.0), Sample(1.0, 10, 0.0)], end=100)


def test_probe_transactions_are_valid_and_spread_over_accounts() -> None:
    keys = set()
    for index in range(3):
        key, value, event_id = _latency.transaction("p", index, 1_780_000_000.0)
        event = parse_event(value)
        assert isinstance(event, Transaction)
        assert event.event_id == event_id
        keys.add(key)
    assert len(keys) == 3


# -- rules ---------------------------------------------------------------------------------


def test_fifty_rules_are_active_transaction_rules_with_unique_ids() -> None:
    ruleset = fifty_rules(load_rules(LIBRARY_DIR).rules)
    assert len(ruleset) == 50
    assert {(r.mode, r.applies_to) for r in ruleset.rules} == {("active", "transaction")}


def test_plain_lambdas_agree_with_the_rule_engine() -> None:
    ruleset = fifty_rules(load_rules(LIBRARY_DIR).rules)
    functions = plain_lambdas(ruleset)
    dicts = feature_dicts(simulate(TINY_BOOK))
    assert dicts
    for facts in dicts:
        engine_hits = [hit.rule_id for hit in ruleset.evaluate(facts).hits]
        plain_hits = [r.id for r, fn in zip(ruleset.rules, functions, strict=True) if fn(facts)]
        assert engine_hits == plain_hits


def test_rules_section_reports_a_cost_per_rule_and_event() -> None:
    raw = rules_section(TINY_BOOK, repeats=1)
    assert raw["rules"] == 50 and raw["rule_errors"] == 0
    assert raw["hits"] == raw["baseline_hits"]
    assert raw["baseline_us_per_rule_event"] > 0
    assert 0 < raw["us_per_rule_event"] < 1000


# -- memory --------------------------------------------------------------------------------


def test_traced_bytes_sees_what_the_result_holds() -> None:
    held, states = traced_bytes(lambda: fresh_states(200))
    assert len(states) == 200
    assert 200 * 200 < held < 200 * 10_000


def test_history_costs_more_than_a_fresh_account() -> None:
    raw = memory_section(accounts=30, days=12)
    assert raw["accounts"] >= 30
    assert raw["mean_transactions_held"] > 0
    assert raw["bytes_per_account"] > raw["baseline_bytes_per_account"] > 0


def test_build_states_applies_every_event_to_its_account() -> None:
    lines = [json.dumps(event).encode() for event in simulate(TINY_BOOK)]
    states = build_states(lines)
    opened = {json.loads(line)["account_id"] for line in lines}
    assert set(states) == opened


def test_the_cores_meter_divides_each_process_cpu_by_the_time_elapsed() -> None:
    """A reader that counts wall time is one core busy; the process's own CPU, spinning
    in this thread, is about one too; the machine's busy cores include it."""
    meter = CoresMeter({"clock": time.monotonic, "spinning": time.process_time})
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        pass
    cores = meter.cores()
    assert set(cores) == {"clock_cpu_cores", "spinning_cpu_cores", "machine_busy_cores"}
    assert cores["clock_cpu_cores"] == pytest.approx(1.0, abs=0.02)
    assert 0.5 <= cores["spinning_cpu_cores"] <= 1.05
    assert 0.5 <= cores["machine_busy_cores"] <= (os.cpu_count() or 1) + 0.05


SPINNER = "while True: pass"
# A child that starts a spinning grandchild, tells its pid, and waits.
STARTER = f"""import subprocess, sys
spinner = subprocess.Popen([sys.executable, "-c", {SPINNER!r}])
print(spinner.pid, flush=True)
spinner.wait()
"""


def test_a_process_cpu_counts_the_processes_it_started_and_theirs() -> None:
    child = subprocess.Popen([sys.executable, "-c", STARTER], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    try:
        time.sleep(1.0)
        parent_only = time.process_time()
        with_descendants = cpu_seconds(os.getpid())
        assert with_descendants > parent_only + 0.5  # the spinning grandchild's share
    finally:
        os.kill(grandchild, signal.SIGKILL)
        child.wait()
        child.stdout.close()
