"""Live rule statistics on the real pipeline: Redis counts agree with the score records."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import pytest

from connectors.redis_store import RedisStore
from duoli.rule_stats import read_rule_stats
from duoli.simulate import SimulationConfig, simulate
from tests.integration.conftest import REDIS_URL

pytestmark = pytest.mark.integration

RULES = """
rules:
  - id: large-amount
    description: 1000 yuan or more
    expression: amount >= 1000
    severity: high
    action: review
    mode: active
    version: 1
  - id: probes-then-purchase
    description: small probes in the last hour, then a real purchase
    expression: small_tx_count_1h >= 2 and amount >= 100
    severity: critical
    action: block
    mode: active
    version: 1
  - id: night-spending
    description: being tried in shadow
    expression: hour_of_day < 6
    severity: low
    action: alert
    mode: shadow
    version: 1
"""
RULE_IDS = ("large-amount", "probes-then-purchase", "night-spending")


def _listed(scores: list[dict], field: str) -> Counter[str]:
    return Counter(rule_id for record in scores for rule_id in record[field])


def _credited(events: list[dict], scores: list[dict]) -> Counter[str]:
    """Per rule, the transactions it matched that a fraud label confirmed."""
    frauds = {e["transaction_id"] for e in events if e["type"] == "fraud_label" and e["is_fraud"]}
    return Counter(
        rule_id
        for record in scores
        if record["event_id"] in frauds
        for rule_id in record["rules_hit"] + record["shadow_hits"]
    )


def test_rule_stats_in_redis_count_what_the_score_records_list(
    pipeline, redis_client, tmp_path: Path
):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)
    events = list(simulate(SimulationConfig(seed=5, accounts=60, days=20, fraud_rate=0.2)))
    running = pipeline(DUOLI_PARTITIONS="2", DUOLI_RULES_PATH=str(rules_file))
    running.send(events)
    running.wait()

    scores = list({record["event_id"]: record for record in running.scores()}.values())
    assert len(scores) == sum(1 for e in events if e["type"] == "transaction")
    hits, shadow = _listed(scores, "rules_hit"), _listed(scores, "shadow_hits")
    credited = _credited(events, scores)
    assert all(hits[rule_id] + shadow[rule_id] > 0 for rule_id in RULE_IDS)
    assert sum(credited.values()) > 0

    for rule_id in RULE_IDS:
        stored = redis_client.hgetall(f"{running.prefix}:rule_stats:{rule_id}")
        assert int(stored.get("hits", 0)) == hits[rule_id], rule_id
        assert int(stored.get("shadow_hits", 0)) == shadow[rule_id], rule_id
        day_hits = sum(int(v) for k, v in stored.items() if k.startswith("hits:"))
        assert day_hits == hits[rule_id] + shadow[rule_id], rule_id
        frauds = sum(int(v) for k, v in stored.items() if k.startswith("frauds:"))
        assert frauds == credited[rule_id], rule_id

    latest = max(e["occurred_at"] for e in events)
    summaries = {s["rule_id"]: s for s in read_rule_stats(REDIS_URL, running.prefix, 7)}
    assert sorted(summaries) == sorted(RULE_IDS)
    for rule_id, summary in summaries.items():
        assert (summary["hits"], summary["shadow_hits"]) == (hits[rule_id], shadow[rule_id])
        assert summary["snoozed_hits"] == summary["errors"] == 0
        assert summary["last_hit_at"] <= latest
        assert summary["matured_hits"] <= hits[rule_id] + shadow[rule_id]
        assert summary["confirmed_frauds"] <= credited[rule_id]
    # 20 days of events and a 7-day maturity: the early days count, the last week waits
    matured = sum(s["matured_hits"] for s in summaries.values())
    assert 0 < matured < sum(hits.values()) + sum(shadow.values())


def test_counters_are_applied_once_when_the_alert_script_must_be_reloaded(redis_client):
    prefix = f"it-counts-{uuid.uuid4().hex[:8]}"
    alert = {"alert_id": f"{prefix}-a1", "kind": "fraud", "severity": "high"}

    async def scenario() -> None:
        store = RedisStore(REDIS_URL, prefix=prefix)
        await store.start()
        try:
            store._sha = "0" * 40  # as after a Redis restart, without flushing the shared server
            await store.write(alerts=[alert], counts={"rule_stats:r1": {"hits": 2}})
            await store.write(counts={"rule_stats:r1": {"hits": 1, "hits:2026-03-02": 1}})
        finally:
            await store.close()

    try:
        asyncio.run(scenario())
        stored = redis_client.hgetall(f"{prefix}:rule_stats:r1")
        assert stored == {"hits": "3", "hits:2026-03-02": "1"}
    finally:
        for key in redis_client.scan_iter(f"{prefix}:*"):
            redis_client.delete(key)
