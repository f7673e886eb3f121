"""connectors.grafana and ``duoli grafana push|follow`` against an HTTP double, NOT Grafana.

Grafana cannot run on this machine. These tests start a small local HTTP server in a thread
that records every request and answers with canned replies, or, for annotations, from a
list it keeps (POST adds one; GET returns those carrying every ``tags`` value asked for).
The replies are shaped after Grafana's documented HTTP API (folders, dashboards/db,
annotations); they were written by hand from that documentation, not captured from a
running Grafana. What the tests prove is the exact requests Duoli sends through
grafana-client and niquests over a real socket (method, path, query, token, JSON body) and
how the replies and errors are read back; they do not prove that a real Grafana accepts
those requests, nor that its tag search matches exactly as the double's does.

The pure parts of the follower (which annotations a record calls for, how the records of
one rule push are gathered) are tested on their own, without any server.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from click.testing import CliRunner

from connectors import grafana
from connectors.grafana import GrafanaError
from duoli import grafana_cli
from duoli.errors import ConfigError
from duoli.grafana_cli import AUDIT, MODELS, MalformedRecord, ModelPromotion, RulePush
from duoli.settings import load_settings

Reply = tuple[int, Any]

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


Route = Reply | Callable[[Recorded], Reply]


@dataclass
class GrafanaDouble:
    """Replies to ``(method, path with its query)``, else ``(method, path)``, from
    ``routes``; anything else gets a 404."""

    routes: dict[tuple[str, str], Route]
    requests: list[Recorded] = field(default_factory=list)

    def reply(self, request: Recorded) -> Reply:
        path = urlsplit(request.path).path
        route = self.routes.get((request.method, request.path))
        route = route or self.routes.get((request.method, path))
        if route is None:
            return 404, {"message": "Not found"}
        return route(request) if callable(route) else route

    def posted(self) -> list[Any]:
        return [r.body for r in self.requests if (r.method, r.path) == ("POST", "/api/annotations")]


@dataclass
class Annotations:
    """The annotations of the double: POST adds one, GET finds those carrying every ``tags``
    value of the query (at most ``limit``), as Grafana's documentation describes."""

    saved: list[dict[str, Any]] = field(default_factory=list)

    def add(self, request: Recorded) -> Reply:
        annotation = {"id": len(self.saved) + 1, "dashboardId": 0, **request.body}
        self.saved.append(annotation)
        return 200, {"message": "Annotation added", "id": annotation["id"]}

    def find(self, request: Recorded) -> Reply:
        query = parse_qs(urlsplit(request.path).query)
        wanted = set(query.get("tags", []))
        found = [a for a in self.saved if wanted <= set(a["tags"])]
        return 200, found[: int(query.get("limit", ["100"])[0])]

    def routes(self) -> dict[tuple[str, str], Route]:
        return {("POST", "/api/annotations"): self.add, ("GET", "/api/annotations"): self.find}


def _handler(double: GrafanaDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            request = Recorded(self.command, self.path, self.headers.get("Authorization"), body)
            double.requests.append(request)
            status, payload = double.reply(request)
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


@contextmanager
def serving(routes: Mapping[tuple[str, str], Route]) -> Iterator[tuple[str, GrafanaDouble]]:
    """A double answering on a free local port, in a thread; its URL and it."""
    double = GrafanaDouble(dict(routes))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(double))
    serve = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    serve.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", double
    finally:
        server.shutdown()
        server.server_close()
        serve.join()


@pytest.fixture
def grafana_double() -> Iterator[Callable[..., tuple[Any, GrafanaDouble]]]:
    """Factory: start a double with the given routes; returns a connected client and it."""
    with ExitStack() as stack:

        def start(routes: Mapping[tuple[str, str], Any]) -> tuple[Any, GrafanaDouble]:
            url, double = stack.enter_context(serving(routes))
            api = grafana.connect(url, token="glsa_test")
            stack.callback(grafana.close, api)
            return api, double

        yield start


def _dashboards_route(request: Recorded) -> Reply:
    return dashboard_saved(request.body["dashboard"]["uid"])


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


def test_is_annotated_asks_for_the_duoli_tag_and_the_unique_tag(grafana_double):
    store = Annotations([{"id": 1, "tags": ["duoli", "rule-push", "push:abc"], "text": "x"}])
    api, double = grafana_double(store.routes())

    assert grafana.is_annotated(api, "push:abc")
    assert not grafana.is_annotated(api, "push:other")
    assert [(r.method, r.path) for r in double.requests] == [
        ("GET", "/api/annotations?tags=duoli&tags=push:abc&limit=1"),
        ("GET", "/api/annotations?tags=duoli&tags=push:other&limit=1"),
    ]


def test_the_unique_key_is_one_more_tag(grafana_double):
    api, double = grafana_double({("POST", "/api/annotations"): ANNOTATION_ADDED})
    grafana.annotate_rule_push(api, {"big": 2}, "alice", at=AT, key="push:abc")
    grafana.annotate_model_promotion(api, "tree", "logistic", 9, at=AT, key="promotion:tree-1")

    assert [body["tags"] for body in double.posted()] == [
        ["duoli", "rule-push", "big", "push:abc"],
        ["duoli", "model-promotion", "tree", "promotion:tree-1"],
    ]


