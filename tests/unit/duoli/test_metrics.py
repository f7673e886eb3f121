from __future__ import annotations

import asyncio
import urllib.request
from collections import Counter
from types import SimpleNamespace

from duoli.engine import Outcome
from duoli.errors import InvalidEvent
from duoli.metrics import Tally, WorkerMetrics, serve_metrics
from duoli.rule_stats import RuleActivity
from streams.processing import Batch, count_events, count_outcome
from streams.timers import consumer_lag


def sample(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_batch_tally_is_folded_into_the_counters() -> None:
    metrics = WorkerMetrics()
    tally = Tally()
    tally.events.update(["transaction", "transaction", "repayment"])
    tally.dead_letters["malformed_json"] += 1
    tally.alerts["fraud", "high"] += 2
    tally.rule_hits.update([("r-1", "active"), ("r-2", "shadow")])
    tally.decisions["freeze"] += 1
    metrics.record(tally)
    metrics.record(tally)
    assert sample(metrics, "duoli_events_total", type="transaction") == 4
    assert sample(metrics, "duoli_events_total", type="repayment") == 2
    assert sample(metrics, "duoli_dead_letters_total", reason="malformed_json") == 2
    assert sample(metrics, "duoli_alerts_total", kind="fraud", severity="high") == 4
    assert sample(metrics, "duoli_rule_hits_total", rule_id="r-2", mode="shadow") == 2
    assert sample(metrics, "duoli_decisions_total", action="freeze") == 2


def test_histograms_count_each_value_in_its_bucket() -> None:
    metrics = WorkerMetrics()
    metrics.record(Tally(fraud_scores=[0.01, 0.5, 0.97], produced_at=[99.96, 99.0, 101.0]), 100.0)
    assert sample(metrics, "duoli_fraud_score_bucket", le="0.05") == 1
    assert sample(metrics, "duoli_fraud_score_bucket", le="0.5") == 2
    assert sample(metrics, "duoli_fraud_score_bucket", le="+Inf") == 3
    assert sample(metrics, "duoli_fraud_score_sum") == 1.48
    # a producer clock ahead of the worker's counts as no latency, never a negative one
    assert sample(metrics, "duoli_event_latency_seconds_bucket", le="0.005") == 1
    assert sample(metrics, "duoli_event_latency_seconds_bucket", le="0.05") == 2
    assert sample(metrics, "duoli_event_latency_seconds_bucket", le="1.0") == 3
    assert sample(metrics, "duoli_event_latency_seconds_count") == 3


def test_lag_of_a_partition_no_longer_assigned_disappears() -> None:
    metrics = WorkerMetrics()
    metrics.set_lag({("events", 0): 5, ("events", 1): 0})
    metrics.set_lag({("events", 1): 7})
    assert sample(metrics, "duoli_consumer_lag", topic="events", partition="0") is None
    assert sample(metrics, "duoli_consumer_lag", topic="events", partition="1") == 7


def test_consumer_lag_is_highwater_minus_position_of_the_input_topics() -> None:
    assigned = [
        SimpleNamespace(topic=topic, partition=partition)
        for topic, partition in [("in", 0), ("in", 1), ("x", 0)]
    ]
    ends = {("in", 0): 10, ("in", 1): None, ("x", 0): 3}

    async def position(partition: SimpleNamespace) -> int:
        return 4

    consumer = SimpleNamespace(
        assignment=lambda: assigned,
        highwater=lambda p: ends[p.topic, p.partition],
        position=position,
    )
    assert asyncio.run(consumer_lag(consumer, {"in"})) == {("in", 0): 6}


def test_metrics_are_served_over_http_until_stopped() -> None:
    metrics = WorkerMetrics()
    metrics.record(Tally(events=Counter({"transaction": 3})))
    server = serve_metrics(metrics.registry, 0, "127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
    finally:
        server.stop()
    assert 'duoli_events_total{type="transaction"} 3.0' in body
    assert "duoli_event_latency_seconds_bucket" in body


def test_a_batch_counts_outcomes_and_valid_events() -> None:
    batch = Batch()
    outcome = Outcome(
        score={"fraud_score": 0.8},
        alerts=[{"kind": "fraud", "severity": "high"}],
        decisions=[{"action": "freeze"}],
        rule_activity=RuleActivity(at=0.0, hits=("r-1",), shadow=("r-2",)),
    )
    count_outcome(batch.tally, outcome)
    count_outcome(batch.tally, Outcome())
    count_events(batch.tally, [SimpleNamespace(type="repayment"), None, InvalidEvent("x", "y")])  # type: ignore[list-item]
    assert batch.tally.fraud_scores == [0.8]
    assert batch.tally.alerts == {("fraud", "high"): 1}
    assert batch.tally.decisions == {"freeze": 1}
    assert batch.tally.rule_hits == {("r-1", "active"): 1, ("r-2", "shadow"): 1}
    assert batch.tally.events == {"repayment": 1}


def test_a_dead_letter_is_counted_by_its_reason() -> None:
    batch = Batch()
    batch.reject("dead", {"reason": "malformed_json", "detail": "", "source": "", "raw": ""})
    assert batch.tally.dead_letters == {"malformed_json": 1}
    assert [topic for topic, *_ in batch.records] == ["dead"]
