"""``duoli eval`` end to end: simulate, replay through the real broker and workers, report.

Tiny data cannot meet the bars, so these tests check that every figure is reported and
that the exit code follows the verdict, not the figures' values.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

FRAUD_FIGURES = {"roc_auc", "average_precision", "card_precision_at_100", "transactions", "days"}
DELINQUENCY_FIGURES = {"roc_auc", "installments", "measured", "skipped_no_score", "skipped_no_pd"}


def run_eval(args: list[str], env: dict[str, str], results: Path) -> tuple[int, str, dict]:
    """Run the command as a user does; return its exit code, its output and the report."""
    done = subprocess.run(
        [sys.executable, "-m", "duoli", "eval", *args, "--results-dir", str(results)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    reports = sorted(results.glob("eval-*.json"))
    assert len(reports) == 1, done.stderr[-3000:]
    return done.returncode, done.stdout, json.loads(reports[0].read_text())


def assert_every_figure(report: dict[str, Any], code: int, stdout: str) -> None:
    assert set(report["fraud"]) >= FRAUD_FIGURES
    assert set(report["fraud_after_warmup"]) >= FRAUD_FIGURES
    assert set(report["delinquency"]) >= DELINQUENCY_FIGURES
    assert report["fraud"]["transactions"] > 0
    assert report["fraud"]["roc_auc"] is not None
    assert report["fraud"]["average_precision"] is not None
    assert report["fraud"]["card_precision_at_100"] is not None
    assert len(report["bars"]) == 3
    assert all(isinstance(verdict["passed"], bool) for verdict in report["bars"])
    assert report["passed"] == all(verdict["passed"] for verdict in report["bars"])
    assert code == (0 if report["passed"] else 1)
    assert "fraud.roc_auc" in stdout and ("PASS" in stdout or "FAIL" in stdout)


def test_eval_simulates_replays_and_reports_every_figure(isolated_env, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--accounts", "40", "--days", "20", "--seed", "3", "--out", str(out)]
    code, stdout, report = run_eval(args, isolated_env, tmp_path / "results")
    assert_every_figure(report, code, stdout)
    assert report["profile"] == "default"
    assert report["delinquency"]["installments"] > 0
    assert report["replay"]["scores"] == report["fraud"]["transactions"]
    for name in ("events.jsonl", "truth.json", "scores.jsonl"):
        assert (out / name).stat().st_size > 0
    truth = json.loads((out / "truth.json").read_text())
    assert len(truth["fraud_transactions"]) >= report["fraud"]["frauds"] > 0


def test_eval_takes_a_history_file_and_its_labels_as_the_truth(
    isolated_env, tmp_path: Path
) -> None:
    events = tmp_path / "sparse.jsonl"
    subprocess.run(
        [sys.executable, "-m", "duoli", "simulate", "--profile", "sparse", "--accounts", "60",
         "--days", "12", "--seed", "4", "--out", str(events)],
        env=isolated_env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    labelled = {
        event["transaction_id"]
        for event in map(json.loads, events.read_text().splitlines())
        if event["type"] == "fraud_label"
    }
    args = ["--profile", "sparse", "--events", str(events), "--out", str(tmp_path / "out")]
    code, stdout, report = run_eval(args, isolated_env, tmp_path / "results")
    assert_every_figure(report, code, stdout)
    assert report["inputs"]["truth"] == "labels"
    assert report["fraud"]["frauds"] == len(labelled)
    assert report["delinquency"]["installments"] == 0
    assert report["delinquency"]["roc_auc"] is None