# -- the follower: which annotations a record calls for ---------------------------------------

AT_TEXT = "2026-03-01T12:30:00Z"


def audit(rule_id: str, version: int, author: str = "alice", note: str = "tighter") -> bytes:
    """An audit record of a rule push, as connectors.control_topic.publish writes it."""
    rule = {"id": rule_id, "version": version, "expression": "amount > 1"}
    new = {"author": author, "at": AT_TEXT, "rule": rule}
    record = {"key": f"rule:{rule_id}", "author": author, "at": AT_TEXT, "previous": None}
    return orjson.dumps({**record, "new": new, "note": note})


def promotion(champion: str, previous: str, at: float, labels: int = 2140) -> dict[str, Any]:
    return {"at": at, "champion": champion, "previous": previous, "labels": labels, "metrics": {}}


def status(*promotions: dict[str, Any]) -> bytes:
    """A trainer status (the fields the follower reads, as Trainer.status() writes them)."""
    return orjson.dumps({"trained_through": "2026-03-02", "fraud": {"promotions": promotions}})


DAY = 1772323200.0  # 2026-03-01T00:00:00Z


def test_an_audit_record_of_a_rule_is_part_of_a_push():
    [push] = grafana_cli.changes_for(AUDIT, b"rule:big", audit("big", 4))

    assert push == RulePush(push.key, "alice", "tighter", AT, {"big": 4})
    assert push.key.startswith("push:") and push.key.count(":") == 1
    [other_rule] = grafana_cli.changes_for(AUDIT, b"rule:small", audit("small", 1))
    [other_push] = grafana_cli.changes_for(AUDIT, b"rule:big", audit("big", 5, note="again"))
    assert other_rule.key == push.key  # the same push: same author, time and note
    assert other_push.key != push.key


def test_list_and_snooze_changes_call_for_no_annotation():
    for key in ("list:vip", "snooze:big:account:acc-1"):
        record = orjson.dumps({"key": key, "author": "a", "at": AT_TEXT, "new": {}, "note": ""})
        assert grafana_cli.changes_for(AUDIT, key.encode(), record) == []


def test_a_trainer_status_calls_for_each_promotion_it_lists():
    value = status(promotion("tree", "logistic", DAY), promotion("blend", "tree", DAY + 86400))

    assert grafana_cli.changes_for(MODELS, b"status", value) == [
        ModelPromotion("promotion:tree-1772323200", "tree", "logistic", 2140, _at(DAY)),
        ModelPromotion("promotion:blend-1772409600", "blend", "tree", 2140, _at(DAY + 86400)),
    ]
    assert grafana_cli.changes_for(MODELS, b"status", status()) == []
    assert grafana_cli.changes_for(MODELS, b"snapshot:1", b"\x80 a pickled snapshot") == []


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@pytest.mark.parametrize(
    ("source", "key", "value"),
    [
        (AUDIT, b"rule:big", b"{not json"),
        (AUDIT, b"rule:big", b"[1, 2]"),
        (AUDIT, b"rule:big", None),
        (AUDIT, b"rule:big", orjson.dumps({"key": "rule:big", "author": "a", "at": AT_TEXT})),
        (AUDIT, b"rule:big", audit("big", 4).replace(AT_TEXT.encode(), b"yesterday")),
        (AUDIT, b"rule:big", audit("big", 4).replace(b'"version":4', b'"version":"4"')),
        (MODELS, b"status", b'{"fraud": {}}'),
        (MODELS, b"status", status(promotion("tree", "logistic", DAY, labels=True))),
        (MODELS, b"status", status({"champion": "tree", "at": "monday"})),
    ],
)
def test_a_malformed_record_is_refused(source, key, value):
    with pytest.raises(MalformedRecord):
        grafana_cli.changes_for(source, key, value)


def _push(key: str, **versions: int) -> RulePush:
    return RulePush(key, "alice", "", AT, versions)


def test_the_records_of_one_push_become_one_change():
    tree = ModelPromotion("promotion:tree-1", "tree", "logistic", 1, AT)
    changes: list[RulePush | ModelPromotion | None] = [
        _push("push:1", big=2),
        tree,  # a record of the other topic in between does not split the push
        _push("push:1", small=1),
        _push("push:2", big=3),  # another push
        None,  # quiet: push:2 is complete
        _push("push:2", small=2),  # same id after a quiet moment: a separate change
    ]
    assert list(grafana_cli.coalesce(changes)) == [
        tree,
        _push("push:1", big=2, small=1),
        _push("push:2", big=3),
        _push("push:2", small=2),
    ]


# -- the follower against the double ----------------------------------------------------------


def _records() -> list[tuple[str, bytes | None, bytes | None] | None]:
    first, second = promotion("tree", "logistic", DAY), promotion("blend", "tree", DAY + 86400)
    return [
        (AUDIT, b"rule:big", audit("big", 4)),
        (AUDIT, b"list:vip", orjson.dumps({"key": "list:vip", "author": "bob", "at": AT_TEXT})),
        (MODELS, b"snapshot:0", b"\x80 a pickled snapshot"),
        (AUDIT, b"rule:new_device", audit("new_device", 2)),
        (MODELS, b"status", b"{truncated"),
        (MODELS, b"status", status(first)),
        None,
        (MODELS, b"status", status(first, second)),  # the first promotion again
    ]


