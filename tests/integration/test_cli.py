"""The ``duoli`` command as a user runs it, in child processes stopped by pid."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import redis

from connectors.kafka_admin import ping
from duoli.processes import stop_pid, wait_for
from tests.integration.procfs import brokers_under, children_of, gone

pytestmark = pytest.mark.integration


def duoli(args: list[str], env: dict[str, str], **options) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "duoli", *args], env=env, **options)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job


@pytest.mark.parametrize(
    ("stop_signal", "started_by"),
    [(signal.SIGINT, None), (signal.SIGTERM, None), (signal.SIGINT, _ignore_sigint)],
    ids=["sigint", "sigterm", "sigint-to-a-background-job"],
)
def test_worker_starts_an_embedded_broker_and_stops_it_on_exit(
    isolated_env, stop_signal, started_by
):
    """The signal comes as soon as the broker is up, while the worker is still starting."""
    worker = duoli(
        ["worker"], isolated_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=started_by,
    )  # fmt: skip
    try:
        assert wait_for(lambda: brokers_under(worker.pid), timeout=30)
        [broker_pid] = brokers_under(worker.pid)
        worker.send_signal(stop_signal)
        worker.wait(30)
        assert wait_for(lambda: gone(broker_pid), timeout=10)
    finally:
        stop_pid(worker)


def test_a_worker_that_fails_to_start_says_why_and_stops_its_broker(isolated_env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - id: sneaky\n    description: x\n    expression: amount.__class__\n"
        "    severity: low\n    action: alert\n    mode: active\n    version: 1\n"
    )
    isolated_env["DUOLI_RULES_PATH"] = str(bad)
    worker = duoli(["worker"], isolated_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 2
        assert b"sneaky" in err and b"line 1" in err
        assert children_of(worker.pid) == []
    finally:
        stop_pid(worker)


def test_broker_command_serves_kafka_until_stopped(isolated_env):
    broker = duoli(["broker"], isolated_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = broker.stdout.readline().decode()  # type: ignore[union-attr]
        url = line.split("listening on ", 1)[1].split()[0]
        ping(url)
        [tansu] = children_of(broker.pid)
        broker.send_signal(signal.SIGTERM)
        broker.wait(20)
        assert wait_for(lambda: gone(tansu), timeout=10)
    finally:
        stop_pid(broker)
        broker.stdout.close()  # type: ignore[union-attr]


def test_replay_command_writes_scores_and_a_summary(isolated_env, tmp_path):
    book = tmp_path / "book.jsonl"
    simulate = [sys.executable, "-m", "duoli", "simulate", "--seed", "4", "--accounts", "30"]
    subprocess.run([*simulate, "--days", "10", "--out", str(book)], env=isolated_env, check=True)
    lines = book.read_text().splitlines()
    book.write_text("\n".join([*lines, "this is not json", lines[-1]]) + "\n")
    replay = duoli(
        ["replay", str(book), "--scores-out", str(tmp_path / "scores.jsonl"),
         "--summary-json", str(tmp_path / "summary.json")],
        isolated_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = replay.communicate(timeout=240)
        assert replay.returncode == 0, err.decode()[-2000:]
    finally:
        stop_pid(replay)
    summary = json.loads((tmp_path / "summary.json").read_text())
    transactions = sum('"type":"transaction"' in line for line in lines)
    assert summary["events"] == len(lines) + 2 and summary["scores"] == transactions
    assert summary["dead_letters"] == {"duplicate_event_id": 1, "malformed_json": 1}
    assert summary["events_per_second"] > 0 and b"events/s" in out
    scores = (tmp_path / "scores.jsonl").read_text().splitlines()
    assert len(scores) == transactions


def test_demo_shows_a_live_summary_and_alerts_land_in_redis(isolated_env):
    demo = duoli(
        ["demo", "--duration", "20", "--rate", "400", "--accounts", "400", "--workers", "1"],
        isolated_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = demo.communicate(timeout=120)
        assert demo.returncode == 0, err.decode()[-2000:]
    finally:
        stop_pid(demo)
    assert b"events processed" in out and b"alerts by kind and severity" in out
    client = redis.Redis()
    assert client.xlen(f"{isolated_env['DUOLI_REDIS_PREFIX']}:alerts") > 0
    client.close()


def test_with_a_cluster_configured_nothing_is_started(broker, isolated_env):
    isolated_env["DUOLI_KAFKA_URL"] = broker.url
    worker = duoli(["worker"], isolated_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert not wait_for(lambda: brokers_under(worker.pid), timeout=8)
        assert worker.poll() is None  # running, against the given cluster
    finally:
        stop_pid(worker)


def test_simulate_produces_to_the_cluster_at_a_rate(broker, isolated_env):
    from connectors.kafka_admin import consume_all

    isolated_env["DUOLI_KAFKA_URL"] = broker.url
    args = ["simulate", "--seed", "2", "--accounts", "5", "--days", "5", "--rate", "2000"]
    result = subprocess.run(
        [sys.executable, "-m", "duoli", *args], env=isolated_env, capture_output=True, check=True
    )
    produced = int(result.stdout.split()[1])
    records = consume_all(broker.url, f"{isolated_env['DUOLI_TOPIC_PREFIX']}.events")
    assert produced == len(records) > 0
    assert {key for key, _ in records} == {json.loads(v)["account_id"].encode() for _, v in records}
