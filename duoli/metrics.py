"""A worker's Prometheus metrics, counted per batch and served at ``/metrics``.

The hot path never touches a metric: a batch collects plain tallies (a ``Tally``), and
``WorkerMetrics.record`` folds them into the registry once, when the batch's outputs are
stored. prometheus_client takes a lock for every ``inc`` and ``observe``; folding a batch
of 2,000 events costs one lock per label set and per histogram instead.

Metric names (all in one ``CollectorRegistry`` per worker, not the global one):

- ``duoli_events_total{type}``: valid input events taken in, by type;
- ``duoli_dead_letters_total{reason}``: messages dead-lettered, by reason;
- ``duoli_alerts_total{kind,severity}``: alerts raised;
- ``duoli_rule_hits_total{rule_id,mode}``: rule matches, ``mode`` active or shadow;
- ``duoli_decisions_total{action}``: credit decisions sent;
- ``duoli_fraud_score``: histogram of the fraud_score of every score record;
- ``duoli_event_latency_seconds``: histogram, from an input event's Kafka timestamp (set
  by its producer) to the moment its batch's outputs (its score record, alerts and
  decisions) are acknowledged by the broker and written to Redis;
- ``duoli_consumer_lag{topic,partition}``: the consumer's highwater minus its position.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import Counter as Tallies
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "FRAUD_SCORE_BUCKETS",
    "LATENCY_BUCKETS",
    "BatchHistogram",
    "MetricsServer",
    "Tally",
    "WorkerMetrics",
    "serve_metrics",
]

FRAUD_SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Tally:
    """What one batch did, in plain counters: cheap to add to, folded into metrics once."""

    events: Tallies[str] = field(default_factory=Tallies)
    dead_letters: Tallies[str] = field(default_factory=Tallies)
    alerts: Tallies[tuple[str, str]] = field(default_factory=Tallies)
    rule_hits: Tallies[tuple[str, str]] = field(default_factory=Tallies)
    decisions: Tallies[str] = field(default_factory=Tallies)
    fraud_scores: list[float] = field(default_factory=list)
    produced_at: list[float] = field(default_factory=list)  # Kafka timestamps, in seconds


class BatchHistogram(Collector):
    """A histogram that takes a whole batch of observations under one lock.

    >>> registry = CollectorRegistry()
    >>> scores = BatchHistogram("score", "A score.", (0.5, 1.0), registry)
    >>> scores.observe_all([0.2, 0.5, 0.7])
    >>> sample = registry.get_sample_value
    >>> sample("score_bucket", {"le": "0.5"}), sample("score_count"), sample("score_sum")
    (2, 3, 1.4)
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = (*sorted(buckets), float("inf"))
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_all(self, values: Iterable[float]) -> None:
        values = list(values)
        found = Tallies(bisect_left(self.bounds, value) for value in values)
        added = sum(values)
        with self._lock:
            for index, count in found.items():
                self.counts[index] += count
            self.total += added

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, total = list(self.counts), self.total
        cumulative, running = [], 0
        for bound, count in zip(self.bounds, counts, strict=True):
            running += count
            cumulative.append((_bound_label(bound), running))
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=cumulative, sum_value=total
        )


def _bound_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class WorkerMetrics:
    """Every metric of one worker, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry or CollectorRegistry()
        self.events = Counter(
            "duoli_events", "Valid input events taken in, by type.", ["type"], registry=registry
        )
        self.dead_letters = Counter(
            "duoli_dead_letters",
            "Messages dead-lettered, by reason.",
            ["reason"],
            registry=registry,
        )
        self.alerts = Counter(
            "duoli_alerts", "Alerts raised.", ["kind", "severity"], registry=registry
        )
        self.rule_hits = Counter(
            "duoli_rule_hits",
            "Rule matches, active or shadow.",
            ["rule_id", "mode"],
            registry=registry,
        )
        self.decisions = Counter(
            "duoli_decisions", "Credit decisions sent, by action.", ["action"], registry=registry
        )
        self.fraud_score = BatchHistogram(
            "duoli_fraud_score", "fraud_score of every score record.", FRAUD_SCORE_BUCKETS, registry
        )
        self.latency = BatchHistogram(
            "duoli_event_latency_seconds",
            "From an input event's Kafka timestamp to its batch's outputs being stored.",
            LATENCY_BUCKETS,
            registry,
        )
        self.lag = Gauge(
            "duoli_consumer_lag",
            "Messages in an assigned partition past the consumer's position.",
            ["topic", "partition"],
            registry=registry,
        )
        self._lagging: set[tuple[str, str]] = set()

    def record(self, tally: Tally, now: float | None = None) -> None:
        """Fold one batch's tally in; ``now`` is when its outputs were stored."""
        _add(self.events, tally.events)
        _add(self.dead_letters, tally.dead_letters)
        _add(self.alerts, tally.alerts)
        _add(self.rule_hits, tally.rule_hits)
        _add(self.decisions, tally.decisions)
        if tally.fraud_scores:
            self.fraud_score.observe_all(tally.fraud_scores)
        if tally.produced_at:
            stored = time.time() if now is None else now
            # A producer's clock may run ahead of ours: never a negative latency.
            self.latency.observe_all(max(0.0, stored - at) for at in tally.produced_at)

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """The lag of every assigned partition; partitions no longer assigned disappear."""
        current = {(topic, str(partition)): lag for (topic, partition), lag in lags.items()}
        for labels in self._lagging - current.keys():
            self.lag.remove(*labels)
        for labels, lag in current.items():
            self.lag.labels(*labels).set(lag)
        self._lagging = set(current)


def _add(counter: Counter, tallies: Mapping[Any, int]) -> None:
    for labels, count in tallies.items():
        child = counter.labels(*labels) if isinstance(labels, tuple) else counter.labels(labels)
        child.inc(count)


class MetricsServer:
    """``/metrics`` over HTTP in a daemon thread; ``stop`` closes the port."""

    def __init__(self, registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> None:
        self.server, self.thread = start_http_server(port, addr, registry=registry)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> MetricsServer:
    """Serve ``registry`` at ``http://addr:port/metrics``; port 0 picks a free one."""
    return MetricsServer(registry, port, addr)
