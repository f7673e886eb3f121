"""Hot-swapped rules on the real broker and Redis: every worker follows the control topic."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from typing import Any

import pytest

from connectors.kafka_admin import produce
from duoli.processes import wait_for
from duoli.simulate import SimulationConfig, simulate

pytestmark = pytest.mark.integration

PROBE = {
    "id": "probe-every-transaction",
    "description": "hits every transaction, so a score record shows the swap",
    "expression": "amount >= 0",
    "severity": "low",
    "action": "review",
    "mode": "shadow",
    "version": 1,
}


def control_record(key: str, value: dict[str, Any]) -> tuple[bytes, bytes]:
    return key.encode(), json.dumps(value).encode()


def push(running: Any, key: str, payload: dict[str, Any]) -> None:
    record = {"author": "it", "at": "2026-11-29T00:00:00Z", **payload}
    produce(running.url, running.names.control, [control_record(key, record)])


def transactions(events: list[dict[str, Any]]) -> set[str]:
    return {e["event_id"] for e in events if e["type"] == "transaction"}


def logged_versions(running: Any) -> list[set[str]]:
    versions = []
    for index in range(len(running.workers)):
        text = (running.log_dir / f"worker-{index}.log").read_text()
        versions.append(set(re.findall(r"now scoring with rule set (\w+)", text)))
    return versions


def test_every_worker_switches_rule_sets_within_five_seconds_and_scores_each_event_once(
    pipeline,
) -> None:
    events = list(simulate(SimulationConfig(seed=11, accounts=60, days=12)))
    third = len(events) // 3
    before, during, after = events[:third], events[third : 2 * third], events[2 * third :]
    running = pipeline(workers=2, DUOLI_LOG_LEVEL="INFO")
    running.send(before)
    running.wait(timeout=90)
    old = {r["ruleset_version"] for r in running.scores()}
    assert len(old) == 1

    running.send(during[: len(during) // 2])
    push(running, "rule:probe-every-transaction", {"rule": PROBE})
    pushed_at = time.monotonic()
    running.send(during[len(during) // 2 :])
    assert wait_for(lambda: all(len(v) == 1 for v in logged_versions(running)), timeout=5)
    assert time.monotonic() - pushed_at <= 5.0
    new = logged_versions(running)[0]
    assert logged_versions(running) == [new, new] and new != old
    running.send(after)
    running.wait(timeout=90)

    scores = running.scores()
    assert sorted(r["event_id"] for r in scores) == sorted(transactions(events))
    by_event = {r["event_id"]: r for r in scores}
    assert {by_event[e]["ruleset_version"] for e in transactions(before)} == old
    assert {by_event[e]["ruleset_version"] for e in transactions(after)} == new
    assert all("probe-every-transaction" in by_event[e]["shadow_hits"] for e in transactions(after))
    switches: dict[str, list[str]] = defaultdict(list)  # per account: old, then new, never back
    for record in scores:
        versions = switches[record["account_id"]]
        if not versions or versions[-1] != record["ruleset_version"]:
            versions.append(record["ruleset_version"])
    assert all(len(versions) <= 2 for versions in switches.values())


def test_a_control_record_that_does_not_apply_leaves_the_running_rules_unchanged(
    pipeline,
) -> None:
    events = list(simulate(SimulationConfig(seed=12, accounts=30, days=12)))
    half = len(events) // 2
    running = pipeline(DUOLI_LOG_LEVEL="INFO")
    hostile = PROBE | {"id": "hostile", "expression": "__import__('os').system('true')"}
    push(running, "rule:hostile", {"rule": hostile})
    push(running, "rule:broken", {"rule": {"id": "broken"}})
    running.send(events[:half])
    running.wait(timeout=90)
    log = (running.log_dir / "worker-0.log").read_text()
    assert log.count("skipped") >= 2 and "hostile" in log and "broken" in log
    first = {r["ruleset_version"] for r in running.scores()}
    assert len(first) == 1

    push(running, "rule:probe-every-transaction", {"rule": PROBE})  # a good push still lands
    assert wait_for(lambda: len(logged_versions(running)[0]) >= 1, timeout=5)
    running.send(events[half:])
    running.wait(timeout=90)
    later = [r for r in running.scores() if r["ruleset_version"] not in first]
    assert later and all("probe-every-transaction" in r["shadow_hits"] for r in later)
    assert not [r for r in running.scores() if "hostile" in r["shadow_hits"] + r["rules_hit"]]


def test_a_list_change_reaches_a_running_worker_without_restart(pipeline) -> None:
    events = list(simulate(SimulationConfig(seed=13, accounts=30, days=12)))
    half = len(events) // 2
    merchant = next(e["merchant_id"] for e in events[half:] if e["type"] == "transaction")
    blocked = PROBE | {
        "id": "blocked-merchant",
        "expression": 'merchant_id in list("blocked_merchants")',
        "mode": "active",
        "severity": "high",
    }
    running = pipeline(DUOLI_LOG_LEVEL="INFO")
    push(running, "rule:blocked-merchant", {"rule": blocked})
    running.send(events[:half])
    running.wait(timeout=90)
    assert not [r for r in running.scores() if "blocked-merchant" in r["rules_hit"]]

    entries = {merchant: None, "m-expired": "2000-01-01T00:00:00Z"}
    listed = {"name": "blocked_merchants", "kind": "merchant", "entries": entries}
    push(running, "list:blocked_merchants", {"list": listed})
    time.sleep(2)  # the control follower polls every 0.2 s
    running.send(events[half:])
    running.wait(timeout=90)
    later = {e["event_id"]: e for e in events[half:] if e["type"] == "transaction"}
    hits = {r["event_id"] for r in running.scores() if "blocked-merchant" in r["rules_hit"]}
    assert hits == {i for i, e in later.items() if e["merchant_id"] == merchant} != set()
    alerted = {a["event_ids"][0] for a in running.alerts() if a["kind"] == "fraud"}
    assert hits <= alerted
