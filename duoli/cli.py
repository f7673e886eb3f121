"""The ``duoli`` command: broker, worker, simulate, replay, eval and demo."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from duoli.control_cli import RULE_COMMANDS, lists
from duoli.credit_cli import decisions, ledger
from duoli.errors import DuoliError
from duoli.grafana_cli import grafana
from duoli.model_cli import models
from duoli.redis_cli import redis
from duoli.settings import Settings, load_settings

if TYPE_CHECKING:
    from rules import RuleSet
    from rules.control import NamedList

__all__ = ["main"]


@click.group()
def cli() -> None:
    """Duoli: a real-time risk engine for internet micro-lending."""


@cli.command()
def broker() -> None:
    """Run the embedded Kafka-compatible broker (Tansu) until Ctrl-C."""
    from connectors.broker import EmbeddedBroker

    with EmbeddedBroker() as running:
        click.echo(
            f"broker listening on {running.url} (pid {running.pid}); "
            f"export DUOLI_KAFKA_URL={running.url}"
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            time.sleep(3600)


@cli.command()
def worker() -> None:
    """Run one stream worker against DUOLI_KAFKA_URL (or an embedded broker if unset)."""
    from streams.worker import run_worker

    run_worker(load_settings())


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, type=int, show_default=True)
def api(host: str, port: int) -> None:
    """The HTTP API: alerts and their life cycle, accounts, rules (token roles)."""
    from duoli.api import serve

    serve(load_settings(), host, port)


@cli.command()
@click.option(
    "--profile", type=click.Choice(["default", "sparse"]), default="default", show_default=True,
    help="default: the micro-loan book; sparse: the Fraud Detection Handbook's card stream.",
)  # fmt: skip
@click.option("--seed", default=7, show_default=True, help="Random seed: same seed, same book.")
@click.option("--accounts", type=int, help="Accounts [default: 500; sparse 5000].")
@click.option("--days", type=int, help="Days [default: 90].")
@click.option("--merchants", type=int, help="Merchants [default: 200; sparse 2 x accounts].")
@click.option("--out", type=click.Path(path_type=Path), help="Write JSONL here.")
@click.option("--rate", type=float, help="Produce to the broker at this many events/s instead.")
def simulate(
    profile: str, seed: int, accounts: int | None, days: int | None, merchants: int | None,
    out: Path | None, rate: float | None,
) -> None:  # fmt: skip
    """Generate a synthetic micro-loan book, or the sparse card stream."""
    from duoli.simulate import write_jsonl
    from duoli.simulate_sparse import simulate_profile

    events = simulate_profile(profile, seed=seed, accounts=accounts, days=days, merchants=merchants)
    if out is not None:
        click.echo(f"wrote {write_jsonl(events, out)} events to {out}")
        return
    settings = load_settings()
    if not settings.kafka_url:
        raise click.UsageError("producing needs DUOLI_KAFKA_URL (or use --out FILE)")
    from connectors.kafka_admin import produce
    from streams.topics import TopicNames
    from streams.worker import prepare_topics

    prepare_topics(settings, settings.kafka_url)
    records = ((e["account_id"].encode(), json.dumps(e).encode()) for e in events)
    count = produce(settings.kafka_url, TopicNames.of(settings).events, records, rate=rate)
    click.echo(f"produced {count} events")


@cli.command()
@click.argument("events", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--scores-out", type=click.Path(path_type=Path), help="Write every score record as JSONL."
)
@click.option(
    "--decisions-out", type=click.Path(path_type=Path),
    help="Write every credit decision as JSONL.",
)  # fmt: skip
@click.option("--summary-json", type=click.Path(path_type=Path), help="Write the summary as JSON.")
@click.option("--workers", default=1, show_default=True, help="Worker processes to run.")
def replay(
    events: Path, scores_out: Path | None, decisions_out: Path | None, summary_json: Path | None,
    workers: int,
) -> None:  # fmt: skip
    """Run EVENTS (JSONL) through the stream processors and summarise."""
    from duoli.replay import replay as run

    summary = run(load_settings(), events, scores_out, workers, decisions_out=decisions_out)
    report = summary.to_json()
    click.echo(
        f"events {summary.events}  scored {summary.scores}  alerts {report['alerts']}  "
        f"decisions {summary.decisions}  dead letters {report['dead_letters']}  "
        f"{report['events_per_second']} events/s"
    )
    if summary_json is not None:
        summary_json.write_text(json.dumps(report, indent=2) + "\n")


@cli.command("eval")
@click.option(
    "--profile", type=click.Choice(["default", "sparse"]), default="default", show_default=True,
    help="Which simulator, and which bars to judge by.",
)  # fmt: skip
@click.option("--accounts", type=int, help="Accounts to simulate [default: 1000; sparse 5000].")
@click.option("--days", type=int, help="Days to simulate [default: 90; sparse 30].")
@click.option("--merchants", type=int, help="Merchants [default: 200; sparse 2 x accounts].")
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--events", "events_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Evaluate this JSONL history instead of simulating; its labels are the truth.",
)  # fmt: skip
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path),
    help="Write the events, the truth and the scores here [default: a temp dir].",
)  # fmt: skip
@click.option(
    "--results-dir", default=Path("bench/results"), show_default=True,
    type=click.Path(file_okay=False, path_type=Path), help="Where the JSON report goes.",
)  # fmt: skip
@click.option("--workers", default=1, show_default=True, help="Worker processes to run.")
def evaluate(
    profile: str, accounts: int | None, days: int | None, merchants: int | None, seed: int,
    events_path: Path | None, out: Path | None, results_dir: Path, workers: int,
) -> None:  # fmt: skip
    """Replay a simulated (or given) history and measure the scores against the truth.

    Exits 0 when every bar of the profile passes, 1 otherwise.
    """
    from rich.console import Console

    from duoli.evaluation import EvalRequest, render_table, run_eval

    request = EvalRequest(
        profile=profile, seed=seed, accounts=accounts, days=days, merchants=merchants,
        events=events_path, out=out, results_dir=results_dir, workers=workers,
    )  # fmt: skip
    report, path = run_eval(load_settings(), request, lambda line: click.echo(line, err=True))
    Console().print(render_table(report))
    click.echo(f"report: {path}  ({report['timings']['total_seconds']} s)")
    sys.exit(0 if report["passed"] else 1)


@cli.command()
@click.option(
    "--duration", type=float, help="Stop after this many seconds (default: until Ctrl-C)."
)
@click.option("--rate", default=200.0, show_default=True, help="Simulated events per second.")
@click.option("--workers", default=2, show_default=True)
@click.option("--accounts", default=2000, show_default=True)
def demo(duration: float | None, rate: float, workers: int, accounts: int) -> None:
    """Broker, workers and the simulator, with a live summary in the terminal."""
    from duoli.demo import run_demo

    run_demo(load_settings(), duration=duration, rate=rate, workers=workers, accounts=accounts)


@cli.group()
def rules() -> None:
    """Analysts' rules: test them on history, push them, roll them back, snooze them."""


