"""Credit decisions end to end, on the real broker and Redis, from hand-built histories.

One worker runs four borrowers' histories at once (one partition, so every account's
events move the one clock and overdue bills cross their thresholds on time). The test
policy (``POLICY``) keeps the default policy's shape with smaller numbers, so each story
is short: a limit of 8,000 at most, bands the pd of the models crosses. The pd comes from
the live models, which start from the cold scorecard and learn from the few bills here; the
bands sit where that pd goes (about 0.05 for a fresh account, above 0.1 when its line is
nearly used, 0.2 to 0.5 once a bill is days overdue), and the assertions hold for any
pd along that path: the APR only ever rises for the rising-pd borrower, and is capped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import redis

from connectors.kafka_admin import TopicSpec, ensure_topics, produce

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 1, tzinfo=UTC)
CAP = 0.22

POLICY = """
version: "test-credit-1"
min_limit: 1000
max_limit: 8000
max_step_pct: 20
increase_cooldown_days: 30
increase_min_on_time_streak: 2
increase_utilisation_band: [0.05, 0.8]
increase_max_pd: 0.2
increase_max_fraud_score: 0.8
blocking_rule_severities: [critical]
decrease_days_past_due: 10
decrease_pd_rise: 0.9
decrease_pd_above: 0.95
decrease_cooldown_days: 7
freeze_fraud_score: 0.99
freeze_days_past_due: 30
freeze_rule_actions: [block]
unfreeze_max_pd: 0.1
unfreeze_max_fraud_score: 0.8
unfreeze_min_days: 7
unfreeze_after_fraud_days: null
apr_bands:
  - {pd_below: 0.05, apr: 0.10}
  - {pd_below: 0.10, apr: 0.14}
  - {pd_below: 0.30, apr: 0.20}
  - {pd_below: 1.00, apr: 0.30}
apr_floor: 0.06
apr_cap: 0.22
"""


class History:
    """Hand-built events for one account: ``history.tx(day, amount)`` and so on."""

    def __init__(self, account_id: str, limit: float = 5000.0, apr: float = 0.18) -> None:
        self.account_id = account_id
        self.events: list[dict[str, Any]] = []
        self.add(0, "credit_line_opened", "open", credit_limit=limit, apr=apr)

    def add(self, day: float, kind: str, name: str, **fields: Any) -> dict[str, Any]:
        event = {
            "type": kind,
            "event_id": f"{self.account_id}-{name}",
            "account_id": self.account_id,
            "occurred_at": _at(day),
            **fields,
        }
        self.events.append(event)
        return event

    def tx(self, day: float, amount: float, name: str) -> dict[str, Any]:
        return self.add(day, "transaction", name, amount=amount, merchant_id="m-grocer")

    def bill(self, day: float, due_day: float, amount: float, name: str) -> None:
        self.add(day, "installment_due", name, installment_id=name, due_at=_at(due_day),
                 amount_due=amount)  # fmt: skip

    def repay(self, day: float, amount: float, installment: str) -> None:
        self.add(day, "repayment", f"pay-{installment}", amount=amount, installment_id=installment)


def _at(day: float) -> str:
    return (START + timedelta(days=day)).isoformat().replace("+00:00", "Z")


def reliable() -> History:
    """A bill a month, repaid on time; a standing balance keeps the line used."""
    history = History("acc-grow")
    history.tx(1, 1000, "base")
    for month in range(7):
        day = 30 * month
        history.tx(day + 5, 1500, f"tx-{month}")
        history.bill(day + 10, day + 28, 1500, f"bill-{month}")
        history.repay(day + 25, 1500, f"bill-{month}")
    return history


def sliding() -> History:
    """One bill never repaid: overdue 10 days on day 30, 30 days on day 50."""
    history = History("acc-slide")
    history.tx(2, 3000, "tx")
    history.bill(10, 20, 1000, "bill")
    return history


def defrauded() -> History:
    history = History("acc-fraud")
    stolen = history.tx(3, 200, "stolen")
    history.add(8, "fraud_label", "label", transaction_id=stolen["event_id"], is_fraud=True)
    return history


def rising() -> History:
    """The line fills up, then a bill goes unpaid: the pd only rises."""
    history = History("acc-rising", apr=0.10)
    for day, amount in ((1, 1000), (3, 1500), (5, 2000)):
        history.tx(day, amount, f"tx-{day}")
    history.bill(6, 8, 500, "bill")
    return history


def ordered(*histories: History) -> list[dict[str, Any]]:
    events = [event for history in histories for event in history.events]
    return sorted(events, key=lambda event: event["occurred_at"])


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture(scope="module")
def credit_run(
    broker, policy_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The four histories through one worker, every decision and alert committed; shared
    by the tests of this module, which only read what it wrote."""
    from tests.integration.conftest import REDIS_URL, Pipeline

    name = f"it-credit-{uuid.uuid4().hex[:8]}"
    env = {
        "DUOLI_TOPIC_PREFIX": name,
        "DUOLI_REDIS_PREFIX": name,
        "DUOLI_REDIS_URL": REDIS_URL,
        "DUOLI_LIVE_CLOCK": "false",
        "DUOLI_COMMIT_INTERVAL_SECONDS": "0.1",
        "DUOLI_PARTITIONS": "1",
        "DUOLI_POLICY_FILE": str(policy_file),
    }
    running = Pipeline(broker.url, env, tmp_path_factory.mktemp("credit-logs"))
    try:
        running.start_worker()
        running.send(ordered(reliable(), sliding(), defrauded(), rising()))
        running.wait(timeout=60)
        yield running
    finally:
        running.stop()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{name}:*", count=1000):
            client.delete(key)
        client.close()


