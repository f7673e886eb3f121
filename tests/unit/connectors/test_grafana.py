"""connectors.grafana against an HTTP double, NOT against Grafana.

Grafana cannot run on this machine. These tests start a small local HTTP server in a thread
that records every request and answers with canned replies. The replies are shaped after
Grafana's documented HTTP API (folders, dashboards/db, annotations); they were written by
hand from that documentation, not captured from a running Grafana. What the tests prove is
the exact requests Duoli sends through grafana-client and niquests over a real socket
(method, path, token, JSON body) and how the replies and errors are read back; they do not
prove that a real Grafana accepts those requests.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from connectors import grafana
from connectors.grafana import GrafanaError

Reply = tuple[int, dict[str, Any]]

FOLDER_MISSING: Reply = (404, {"message": "folder not found", "status": "not-found"})
FOLDER_FOUND: Reply = (200, {"id": 7, "uid": "duoli", "title": "Duoli", "version": 1})
FOLDER_CREATED: Reply = (
    200,
    {"id": 7, "uid": "duoli", "title": "Duoli", "url": "/dashboards/f/duoli/duoli", "version": 1},
)
ANNOTATION_ADDED: Reply = (200, {"message": "Annotation added", "id": 42})
PROVISIONED: Reply = (400, {"message": "Cannot save provisioned dashboard"})


def dashboard_saved(uid: str) -> Reply:
    return 200, {"id": 3, "uid": uid, "url": f"/d/{uid}/{uid}", "status": "success", "version": 2}


@dataclass
class Recorded:
    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class GrafanaDouble:
    """Replies to ``(method, path)`` from ``routes``; anything else gets a 404."""

    routes: dict[tuple[str, str], Reply | Callable[[Any], Reply]]
    requests: list[Recorded] = field(default_factory=list)

    def reply(self, method: str, path: str, body: Any) -> Reply:
        route = self.routes.get((method, path))
        if route is None:
            return 404, {"message": "Not found"}
        return route(body) if callable(route) else route


def _handler(double: GrafanaDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            auth = self.headers.get("Authorization")
            double.requests.append(Recorded(self.command, self.path, auth, body))
            status, payload = double.reply(self.command, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

    return Handler


@pytest.fixture
def grafana_double() -> Iterator[Callable[..., tuple[Any, GrafanaDouble]]]:
    """Factory: start a double with the given routes; returns a connected client and it."""
    started: list[tuple[ThreadingHTTPServer, Any]] = []

    def start(routes: Mapping[tuple[str, str], Any]) -> tuple[Any, GrafanaDouble]:
        double = GrafanaDouble(dict(routes))
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(double))
        serve = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        serve.start()
        api = grafana.connect(f"http://127.0.0.1:{server.server_port}", token="glsa_test")
        started.append((server, api))
        return api, double

    yield start
    for server, api in started:
        api.client.s.close()
        server.shutdown()
        server.server_close()


def _dashboards_route(body: Any) -> Reply:
    return dashboard_saved(body["dashboard"]["uid"])


def test_push_creates_the_folder_then_overwrites_each_dashboard_by_uid(grafana_double):
    api, double = grafana_double(
        {
            ("GET", "/api/folders/duoli"): FOLDER_MISSING,
            ("POST", "/api/folders"): FOLDER_CREATED,
            ("POST", "/api/dashboards/db"): _dashboards_route,
        }
    )
    urls = grafana.push_dashboards(api, message="deploy 1.2")

    files = grafana.load_dashboards()
    assert [(r.method, r.path) for r in double.requests] == [
        ("GET", "/api/folders/duoli"),
        ("POST", "/api/folders"),
        ("POST", "/api/dashboards/db"),
        ("POST", "/api/dashboards/db"),
    ]
    assert {r.authorization for r in double.requests} == {"Bearer glsa_test"}
    assert double.requests[1].body == {"title": "Duoli", "uid": "duoli"}
    pushed = [r.body for r in double.requests[2:]]
    assert [(b["dashboard"]["uid"], b["dashboard"]["title"]) for b in pushed] == [
        ("duoli-operations", "Duoli operations"),
        ("duoli-risk", "Duoli risk"),
    ]
    for body, source in zip(pushed, files, strict=True):
        assert body["overwrite"] is True
        assert body["folderUid"] == "duoli"
        assert body["message"] == "deploy 1.2"
        assert body["dashboard"] == {**source, "id": None}
    assert urls == ["/d/duoli-operations/duoli-operations", "/d/duoli-risk/duoli-risk"]


def test_push_into_an_existing_folder_does_not_create_it(grafana_double):
    api, double = grafana_double(
        {
            ("GET", "/api/folders/ops"): FOLDER_FOUND,
            ("POST", "/api/dashboards/db"): _dashboards_route,
        }
    )
    board = {"uid": "custom", "title": "Custom", "panels": []}
    grafana.push_dashboards(api, [board], folder_uid="ops", folder_title="Ops")

    assert [(r.method, r.path) for r in double.requests] == [
        ("GET", "/api/folders/ops"),
        ("POST", "/api/dashboards/db"),
    ]
    assert double.requests[1].body == {
        "dashboard": {"uid": "custom", "title": "Custom", "panels": [], "id": None},
        "folderUid": "ops",
        "overwrite": True,
        "message": "pushed by duoli",
    }


def test_a_dashboard_without_uid_is_refused_before_any_request(grafana_double):
    api, double = grafana_double({})
    with pytest.raises(GrafanaError, match="no uid"):
        grafana.push_dashboards(api, [{"title": "Nameless"}])
    assert double.requests == []


def test_grafana_refusing_a_dashboard_is_a_grafana_error(grafana_double):
    api, _ = grafana_double(
        {("GET", "/api/folders/duoli"): FOLDER_FOUND, ("POST", "/api/dashboards/db"): PROVISIONED}
    )
    with pytest.raises(GrafanaError, match=r"dashboard duoli-operations.*provisioned"):
        grafana.push_dashboards(api)


def test_a_folder_lookup_failure_other_than_404_is_a_grafana_error(grafana_double):
    api, double = grafana_double({("GET", "/api/folders/duoli"): (403, {"message": "denied"})})
    with pytest.raises(GrafanaError, match="folder duoli"):
        grafana.push_dashboards(api)
    assert [r.path for r in double.requests] == ["/api/folders/duoli"]


def test_an_unreachable_grafana_is_a_grafana_error():
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = grafana.connect(f"http://127.0.0.1:{port}", token="t", timeout=1.0)
    try:
        with pytest.raises(GrafanaError, match="annotation"):
            grafana.annotate(api, "x", [])
    finally:
        api.client.s.close()


AT = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
AT_MS = 1772368200000


def test_rule_push_annotation_has_text_tags_and_time(grafana_double):
    api, double = grafana_double({("POST", "/api/annotations"): ANNOTATION_ADDED})
    annotation_id = grafana.annotate_rule_push(
        api, {"velocity_burst": 4, "new_device": 2}, "alice", "tighter limits", at=AT
    )

    assert annotation_id == 42
    [request] = double.requests
    assert (request.method, request.path) == ("POST", "/api/annotations")
    assert request.body == {
        "panelId": None,
        "time": AT_MS,
        "timeEnd": None,
        "tags": ["duoli", "rule-push", "velocity_burst", "new_device"],
        "text": "rules pushed by alice: velocity_burst v4, new_device v2 (tighter limits)",
    }


def test_model_promotion_annotation_has_text_tags_and_time(grafana_double):
    api, double = grafana_double({("POST", "/api/annotations"): ANNOTATION_ADDED})
    grafana.annotate_model_promotion(api, "hoeffding", "logistic", 2140, at=AT)

    [request] = double.requests
    assert request.body == {
        "panelId": None,
        "time": AT_MS,
        "timeEnd": None,
        "tags": ["duoli", "model-promotion", "hoeffding"],
        "text": "model promoted: hoeffding replaces logistic (2140 labels)",
    }


def test_an_annotation_defaults_to_now(grafana_double):
    api, double = grafana_double({("POST", "/api/annotations"): ANNOTATION_ADDED})
    before = datetime.now(UTC).timestamp() * 1000
    grafana.annotate(api, "deploy", ["deploy"])
    after = datetime.now(UTC).timestamp() * 1000

    [request] = double.requests
    assert before - 1 <= request.body["time"] <= after + 1
    assert request.body["tags"] == ["duoli", "deploy"]


def test_every_dashboard_shows_the_annotations_the_module_posts():
    """The annotations are tagged ``grafana.TAG``; each dashboard queries that tag."""
    for dashboard in grafana.load_dashboards():
        queries = dashboard["annotations"]["list"]
        tags = [q["target"]["tags"] for q in queries if q.get("target", {}).get("type") == "tags"]
        assert [grafana.TAG] in tags, dashboard["title"]