@rules.command()
@click.argument("rulefiles", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--events", "events_path", required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="History to replay (JSONL), with its fraud labels.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--active", type=click.Path(exists=True, path_type=Path),
    help="The deployed rules to compare with (default: DUOLI_RULES_PATH with the pushed "
    "versions, and the pushed lists, when DUOLI_KAFKA_URL is set).",
)  # fmt: skip
@click.option(
    "--maturity-days", default=7.0, show_default=True,
    help="Unlabelled hits younger than this are pending, not false alarms.",
)  # fmt: skip
def backtest(
    rulefiles: tuple[Path, ...], events_path: Path, as_json: bool, active: Path | None,
    maturity_days: float,
) -> None:  # fmt: skip
    """Replay EVENTS through the live feature code and report each rule of RULEFILE..."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from duoli.backtest import backtest as run
    from duoli.backtest import load_candidates
    from duoli.backtest_report import render_table

    settings = load_settings()
    candidates = load_candidates(rulefiles)
    deployed, lists = _deployed(settings, active)
    console = Console(stderr=as_json)  # keep stdout pure JSON with --json
    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TimeRemainingColumn(), console=console, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("replaying", total=events_path.stat().st_size)
        report = run(
            events_path, candidates, active=deployed, settings=settings,
            maturity_days=maturity_days, progress=lambda done: bar.update(task, completed=done),
            lists=lists,
        )  # fmt: skip
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        console.print(render_table(report))


def _deployed(settings: Settings, active: Path | None) -> tuple[RuleSet, dict[str, NamedList]]:
    """What the workers run: the ``--active`` files as they are, or the rule files with the
    pushed versions and the pushed lists when ``DUOLI_KAFKA_URL`` names their broker."""
    from rules import load_rules

    files = load_rules(active or settings.rules_path)
    if active is not None or not settings.kafka_url:
        return files, {}
    from connectors.control_topic import prepare_control_topics, read_control
    from streams.topics import TopicNames

    prepare_control_topics(settings.kafka_url, settings)
    state = read_control(settings.kafka_url, TopicNames.of(settings))
    return state.ruleset(files.rules), state.lists


for _command in RULE_COMMANDS:
    rules.add_command(_command)
cli.add_command(lists)
cli.add_command(models)
cli.add_command(decisions)
cli.add_command(ledger)
cli.add_command(grafana)
cli.add_command(redis)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except DuoliError as error:
        click.echo(f"duoli: {error}", err=True)
        sys.exit(2)
