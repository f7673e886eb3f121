"""The API's Prometheus metrics, served at ``/metrics`` (no token: scrape it on a private
network): requests by method, route template and status, and how long they took.

Routes are labelled by their template (``/alerts/{alert_id}``), never by the raw path, so
the label set stays small whatever ids are asked for.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

__all__ = ["instrument"]

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def instrument(app: FastAPI) -> CollectorRegistry:
    """Count every request of ``app`` and serve the counts at ``/metrics``."""
    registry = CollectorRegistry()
    requests = Counter(
        "duoli_api_requests",
        "API requests, by method, route template and status.",
        ["method", "route", "status"],
        registry=registry,
    )
    seconds = Histogram(
        "duoli_api_request_seconds",
        "API request duration, by route template.",
        ["route"],
        buckets=REQUEST_BUCKETS,
        registry=registry,
    )

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]):
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        if route != "/metrics":
            requests.labels(request.method, route, str(response.status_code)).inc()
            seconds.labels(route).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry
