"""``duoli grafana follow`` as a child process against the real embedded broker, posting to
an HTTP double of Grafana (tests/unit/connectors/test_grafana.py), NOT a real Grafana.

The rules are pushed by the real ``duoli rules push`` (in-process), and the promotion is a
real ``Trainer.status()`` written under ``STATUS_KEY`` to the models topic, as the trainer
writes it. What this proves: the follower reads both topics, posts one annotation per
change with its text, tags and event time, and posts nothing again when restarted from the
beginning. The double answers the annotation search from what was posted to it; that a
real Grafana's tag search matches the same way is not proven here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from connectors.control_topic import read_audit
from connectors.kafka_admin import produce
from duoli.cli import cli
from duoli.grafana_cli import push_key
from duoli.processes import stop_pid
from duoli.settings import load_settings
from models.learners import Promotion
from models.trainer import Trainer
from rules.control import parse_time
from streams.models import STATUS_KEY
from tests.integration.test_control_cli import BIG, SMALL, rules_yaml
from tests.unit.connectors.test_grafana import Annotations, serving

pytestmark = pytest.mark.integration

DAY = 1772323200.0  # 2026-03-01T00:00:00Z, a day boundary as the trainer promotes at
DEADLINE = 15.0

Follower = tuple["subprocess.Popen[bytes]", Path]


def _rules(path: Path, *rules: dict[str, Any]) -> Path:
    path.write_text(rules_yaml(*rules))
    return path


def _push_rules(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], rulefile: Path) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    load_settings.cache_clear()
    try:
        args = ["rules", "push", str(rulefile), "--author", "alice", "--note", "tighter limits"]
        result = CliRunner().invoke(cli, args)
    finally:
        load_settings.cache_clear()
    assert result.exit_code == 0, result.output


def _status_with_a_promotion(trained_through: float) -> bytes:
    trainer = Trainer()
    trainer.trained_through = trained_through
    trainer.fraud.promotions.append(Promotion(DAY, "tree", "logistic", 2140, {}))
    return orjson.dumps(trainer.status())


@pytest.fixture
def start_follower(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Follower]]:
    """``start_follower(env)``: run ``duoli grafana follow --from-beginning``; the process
    and its output file. Every follower is stopped by pid at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> Follower:
        log = tmp_path / f"follower-{len(started)}.log"
        with log.open("wb") as out:
            command = [sys.executable, "-m", "duoli", "grafana", "follow", "--from-beginning"]
            started.append(subprocess.Popen(command, env=env, stdout=out, stderr=out))
        return started[-1], log

    yield start
    for process in started:
        stop_pid(process, grace=5)


def _wait_for(lines: int, text: str, log: Path) -> list[str]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = [line for line in log.read_text().splitlines() if line.startswith(text)]
        if len(found) >= lines:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {lines} lines {text!r} in time:\n{log.read_text()}")


def test_the_follower_annotates_each_change_once_even_when_restarted(
    pipeline, start_follower, monkeypatch, tmp_path
):
    running = pipeline(workers=0)
    deployed = _rules(tmp_path / "deployed.yaml", BIG)
    env = {**running.env, "DUOLI_KAFKA_URL": running.url, "DUOLI_RULES_PATH": str(deployed)}
    _push_rules(monkeypatch, env, _rules(tmp_path / "push.yaml", {**BIG, "mode": "active"}, SMALL))
    statuses = [_status_with_a_promotion(DAY), _status_with_a_promotion(DAY + 86400)]
    produce(running.url, running.names.models, [(STATUS_KEY, status) for status in statuses])
    [big, small] = read_audit(running.url, running.names)
    pushed_at = parse_time(big["at"])

    store = Annotations()
    with serving(store.routes()) as (url, double):
        follower_env = {
            **os.environ, **env, "DUOLI_GRAFANA_URL": url, "DUOLI_GRAFANA_TOKEN": "glsa_it",
            "PYTHONUNBUFFERED": "1",
        }  # fmt: skip
        first, output = start_follower(follower_env)
        _wait_for(2, "annotated", output)
        stop_pid(first, grace=5)
        [promotion, push] = store.saved  # the push is posted once the audit topic is quiet
        _, output = start_follower(follower_env)
        _wait_for(2, "already annotated", output)

    key = push_key("alice", big["at"], "tighter limits")
    assert (small["author"], small["at"], small["note"]) == ("alice", big["at"], "tighter limits")
    assert push["text"] == "rules pushed by alice: big v2, small v1 (tighter limits)"
    assert push["tags"] == ["duoli", "rule-push", "big", "small", key]
    assert push["time"] == round(pushed_at * 1000)
    assert promotion["text"] == "model promoted: tree replaces logistic (2140 labels)"
    assert promotion["tags"] == ["duoli", "model-promotion", "tree", "promotion:tree-1772323200"]
    assert datetime.fromtimestamp(promotion["time"] / 1000, UTC) == datetime.fromtimestamp(DAY, UTC)
    assert len(store.saved) == 2 and len(double.posted()) == 2  # the restart posted nothing
    assert {r.authorization for r in double.requests} == {"Bearer glsa_it"}
