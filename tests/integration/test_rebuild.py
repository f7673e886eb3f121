"""Redis lost and rebuilt from the topics, on the real broker and Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from click.testing import CliRunner

from duoli.cli import cli
from duoli.settings import load_settings
from duoli.simulate import SimulationConfig, simulate

pytestmark = pytest.mark.integration

AS_OF_THE_CLOCK = {"updated_at", "days_past_due", "pd", "status"}  # the rebuild's moment


def _served(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Everything the workers serve from Redis under ``prefix``, keyed by suffix."""
    found: dict[str, Any] = {}
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        suffix = key[len(prefix) + 1 :]
        kind = client.type(key)
        if kind == "hash":
            found[suffix] = client.hgetall(key)
        elif kind == "string":
            found[suffix] = client.get(key)
        else:  # the alerts stream: its alert ids in order
            found[suffix] = [fields["alert_id"] for _, fields in client.xrange(key)]
    return found


@pytest.fixture
def rebuild(monkeypatch):
    """``rebuild(running)``: ``duoli redis rebuild`` with the pipeline's settings."""

    def run(running: Any) -> str:
        for name, value in {**running.env, "DUOLI_KAFKA_URL": running.url}.items():
            monkeypatch.setenv(name, value)
        load_settings.cache_clear()
        result = CliRunner().invoke(cli, ["redis", "rebuild"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    yield run
    load_settings.cache_clear()


def _wipe(client: redis.Redis, prefix: str) -> None:
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        client.delete(key)


def test_a_lost_redis_is_rebuilt_from_the_topics(pipeline, redis_client, rebuild):
    running = pipeline(workers=1, DUOLI_PARTITIONS="2")
    events = list(simulate(SimulationConfig(seed=5, accounts=60, days=12, fraud_rate=0.2)))
    running.feed_by_day(events)
    running.stop()  # the command is run with the workers stopped
    before = _served(redis_client, running.prefix)
    _wipe(redis_client, running.prefix)

    output = rebuild(running)

    after = _served(redis_client, running.prefix)
    alerts = before["alerts"]
    assert f"alerts: {len(alerts)} on the topic, {len(alerts)} were missing" in output
    assert len(alerts) > 10 and sorted(after["alerts"]) == sorted(alerts)
    assert {k: v for k, v in after.items() if k.startswith("alert:")} == {
        k: v for k, v in before.items() if k.startswith("alert:")
    }
    accounts = sorted(k for k in before if k.startswith("account:"))
    assert len(accounts) == 60 and sorted(k for k in after if k.startswith("account:")) == accounts
    for key in accounts:
        kept = {f: v for f, v in before[key].items() if f not in AS_OF_THE_CLOCK}
        assert {f: v for f, v in after[key].items() if f not in AS_OF_THE_CLOCK} == kept, key
        assert after[key]["updated_at"] >= before[key]["updated_at"]
    merchants = {k: v for k, v in before.items() if k.startswith("merchant:")}
    assert merchants and {k: v for k, v in after.items() if k.startswith("merchant:")} == merchants
    clocks = {f: v for f, v in before["rule_stats"].items() if f.startswith("clock:")}
    assert len(clocks) == 2 and after["rule_stats"] == clocks


def test_rebuilding_a_redis_that_lost_nothing_adds_no_alert(pipeline, redis_client, rebuild):
    running = pipeline(workers=1)
    running.feed_by_day(list(simulate(SimulationConfig(seed=6, accounts=30, days=6))))
    running.stop()
    before = _served(redis_client, running.prefix)

    output = rebuild(running)

    assert len(before["alerts"]) > 0
    assert f"alerts: {len(before['alerts'])} on the topic, 0 were missing" in output
    assert _served(redis_client, running.prefix)["alerts"] == before["alerts"]
