"""The latency benchmark's load and readers, on the real broker and Redis: every event
sent is seen arriving, at a latency that is measured, not assumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench._latency import broker_latency, pipeline_latency
from connectors.broker import EmbeddedBroker
from duoli.settings import load_settings

pytestmark = pytest.mark.integration

RATE, SECONDS = 100.0, 1.0


def test_the_broker_baseline_sees_every_record_it_sends(broker: EmbeddedBroker) -> None:
    latency = broker_latency(broker.url, load_settings(), RATE, SECONDS)
    assert (latency["sent"], latency["received"]) == (100, 100)
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] < 5000


def test_the_pipeline_measure_sees_each_events_alert_in_redis(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    latency = pipeline_latency(broker.url, load_settings(), RATE, SECONDS, tmp_path, broker.pid)
    assert (latency["sent"], latency["received"]) == (100, 100)
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] < 5000
    assert latency["worker_cpu_cores"] > 0
