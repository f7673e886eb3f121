"""The online models on the real pipeline: one version for every worker, labels from every
partition, and models that survive restarts and keep learning."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from duoli.processes import WorkerProcess, wait_for
from duoli.simulate import SimulationConfig, simulate
from models.learners import fraud_candidates
from streams.elected import WRITER_NICENESS
from tests.integration.procfs import descendants_of, gone

pytestmark = pytest.mark.integration

MODELS = {"DUOLI_MODEL_WAIT_SECONDS": "60", "DUOLI_LOG_LEVEL": "INFO"}
CHAMPION = next(iter(fraud_candidates()))  # at start; too few frauds here for a promotion


def _book(days: int = 24, fraud_rate: float = 0.05) -> list[dict[str, Any]]:
    return list(simulate(SimulationConfig(seed=11, accounts=120, days=days, fraud_rate=fraud_rate)))


def _labels_known_before(events: list[dict[str, Any]], midnight: str) -> int:
    return sum(e["type"] == "fraud_label" and e["occurred_at"] < midnight for e in events)


def _day_before(day: str) -> str:
    return (datetime.fromisoformat(day).replace(tzinfo=UTC) - timedelta(days=1)).strftime(
        "%Y-%m-%d"
    )


def _version(day: str) -> str:
    """The fraud model version trained through ``day``."""
    return f"fraud-{CHAMPION}-{day}"


def _versions_by_day(scores: list[dict[str, Any]]) -> dict[str, set[str]]:
    by_day: dict[str, set[str]] = defaultdict(set)
    for record in scores:
        by_day[record["occurred_at"][:10]].add(record["model_versions"]["fraud"])
    return by_day


def _status_through(running: Any, day: str) -> dict[str, Any]:
    """The trainer's status once it has closed ``day`` (it publishes just after)."""
    found: dict[str, Any] = {}

    def closed() -> bool:
        found.update(running.model_status() or {})
        return found.get("trained_through") == day

    assert wait_for(closed, timeout=30), found.get("trained_through")
    return found


def _learned_labels(status: dict[str, Any]) -> int:
    counters = status["counters"]
    return counters["fraud_labels"] + counters["legit_labels"]


def _trainer(workers: list[WorkerProcess]) -> WorkerProcess:
    """The worker whose log says it took the trainer over last."""
    for worker in workers:
        assert worker.log_path is not None
        moves = re.findall(r"trainer (taking|handing) over", worker.log_path.read_text())
        if worker.alive() and moves and moves[-1] == "taking":
            return worker
    raise AssertionError("no worker runs the trainer")


def test_every_worker_scores_a_day_with_the_same_version_trained_on_every_partition(pipeline):
    events = _book()
    running = pipeline(workers=2, **MODELS)
    running.feed_by_day(events)

    by_day = _versions_by_day(running.scores())
    assert len(by_day) == 24
    for day, versions in sorted(by_day.items())[1:]:
        assert versions == {_version(_day_before(day))}, day
    status = _status_through(running, max(by_day))
    midnight = f"{status['trained_through']}T00:00:00Z"
    assert _learned_labels(status) == _labels_known_before(events, midnight) > 0
    assert status["fraud"]["labels"] > status["fraud"]["positives"] > 0
    assert status["pending"]["pending"] > 0
    shown = _models_status(running)
    assert f"trained through {max(by_day)}" in shown and "pending store:" in shown
    assert f"champion {status['fraud']['champion']}" in shown


