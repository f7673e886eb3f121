"""Seed data for the API tests, written through the workers' own ``RedisStore``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis
from anyio.from_thread import start_blocking_portal

from connectors.redis_store import RedisStore
from duoli.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/0"
DAY = 86_400.0
CLOCK = 1_772_668_800.0  # 2026-03-05T00:00:00Z

RULES = """
rules:
  - id: big_cash
    description: a large cash withdrawal
    expression: amount >= 5000
    severity: high
    action: review
    mode: active
    version: 2
  - id: night_owl
    description: many transactions in an hour
    expression: tx_count_1h >= 6
    severity: medium
    action: alert
    mode: shadow
    version: 1
"""

TOKENS = {"view-tok": "viewer", "ana-tok": {"user": "alice", "role": "analyst"}, "adm-tok": "admin"}


def alert(alert_id: str, kind: str, severity: str, account_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "kind": kind,
        "severity": severity,
        "account_id": account_id,
        "event_ids": [f"ev-{alert_id}"],
        "reasons": [f"big_cash: reason of {alert_id}"],
        "score": 0.8,
        "created_at": "2026-03-02T09:00:00Z",
        "account": {"credit_limit": 10000.0, "balance": 100.0},
        **extra,
    }


ALERTS = [
    alert("a-fraud-1", "fraud", "high", "acc-1"),
    alert("a-delinq-1", "delinquency", "low", "acc-1", score=1.0),
    alert("a-fraud-2", "fraud", "critical", "acc-2"),
    alert("a-fraud-3", "fraud", "high", "acc-2"),
]

ACCOUNT: dict[str, str | int | float] = {
    "credit_limit": 10000.0,
    "apr": 0.18,
    "balance": 100.0,
    "utilisation": 0.01,
    "fraud_score": 0.8,
    "pd": 0.05,
    "days_past_due": 1,
    "outstanding_installments": 1,
    "on_time_streak": 0,
    "status": "overdue",
    "frozen": 0,
    "updated_at": "2026-03-02T09:00:00Z",
}


def settings_for(prefix: str, tmp: Path) -> Settings:
    rules = tmp / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    return Settings(redis_url=REDIS_URL, redis_prefix=prefix, rules_path=rules)


def new_prefix() -> str:
    return f"api-{uuid.uuid4().hex[:10]}"


def seed(prefix: str) -> None:
    asyncio.run(_seed(prefix))


async def _seed(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix)
    await store.start()
    try:
        await store.write(
            alerts=ALERTS,
            hashes={
                "account:acc-1": ACCOUNT,
                "rule_stats": {"clock:0": CLOCK},
                "rule_stats:big_cash": {"last_hit_at": "2026-03-02T09:00:00Z"},
            },
            counts={
                # 2026-02-20 is matured at the clock (7-day maturity), 2026-03-04 is not.
                "rule_stats:big_cash": {"hits": 5, "hits:2026-02-20": 4, "frauds:2026-02-20": 3},
                "rule_stats:night_owl": {"shadow_hits": 2, "hits:2026-03-04": 2},
                "rule_stats:retired_rule": {"hits": 1},
            },
        )
    finally:
        await store.close()


def cleanup(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(f"{prefix}:*", count=1000):
            client.delete(key)
    finally:
        client.close()


class ApiClient:
    """A synchronous client of an app in-process, its lifespan run, on an anyio portal.

    Starlette's TestClient warns about httpx (it wants httpx2); this is the same idea on
    plain httpx.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ApiClient:
        self.portal = self._stack.enter_context(start_blocking_portal())
        lifespan = self.app.router.lifespan_context(self.app)
        self._stack.enter_context(self.portal.wrap_async_context_manager(lifespan))
        transport = httpx.ASGITransport(app=self.app)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://api")
        self._stack.callback(self.portal.call, self.client.aclose)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(functools.partial(self.client.request, method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)
