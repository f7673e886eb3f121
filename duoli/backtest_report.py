"""How a backtest reads: a rich table for the analyst, a JSON dict for tools and ``--json``.

Kept apart from the replay so the library has no opinion about presentation, and the
JSON form is plain data (no NaN, no infinities) that ``json.dumps`` always accepts.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rich.table import Table

from duoli.scoring import iso

if TYPE_CHECKING:
    from duoli.backtest import ActiveDiff, BacktestReport, RuleStats

__all__ = ["render_table", "report_json", "summary_line"]

_DIGITS = 4


def report_json(report: BacktestReport) -> dict[str, Any]:
    """The whole report as JSON-ready data; times as ISO-8601 UTC, ratios to 4 places."""
    data = {key: _rounded(value) for key, value in asdict(report).items() if key != "rules"}
    for key in ("first_at", "last_at", "as_of"):
        at = getattr(report, key)
        data[key] = iso(at) if at is not None else None
    data["events_per_second"] = round(report.events_per_second, 1)
    data["rules"] = [_rounded(asdict(stats)) for stats in report.rules]
    return data


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, _DIGITS)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


def render_table(report: BacktestReport) -> Table:
    """One row per candidate rule, with the replay's totals in the caption."""
    table = Table(title="Rule backtest", caption=summary_line(report), caption_justify="left")
    for name in _COLUMNS:
        table.add_column(name, justify="left" if name in ("rule", "mode", "vs active") else "right")
    for stats in report.rules:
        table.add_row(*_row(stats))
    return table


_COLUMNS = (
    "rule",
    "mode",
    "hits",
    "hit rate",
    "alerts/day",
    "precision",
    "recall",
    "pending",
    "overlap",
    "closest (Jaccard)",
    "vs active",
)


def _row(stats: RuleStats) -> tuple[str, ...]:
    errors = f" ({stats.errors} errors)" if stats.errors else ""
    closest = stats.overlaps_most_with
    return (
        f"{stats.rule_id} v{stats.version}",
        stats.mode,
        f"{stats.hits}{errors}",
        _percent(stats.hit_rate),
        f"{stats.alerts_per_day:.1f}",
        _percent(stats.precision),
        _percent(stats.recall),
        "-" if stats.pending is None else str(stats.pending),
        _percent(stats.overlap_share),
        f"{closest} ({stats.jaccard:.2f})" if closest else "-",
        _versus(stats.active),
    )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _versus(diff: ActiveDiff) -> str:
    """What changes if this candidate replaces the deployed version."""
    if diff.status == "new":
        return "new"
    if diff.status == "unchanged":
        return f"unchanged (v{diff.active_version})"
    return (
        f"v{diff.active_version} {diff.active_mode}: {diff.active_hits} hits, "
        f"+{diff.only_candidate} / -{diff.only_active}"
    )


def summary_line(report: BacktestReport) -> str:
    """The totals in one line: what was replayed, how fast, and what was refused."""
    bad = ", ".join(f"{reason} {count}" for reason, count in report.bad_lines.items())
    as_of = iso(report.as_of) if report.as_of is not None else "-"
    return (
        f"{report.events} events ({report.transactions} transactions, "
        f"{report.repayments} repayments) over {report.days:.1f} days; "
        f"{report.confirmed_frauds} confirmed frauds from {report.labels} labels known by "
        f"{as_of} ({report.labels_after_as_of} later); maturity {report.maturity_days:g} days; "
        f"bad lines: {bad or 'none'}; {report.events_per_second:,.0f} events/s"
    )
