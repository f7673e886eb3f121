"""``python -m bench [--quick] [--only NAME ...]``: every measurement (or those named) in one
run, written to bench/results/.

Exits 0 even when a bar fails (the table and the JSON say FAIL); only a crash of the
harness itself exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # kafka-python 3 at import
    import kafka  # noqa: F401

from bench import _report
from bench._backtest import backtest_section
from bench._kafka import REPO, book_records
from bench._latency import latency_section
from bench._memory import memory_section
from bench._models import learning_section, pending_section, refit_section, scoring_section
from bench._rules import rules_section
from bench._throughput import throughput_section
from connectors.broker import EmbeddedBroker
from duoli.settings import Settings, load_settings

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Sizes:
    events: int  # pre-produced events for the throughput runs
    throughput_pairs: int  # bare-then-full runs; the median ratio is reported
    latency_seconds: float
    latency_rate: float
    accounts: int  # simulated accounts for the memory figure


FULL = Sizes(
    events=40_000, throughput_pairs=3, latency_seconds=20.0, latency_rate=500.0, accounts=100_000
)
QUICK = Sizes(
    events=8_000, throughput_pairs=1, latency_seconds=8.0, latency_rate=500.0, accounts=10_000
)


@dataclass(frozen=True)
class Section:
    label: str
    run: Callable[[], dict[str, Any]]


def _section(name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one section; a failure is reported in its place and the others still run."""
    print(f"[bench] {name} ...", flush=True)
    started = time.monotonic()
    try:
        raw = run()
    except Exception as error:  # one broken section must not lose the other figures
        traceback.print_exc()
        raw = {"error": f"{type(error).__name__}: {error}"}
    raw["section_seconds"] = round(time.monotonic() - started, 1)
    print(f"[bench] {name} done in {raw['section_seconds']} s", flush=True)
    return raw


def sections(sizes: Sizes, settings: Settings, log_dir: Path) -> dict[str, Section]:
    """Every measurement, by its name in the report: its label and how to run it."""

    # Each section has a broker of its own. Tansu keeps every record in memory and each
    # request costs it more as they pile up: at a steady 500 events/s, over four runs of
    # 20 s, its CPU rose from 0.53 to 0.94 of a core and the pipeline's p99 from 140 to
    # 623 ms (`python -m bench.load_curve 500 500 500 500 --seconds 20`). The throughput
    # runs leave over a million records behind them.
    def throughput() -> dict[str, Any]:
        records = book_records(sizes.events)
        with EmbeddedBroker(log_path=log_dir / "tansu.log") as broker:
            return throughput_section(
                broker.url, settings, records, log_dir, sizes.throughput_pairs
            )

    def latency() -> dict[str, Any]:
        with EmbeddedBroker(log_path=log_dir / "tansu-latency.log") as broker:
            return latency_section(
                broker.url, settings, sizes.latency_rate, sizes.latency_seconds, log_dir,
                broker.pid,
            )  # fmt: skip

    return {
        "rule_eval": Section("rules", rules_section),
        "backtest": Section("backtest", backtest_section),
        "model_scoring": Section("model scoring", scoring_section),
        "model_learning": Section("model learning", learning_section),
        "model_refit": Section("model refit", refit_section),
        "pending_store": Section("pending store", pending_section),
        "throughput": Section("throughput", throughput),
        "latency_p99": Section("latency", latency),
        "state_memory": Section("memory", lambda: memory_section(sizes.accounts)),
    }


def run_all(
    sizes: Sizes, settings: Settings, log_dir: Path, only: Collection[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Every section in turn, or those named in ``only``."""
    return {
        name: _section(section.label, section.run)
        for name, section in sections(sizes, settings, log_dir).items()
        if only is None or name in only
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller run (about 2 minutes)")
    parser.add_argument(
        "--only", nargs="+", choices=list(_report.MEASURES), metavar="MEASUREMENT",
        help=f"run these measurements alone: {', '.join(_report.MEASURES)}",
    )  # fmt: skip
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started, clock = datetime.now(UTC), time.monotonic()
    settings = load_settings().model_copy(update={"kafka_url": None})
    log_dir = Path(tempfile.mkdtemp(prefix="duoli-bench-"))
    print(f"[bench] {'quick' if args.quick else 'full'} run; logs in {log_dir}", flush=True)
    raw = run_all(sizes, settings, log_dir, args.only)
    results = _report.measurements(raw)
    report = {
        "timestamp": started.isoformat().replace("+00:00", "Z"),
        "mode": "quick" if args.quick else "full",
        "only": args.only,
        "sizes": vars(sizes),
        "machine": _report.machine(),
        "git": _report.git_commit(REPO),
        "settings": {
            "partitions": settings.partitions,
            "fetch_max_wait_ms": settings.fetch_max_wait_ms,
            "commit_interval_seconds": settings.commit_interval_seconds,
        },
        "log_dir": str(log_dir),
        "duration_seconds": round(time.monotonic() - clock, 1),
        "measurements": results,
    }
    path = _report.write_results(report, RESULTS, started, latest=args.only is None)
    print()
    print(_report.render_table(results))
    print(f"\n[bench] {report['duration_seconds']} s; results in {path}")
    failed = [name for name, result in results.items() if not result.get("passed")]
    if failed:
        print(f"[bench] FAIL: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
