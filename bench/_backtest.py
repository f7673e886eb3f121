"""``duoli rules backtest`` speed: a simulated book replayed in-process against 50 rules.

The baseline is the bare cost of the same file read and parsed with ``parse_event`` and
nothing else, in the same run: the ratio is what the engine, the merchant buckets and
the rules add on top of reading the history at all. The bar is 10,000 events/s.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Final

from bench._rules import fifty_rules
from duoli.backtest import backtest
from duoli.events import parse_event
from duoli.simulate import SimulationConfig, simulate, write_jsonl
from rules import LIBRARY_DIR, load_rules

__all__ = ["BAR_EVENTS_PER_S", "BOOK", "backtest_section", "parse_only"]

BAR_EVENTS_PER_S: Final = 10_000.0
BOOK: Final = SimulationConfig(seed=11, accounts=2000, days=60)
REPEATS: Final = 3


def parse_only(path: Path) -> float:
    """Events/s of reading and validating the file, the floor of any replay."""
    started = time.perf_counter()
    count = 0
    with path.open("rb") as lines:
        for line in lines:
            if line.strip():
                parse_event(line)
                count += 1
    return count / (time.perf_counter() - started)


def backtest_section(
    events_path: Path | None = None, config: SimulationConfig = BOOK, repeats: int = REPEATS
) -> dict[str, Any]:
    """Best of ``repeats`` backtests of 50 rules, and the parse-only baseline of the same file."""
    if events_path is not None:
        return _measure(events_path, repeats)
    with tempfile.TemporaryDirectory(prefix="duoli-bench-backtest-") as folder:
        path = Path(folder) / "book.jsonl"
        write_jsonl(simulate(config), path)
        return _measure(path, repeats)


def _measure(path: Path, repeats: int) -> dict[str, Any]:
    library = load_rules(LIBRARY_DIR)
    candidates = fifty_rules(library.rules)
    reports = [backtest(path, candidates, active=library) for _ in range(repeats)]
    best = max(reports, key=lambda report: report.events_per_second)
    baseline = max(parse_only(path) for _ in range(repeats))
    return {
        "events_per_s": round(best.events_per_second, 1),
        "unit": "events/s",
        "bar": BAR_EVENTS_PER_S,
        "passed": best.events_per_second >= BAR_EVENTS_PER_S,
        "baseline_parse_only_events_per_s": round(baseline, 1),
        "ratio": round(best.events_per_second / baseline, 3) if baseline else None,
        "rules": len(candidates),
        "events": best.events,
        "transactions": best.transactions,
        "hits": sum(stats.hits for stats in best.rules),
        "seconds": round(best.seconds, 3),
        "repeats": repeats,
    }
