"""``duoli demo``: broker, workers and the simulator, with a live summary in the terminal."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from rich.console import Group
from rich.live import Live
from rich.table import Table

from connectors.broker import EmbeddedBroker
from connectors.kafka_admin import committed_offsets, produce
from duoli.processes import WorkerProcess
from duoli.settings import Settings
from duoli.simulate import SimulationConfig, simulate
from streams.topics import TopicNames
from streams.worker import prepare_topics

__all__ = ["DemoView", "run_demo"]


@dataclass
class DemoView:
    """What the terminal shows, built from the alerts stream and the committed offsets."""

    started: float = field(default_factory=time.monotonic)
    processed: int = 0
    rate: float = 0.0
    alerts: Counter[tuple[str, str]] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)

    def count_processed(self, processed: int, seconds: float) -> None:
        self.rate = (processed - self.processed) / seconds if seconds > 0 else 0.0
        self.processed = processed

    def add_alert(self, alert: dict[str, Any]) -> None:
        self.alerts[alert["kind"], alert["severity"]] += 1
        for reason in alert["reasons"]:
            self.rules[reason.split(":", 1)[0]] += 1

    def render(self) -> Group:
        head = Table(title="Duoli demo", show_header=False)
        head.add_row("events processed", f"{self.processed}")
        head.add_row("events/s", f"{self.rate:.0f}")
        head.add_row("running for", f"{time.monotonic() - self.started:.0f} s")
        alerts = Table(title="alerts by kind and severity")
        for column in ("kind", "severity", "count"):
            alerts.add_column(column)
        for (kind, severity), count in sorted(self.alerts.items()):
            alerts.add_row(kind, severity, str(count))
        rules = Table(title="top rules")
        rules.add_column("rule")
        rules.add_column("alerts")
        for rule, count in self.rules.most_common(8):
            rules.add_row(rule, str(count))
        return Group(head, alerts, rules)


def run_demo(
    settings: Settings, duration: float | None, rate: float, workers: int, accounts: int
) -> None:
    names = TopicNames.of(settings)
    logs = Path(tempfile.mkdtemp(prefix="duoli-demo-"))
    with ExitStack() as stack:
        url = settings.kafka_url or stack.enter_context(EmbeddedBroker()).url
        prepare_topics(settings, url)
        for index in range(workers):
            log = logs / f"worker-{index}.log"
            stack.enter_context(WorkerProcess(url, settings.as_env(), log))
        stop = threading.Event()
        stack.callback(stop.set)
        producer = threading.Thread(
            target=_feed, args=(url, names.events, rate, accounts, stop), daemon=True
        )
        producer.start()
        _watch(settings, url, names, duration, stop)
    print(f"worker logs: {logs}")


def _feed(url: str, topic: str, rate: float, accounts: int, stop: threading.Event) -> None:
    events = simulate(SimulationConfig(seed=int(time.time()), accounts=accounts, days=365))
    produce(url, topic, _until(stop, events), rate=rate)


def _until(
    stop: threading.Event, events: Iterator[dict[str, Any]]
) -> Iterator[tuple[bytes, bytes]]:
    for event in events:
        if stop.is_set():
            return
        yield event["account_id"].encode(), json.dumps(event).encode()


def _watch(
    settings: Settings, url: str, names: TopicNames, duration: float | None, stop: threading.Event
) -> None:
    client: Any = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    stream = f"{settings.redis_prefix}:alerts"
    newest = client.xrevrange(stream, count=1)
    last_id = newest[0][0] if newest else "0-0"
    view = DemoView()
    deadline = time.monotonic() + duration if duration else None
    try:
        with Live(view.render(), refresh_per_second=2) as live:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                time.sleep(1.0)
                for _, entries in client.xread({stream: last_id}, count=10_000) or []:
                    for entry_id, fields in entries:
                        view.add_alert(json.loads(fields["data"]))
                        last_id = entry_id
                offsets = committed_offsets(url, settings.topic_prefix, [names.events])
                view.count_processed(sum(offsets.values()), 1.0)
                live.update(view.render())
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