def test_follow_annotates_each_push_and_promotion_once_at_its_event_time(grafana_double, caplog):
    store = Annotations()
    api, double = grafana_double(store.routes())
    reported: list[tuple[str, bool]] = []
    with caplog.at_level(logging.WARNING, logger="duoli.grafana_cli"):
        grafana_cli.follow_changes(api, _records(), lambda c, p: reported.append((c.key, p)))

    [tree, push, blend] = double.posted()  # a push is posted once the audit topic is quiet
    assert push["text"] == "rules pushed by alice: big v4, new_device v2 (tighter)"
    assert push["time"] == AT_MS
    assert push["tags"][:4] == ["duoli", "rule-push", "big", "new_device"]
    assert tree == {
        "panelId": None,
        "time": round(DAY * 1000),
        "timeEnd": None,
        "tags": ["duoli", "model-promotion", "tree", "promotion:tree-1772323200"],
        "text": "model promoted: tree replaces logistic (2140 labels)",
    }
    assert blend["time"] == round((DAY + 86400) * 1000)
    assert reported == [(tree["tags"][3], True), (push["tags"][4], True), (blend["tags"][3], True)]
    assert {r.authorization for r in double.requests} == {"Bearer glsa_test"}
    assert ["models record skipped: not JSON" in m for m in caplog.messages] == [True]


def test_a_restarted_follower_posts_nothing_grafana_has(grafana_double):
    store = Annotations()
    api, double = grafana_double(store.routes())
    grafana_cli.follow_changes(api, _records())
    reported: list[bool] = []
    grafana_cli.follow_changes(api, _records(), lambda change, posted: reported.append(posted))

    assert len(store.saved) == 3
    assert reported == [False, False, False]
    assert len(double.posted()) == 3


def test_grafana_failing_is_retried_with_a_growing_wait(grafana_double, caplog):
    store = Annotations()
    failures = iter([(503, {"message": "unavailable"})] * 3)
    api, _ = grafana_double(
        {("GET", "/api/annotations"): lambda r: next(failures, None) or store.find(r),
         ("POST", "/api/annotations"): store.add}
    )  # fmt: skip
    waits: list[float] = []
    records = [(AUDIT, b"rule:big", audit("big", 4))]
    with caplog.at_level(logging.WARNING, logger="duoli.grafana_cli"):
        grafana_cli.follow_changes(api, records, sleep=waits.append)

    assert waits == [1.0, 2.0, 4.0]
    assert len(store.saved) == 1
    assert all("503" in message for message in caplog.messages) and len(caplog.messages) == 3


class Stop(Exception):
    pass


def test_an_unreachable_grafana_does_not_stop_the_follower(caplog):
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = grafana.connect(f"http://127.0.0.1:{port}", token="t", timeout=1.0)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 8:
            raise Stop  # the test stops it; the follower itself would go on

    try:
        with caplog.at_level(logging.WARNING), pytest.raises(Stop):
            grafana_cli.follow_changes(api, [(AUDIT, b"rule:big", audit("big", 4))], sleep=sleep)
    finally:
        grafana.close(api)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert len(caplog.messages) == 8


# -- the commands -----------------------------------------------------------------------------


@pytest.fixture
def invoke(monkeypatch) -> Iterator[Callable[..., Any]]:
    """Run ``duoli grafana ...`` in-process with the given DUOLI_* settings."""

    def run(*args: str, **env: str) -> Any:
        for name in ("DUOLI_GRAFANA_URL", "DUOLI_GRAFANA_TOKEN", "DUOLI_KAFKA_URL"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        load_settings.cache_clear()
        return CliRunner().invoke(grafana_cli.grafana, list(args))

    yield run
    load_settings.cache_clear()


def test_push_command_pushes_the_dashboards_and_prints_their_urls(invoke):
    routes: dict[tuple[str, str], Route] = {
        ("GET", "/api/folders/duoli"): FOLDER_FOUND,
        ("POST", "/api/dashboards/db"): _dashboards_route,
    }
    with serving(routes) as (url, double):
        result = invoke("push", DUOLI_GRAFANA_URL=url, DUOLI_GRAFANA_TOKEN="glsa_cli")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{url}/d/duoli-operations/duoli-operations",
        f"{url}/d/duoli-risk/duoli-risk",
    ]
    assert {r.authorization for r in double.requests} == {"Bearer glsa_cli"}
    assert [r.body["message"] for r in double.requests[1:]] == ["pushed by duoli"] * 2


@pytest.mark.parametrize("command", ["push", "follow"])
def test_the_commands_need_a_grafana_url(invoke, command):
    result = invoke(command, DUOLI_KAFKA_URL="127.0.0.1:1")

    assert isinstance(result.exception, ConfigError)
    assert "DUOLI_GRAFANA_URL" in str(result.exception)
