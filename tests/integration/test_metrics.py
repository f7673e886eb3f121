"""A real Prometheus scrapes a running worker; every PromQL of the dashboards returns data."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from duoli.processes import stop_pid, wait_for
from duoli.simulate import SimulationConfig, simulate

pytestmark = pytest.mark.integration

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
MALFORMED = {"malformed_json": "{not json", "not_an_object": "[1, 2, 3]"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prometheus_queries(board: dict[str, Any]) -> list[str]:
    """The ``expr`` of every Prometheus target, in panels and in collapsed rows."""
    panels = [*board["panels"]]
    panels += [inner for panel in board["panels"] for inner in panel.get("panels", [])]
    return [
        target["expr"]
        for panel in panels
        for target in panel.get("targets", [])
        if (target.get("datasource") or panel["datasource"])["type"] == "prometheus"
    ]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


class Prometheus:
    """The ``prometheus`` binary scraping one target every second, stopped by pid."""

    def __init__(self, workdir: Path, target: str) -> None:
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: duoli-worker\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        command = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with (workdir / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr}
        )
        answer = get_json(url)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def values(self, expr: str, label: str) -> dict[str, float]:
        return {r["metric"][label]: float(r["value"][1]) for r in self.query(expr)}

    def scraped(self, expr: str) -> bool:
        try:
            return bool(self.query(expr))
        except OSError:  # not listening yet
            return False

    def stop(self) -> None:
        stop_pid(self.process)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    if not Path(PROMETHEUS).exists():
        pytest.skip("no prometheus binary: apt-get install -y prometheus (.ci/run does)")
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        started.append(Prometheus(tmp_path, target))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def test_every_dashboard_query_returns_data_from_a_scraped_worker(pipeline, prometheus, make_event):
    port = free_port()
    running = pipeline(DUOLI_PARTITIONS="2", DUOLI_METRICS_PORT=str(port))
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    assert wait_for(lambda: _answers(metrics_url), 30), "the worker never served /metrics"
    server = prometheus(f"127.0.0.1:{port}")
    assert wait_for(lambda: server.scraped('up{job="duoli-worker"} == 1'), 20)

    events = list(simulate(SimulationConfig(seed=5, accounts=60, days=20)))
    teleport = json.dumps(make_event("transaction", type="teleport"))
    running.send([*events, *MALFORMED.values(), teleport])
    running.wait()
    assert wait_for(lambda: server.scraped("sum(duoli_dead_letters_total) >= 3"), 10)
    assert wait_for(lambda: server.scraped(f"sum(duoli_events_total) >= {len(events)}"), 10)
    wait_for(lambda: False, 3)  # a few more scrapes, so every rate has two samples

    queries = [q for name in ("duoli-operations", "duoli-risk") for q in _queries(name)]
    assert len(queries) >= 15
    empty = [expr for expr in queries if not server.query(expr)]
    assert empty == [], f"no data for: {empty}"
    unanswered = [expr for expr in queries if not any(_finite(r) for r in server.query(expr))]
    assert unanswered == [], f"only NaN for: {unanswered}"
    by_type = Counter(event["type"] for event in events)
    assert server.values("duoli_events_total", "type") == by_type
    letters = server.values("duoli_dead_letters_total", "reason")
    assert letters == dict.fromkeys([*MALFORMED, "unknown_event_type"], 1.0)
    scored = server.query("duoli_fraud_score_count")
    assert float(scored[0]["value"][1]) == by_type["transaction"]


def _queries(name: str) -> list[str]:
    return prometheus_queries(json.loads((DASHBOARDS / f"{name}.json").read_text()))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _finite(result: dict[str, Any]) -> bool:
    return math.isfinite(float(result["value"][1]))