def _models_status(running: Any) -> str:
    """``duoli models status`` as an operator runs it."""
    env = {**os.environ, **running.env, "DUOLI_KAFKA_URL": running.url}
    done = subprocess.run(
        [sys.executable, "-m", "duoli", "models", "status"], env=env, capture_output=True,
        text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def test_the_trainer_moves_with_its_worker_and_goes_on_from_its_checkpoint(pipeline):
    events = _book()
    half = next(i for i, e in enumerate(events) if e["occurred_at"] >= "2026-01-13")
    running = pipeline(workers=2, **MODELS)
    running.feed_by_day(events[:half])
    before = _status_through(running, "2026-01-12")

    owner = _trainer(running.workers)
    learning = set(descendants_of(owner.pid))  # the trainer's process, among others
    owner.kill()  # SIGKILL: no flush, no commit, no last checkpoint
    assert learning and wait_for(lambda: all(map(gone, learning)), timeout=10)
    running.start_worker()
    running.feed_by_day(events[half:])

    after = _status_through(running, "2026-01-24")
    midnight = "2026-01-24T00:00:00Z"
    assert (
        _learned_labels(after) == _labels_known_before(events, midnight) > _learned_labels(before)
    )
    late = {day: v for day, v in _versions_by_day(running.scores()).items() if day >= "2026-01-13"}
    assert all(versions == {_version(_day_before(day))} for day, versions in late.items())


def test_a_killed_trainer_process_is_started_again_and_learning_goes_on(pipeline):
    events = _book()
    half = next(i for i, e in enumerate(events) if e["occurred_at"] >= "2026-01-13")
    running = pipeline(workers=1, **MODELS)
    running.feed_by_day(events[:half])
    [worker] = running.workers
    [learning] = _writer_processes(worker, "trainer")
    assert learning in descendants_of(worker.pid)
    os.kill(learning, signal.SIGKILL)
    running.feed_by_day(events[half:])

    after = _status_through(running, "2026-01-24")
    assert _learned_labels(after) == _labels_known_before(events, "2026-01-24T00:00:00Z")
    assert "the trainer process died" in _log(worker) and worker.alive()
    assert len(_writer_processes(worker, "trainer")) == 2  # a new one


def test_after_a_whole_restart_the_models_come_back_and_learning_goes_on(pipeline):
    events = _book()
    half = next(i for i, e in enumerate(events) if e["occurred_at"] >= "2026-01-13")
    running = pipeline(workers=1, **MODELS)
    running.feed_by_day(events[:half])
    before = _status_through(running, "2026-01-12")
    running.stop()  # every worker, as in a redeploy
    assert not any(worker.alive() for worker in running.workers)

    restarted = running.start_worker()
    back = f"now scoring with models {{'fraud': 'fraud-{CHAMPION}-2026-01-12'"
    assert wait_for(lambda: back in _log(restarted), timeout=60)  # the version it had
    running.feed_by_day(events[half:])

    after = _status_through(running, "2026-01-24")
    assert after["fraud"]["labels"] > before["fraud"]["labels"]
    assert _learned_labels(after) == _labels_known_before(events, "2026-01-24T00:00:00Z")
    first_day_after = [r for r in running.scores() if r["occurred_at"].startswith("2026-01-13")]
    assert {r["model_versions"]["fraud"] for r in first_day_after} == {_version("2026-01-12")}


def test_a_workers_writers_yield_the_cores_to_it_and_end_with_it(pipeline):
    """Its writers fork from a server of its own, at a lower priority than the worker's,
    but for the trainer of a worker that waits for the day's model version (as here, and
    in a replay); all of them end with the worker."""
    running = pipeline(workers=1, **MODELS)
    [worker] = running.workers
    assert wait_for(lambda: _log(worker).count("process running at niceness") == 2, timeout=60)
    [trainer] = _writer_processes(worker, "trainer")
    [ledger] = _writer_processes(worker, "ledger writer")
    started = descendants_of(worker.pid)
    assert {trainer, ledger} <= set(started) and len(started) >= 3  # and the fork server
    priority = partial(os.getpriority, os.PRIO_PROCESS)
    assert priority(ledger) - priority(worker.pid) == WRITER_NICENESS
    assert priority(trainer) == priority(worker.pid)
    worker.stop()
    assert wait_for(lambda: all(map(gone, started)), timeout=15)


def _writer_processes(worker: WorkerProcess, role: str) -> list[int]:
    """The writer processes of that role the worker has started, as its log names them."""
    return [int(pid) for pid in re.findall(rf"{role} process (\d+) started", _log(worker))]


def _log(worker: WorkerProcess) -> str:
    assert worker.log_path is not None
    return worker.log_path.read_text()


def test_score_records_carry_the_models_figures_and_reasons(pipeline):
    running = pipeline(workers=1, **MODELS)
    # The champion fits once it has learned 5 frauds: a book with more of them gets there
    # within two weeks.
    running.feed_by_day(_book(days=14, fraud_rate=0.25))
    records = running.scores()
    assert records
    for record in records:
        assert 0.0 <= record["fraud_score"] <= 1.0 and 0.0 <= record["pd"] <= 1.0
        assert set(record["model_versions"]) == {"rules", "fraud", "pd"}
        assert isinstance(record["reasons"], list)
    explained = [r for r in records if r["reasons"]]
    assert explained, "no score record explains itself"
    assert all({"code", "text"} <= set(reason) for r in explained for reason in r["reasons"])
    json.dumps(records)  # every figure is plain JSON
