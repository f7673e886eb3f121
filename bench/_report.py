"""The report: measurements from the sections' raw figures, the JSON file and the table."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._stats import Bar, measurement

__all__ = ["machine", "measurements", "render_table", "write_results"]

BARS = {
    "throughput": Bar("ratio", ">=", 0.30),
    "latency_p99": Bar("value", "<=", 100.0),
    "rule_eval": Bar("value", "<=", 5.0),
    "state_memory": Bar("value", "<=", 4096.0),
    "backtest": Bar("value", ">=", 10_000.0),
    # Ours, not the issue's: the models must leave room in the pipeline's per-event budget.
    "model_scoring": Bar("value", "<=", 100.0),
    "model_learning": Bar("value", "<=", 300.0),
    # A refit of the full buffer, once per event-time day, in the trainer's own process.
    "model_refit": Bar("value", "<=", 30.0),
    "pending_store": Bar("value", "<=", 1024.0),
}


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": load,
    }


def git_commit(repo: Path) -> dict[str, Any]:
    """HEAD and whether the tree had changes, or None outside a git checkout."""
    try:
        head = _git(repo, "rev-parse", "HEAD")
        dirty = bool(_git(repo, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": dirty}


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def throughput(raw: Mapping[str, Any]) -> dict[str, Any]:
    return measurement(
        raw["full_events_per_s"], "events/s", bar=BARS["throughput"],
        baseline=raw["bare_events_per_s"], details=raw,
    )  # fmt: skip


def latency(raw: Mapping[str, Any]) -> dict[str, Any]:
    pipeline, broker = raw["pipeline"], raw["broker"]
    details = dict(raw) | {"p50_ratio": _ratio(pipeline["p50_ms"], broker["p50_ms"])}
    return measurement(
        pipeline["p99_ms"], "ms", bar=BARS["latency_p99"], baseline=broker["p99_ms"],
        details=details,
    )  # fmt: skip


def rules(raw: Mapping[str, Any]) -> dict[str, Any]:
    return measurement(
        raw["us_per_rule_event"], "µs per rule per event", bar=BARS["rule_eval"],
        baseline=raw["baseline_us_per_rule_event"], details=raw,
    )  # fmt: skip


def memory(raw: Mapping[str, Any]) -> dict[str, Any]:
    return measurement(
        raw["bytes_per_account"], "bytes/account", bar=BARS["state_memory"],
        baseline=raw["baseline_bytes_per_account"], details=raw,
    )  # fmt: skip


def backtest(raw: Mapping[str, Any]) -> dict[str, Any]:
    return measurement(
        raw["events_per_s"], "events/s", bar=BARS["backtest"],
        baseline=raw["baseline_parse_only_events_per_s"], details=raw,
    )  # fmt: skip


def model_scoring(raw: Mapping[str, Any]) -> dict[str, Any]:
    return measurement(
        raw["us_per_event"], "µs per event (fraud score, reasons, pd)",
        bar=BARS["model_scoring"], baseline=raw["baseline_features_us_per_event"], details=raw,
    )  # fmt: skip


def model_learning(raw: Mapping[str, Any]) -> dict[str, Any]:
    return measurement(
        raw["us_per_transaction"], "µs per transaction (trainer)",
        bar=BARS["model_learning"], baseline=raw["baseline_features_us_per_event"], details=raw,
    )  # fmt: skip


def model_refit(raw: Mapping[str, Any]) -> dict[str, Any]:
    return measurement(
        raw["seconds"], "s per daily refit of the boosted candidate's full buffer",
        bar=BARS["model_refit"], baseline=raw["baseline_online_seconds"], details=raw,
    )  # fmt: skip


def pending(raw: Mapping[str, Any]) -> dict[str, Any]:
    return measurement(
        raw["bytes_per_example"], "bytes per pending example", bar=BARS["pending_store"],
        baseline=raw["baseline_raw_feature_bytes"], details=raw,
    )  # fmt: skip


def _ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else math.nan


MEASURES = {"throughput": throughput, "latency_p99": latency, "rule_eval": rules,
            "state_memory": memory, "backtest": backtest, "model_scoring": model_scoring,
            "model_learning": model_learning, "model_refit": model_refit,
            "pending_store": pending}  # fmt: skip


def measurements(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each section's raw figures as a measurement, or its error."""
    return {
        name: dict(raw[name]) if "error" in raw[name] else MEASURES[name](raw[name])
        for name in MEASURES
        if name in raw
    }


def write_results(
    report: Mapping[str, Any], folder: Path, started: datetime, latest: bool = True
) -> Path:
    """bench-<UTC timestamp>.json and, unless ``latest`` is false (a run of some sections
    only), latest.json, the same content."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"
    path = folder / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(text)
    if latest:
        (folder / "latest.json").write_text(text)
    return path


def _figure(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    if math.isnan(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def render_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per measurement: value, baseline, ratio, bar and PASS / FAIL / ERROR."""
    header = ("measurement", "value", "unit", "baseline", "ratio", "bar", "result")
    rows = [header]
    for name, result in results.items():
        if "error" in result:
            rows.append((name, "-", "-", "-", "-", str(BARS[name]), "ERROR"))
            continue
        rows.append((
            name, _figure(result["value"]), result["unit"], _figure(result["baseline"]),
            _figure(result["ratio"]), result["bar"]["text"],
            "PASS" if result["passed"] else "FAIL",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