def by_account(decisions: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(decisions, key=lambda r: (r["effective_at"], r["decision_id"])):
        found.setdefault(record["account_id"], []).append(record)
    return found


def unique(records: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    return list({record[field]: record for record in records}.values())


def test_the_four_borrowers_get_the_decisions_the_policy_promises(credit_run, redis_client):
    decisions = unique(credit_run.read(credit_run.names.decisions), "decision_id")
    stories = by_account(decisions)
    assert all(d["policy_version"] == "test-credit-1" for d in decisions)
    assert all(len(d["reasons"]) == len(d["explanations"]) > 0 for d in decisions)

    # (a) a reliable borrower grows a step at a time, a cooldown apart, up to the max
    grow = stories["acc-grow"]
    increases = [d for d in grow if d["action"] == "increase"]
    assert [d["new_limit"] for d in increases] == [6000.0, 7200.0, 8000.0]
    assert all(d["new_limit"] <= d["old_limit"] * 1.2 for d in increases)
    days = [datetime.fromisoformat(d["effective_at"]) for d in increases]
    assert all(later - earlier >= timedelta(days=30) for earlier, later in pairwise(days))
    assert max(d["new_limit"] for d in grow) == 8000.0
    account = redis_client.hgetall(f"{credit_run.prefix}:account:acc-grow")
    assert float(account["credit_limit"]) == 8000.0 and account["status"] == "active"

    # (b) sliding into delinquency: cut at 10 days past due, then frozen at 30
    slide = [d for d in stories["acc-slide"] if d["action"] != "hold"]
    assert [(d["action"], d["effective_at"]) for d in slide] == [
        ("decrease", _at(30)),
        ("freeze", _at(50)),
    ]
    assert slide[0]["new_limit"] == 4000.0 and "DAYS_PAST_DUE" in slide[0]["reasons"]
    assert slide[1]["new_limit"] == 4000.0 and slide[1]["frozen"] is True
    assert "DAYS_PAST_DUE_SEVERE" in slide[1]["reasons"]
    assert slide[1]["event_id"] == "acc-slide-bill#dpd30"
    account = redis_client.hgetall(f"{credit_run.prefix}:account:acc-slide")
    assert (account["status"], account["frozen"], account["credit_limit"]) == (
        "frozen",
        "1",
        "4000.0",
    )

    # (c) a confirmed fraud freezes the account on that very event
    freeze = [d for d in stories["acc-fraud"] if d["action"] == "freeze"]
    assert len(freeze) == 1 and freeze[0]["event_id"] == "acc-fraud-label"
    assert freeze[0]["effective_at"] == _at(8) and "CONFIRMED_FRAUD" in freeze[0]["reasons"]
    account = redis_client.hgetall(f"{credit_run.prefix}:account:acc-fraud")
    assert (account["status"], account["frozen"]) == ("fraud_confirmed", "1")

    # (d) a rising pd moves the APR up its bands, and never past the cap
    aprs = [d["new_apr"] for d in stories["acc-rising"]]
    assert aprs == sorted(aprs) and len(set(aprs)) >= 2
    assert max(aprs) == CAP
    assert all(d["new_apr"] <= CAP for d in decisions)
    assert any("APR_UP" in d["reasons"] for d in stories["acc-rising"])


def duoli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "duoli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli_env(running: Any) -> dict[str, str]:
    return {
        "DUOLI_KAFKA_URL": running.url,
        "DUOLI_TOPIC_PREFIX": running.settings.topic_prefix,
        "DUOLI_REDIS_PREFIX": running.prefix,
    }


def test_the_ledger_chains_every_decision_and_alert_once_and_verify_finds_tampering(
    credit_run,
):
    from duoli.processes import wait_for

    decisions = {d["decision_id"] for d in credit_run.read(credit_run.names.decisions)}
    alerts = {a["alert_id"] for a in credit_run.alerts()}
    expected = len(decisions) + len(alerts)
    assert wait_for(lambda: len(credit_run.read(credit_run.names.ledger)) >= expected, 30)
    entries = credit_run.read(credit_run.names.ledger)
    chained = [e["payload"].get("decision_id") or e["payload"]["alert_id"] for e in entries]
    assert len(chained) == len(set(chained)) == expected
    assert {e["payload"]["decision_id"] for e in entries if e["kind"] == "decision"} == decisions

    env = cli_env(credit_run)
    clean = duoli(["ledger", "verify"], env)
    assert clean.returncode == 0 and f"OK: {expected} entries" in clean.stdout

    middle = len(entries) // 2
    modified = [dict(e) for e in entries]
    modified[middle]["payload"] = {**entries[middle]["payload"], "new_limit": 999999.0}
    removed = entries[:middle] + entries[middle + 1 :]
    reordered = [
        *entries[: middle - 1],
        entries[middle],
        entries[middle - 1],
        *entries[middle + 1 :],
    ]
    for problem, tampered in (("modified", modified), ("removed", removed),
                              ("reordered", reordered)):  # fmt: skip
        topic = f"{credit_run.names.ledger}-{problem}"
        ensure_topics(credit_run.url, [TopicSpec(topic, 1)])
        produce(credit_run.url, topic, [(None, json.dumps(e).encode()) for e in tampered])
        result = duoli(["ledger", "verify", "--topic", topic], env)
        assert result.returncode == 1, result.stdout
        assert f": {problem}:" in result.stdout
        # the first entry out of place: the moved one, or the one after the hole
        seq = entries[middle + 1 if problem == "removed" else middle]["seq"]
        assert f"(seq {seq})" in result.stdout, result.stdout


def test_decisions_tail_prints_each_decision(credit_run):
    env = cli_env(credit_run)
    decisions = credit_run.read(credit_run.names.decisions)
    raw = duoli(["decisions", "tail", "--json", "--from-beginning", "--count", "3"], env)
    assert raw.returncode == 0, raw.stderr
    assert [json.loads(line) for line in raw.stdout.splitlines()] == decisions[:3]
    lines = duoli(["decisions", "tail", "--from-beginning", "--count", "1"], env)
    first = decisions[0]
    assert first["account_id"] in lines.stdout and f"[{first['decision_id']}]" in lines.stdout


def test_a_replay_writes_the_same_decisions_byte_for_byte(
    broker, tmp_path, policy_file, redis_client
):
    from duoli.replay import replay
    from duoli.settings import Settings

    book = tmp_path / "book.jsonl"
    book.write_text("".join(json.dumps(e) + "\n" for e in ordered(defrauded(), rising())))
    prefix = f"it-credit-replay-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka_url=broker.url,
        topic_prefix=prefix,
        redis_prefix=prefix,
        policy_file=policy_file,
        partitions=1,
    )
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    try:
        summary = replay(settings, book, workers=1, log_dir=tmp_path, decisions_out=first)
        replay(settings, book, workers=1, log_dir=tmp_path, decisions_out=second)
    finally:
        for key in redis_client.scan_iter(f"{prefix}:*"):
            redis_client.delete(key)
    assert summary.decisions > 0
    assert first.read_bytes() == second.read_bytes()
    assert len(first.read_text().splitlines()) == summary.decisions
