"""The API service against the real Redis: auth, filters, the alert life cycle, accounts, rules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from duoli.api import ApiSettings, create_app, load_api_settings
from duoli.errors import ConfigError
from tests.integration.api_seed import (
    ALERTS,
    TOKENS,
    ApiClient,
    cleanup,
    new_prefix,
    seed,
    settings_for,
)

pytestmark = pytest.mark.integration

Call = Callable[..., Any]


@pytest.fixture
def prefix() -> Iterator[str]:
    name = new_prefix()
    seed(name)
    yield name
    cleanup(name)


@pytest.fixture
def client(prefix: str, tmp_path: Path) -> Iterator[ApiClient]:
    app = create_app(settings_for(prefix, tmp_path), ApiSettings(tokens=TOKENS))
    with ApiClient(app) as running:
        yield running


def as_role(client: ApiClient, token: str) -> Call:
    """``call("get", "/alerts")``: a request with ``token``, returning the response."""

    def call(method: str, url: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        return client.request(method, url, headers=headers, **kwargs)

    return call


@pytest.fixture
def viewer(client: ApiClient) -> Call:
    return as_role(client, "view-tok")


@pytest.fixture
def analyst(client: ApiClient) -> Call:
    return as_role(client, "ana-tok")


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [alert["alert_id"] for alert in response.json()["alerts"]]


# -- auth -------------------------------------------------------------------------------------


def test_health_needs_no_token_and_sees_redis(client: ApiClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "redis": True}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-Token": "adm"}])
def test_missing_or_unknown_token_is_401(client: ApiClient, headers: dict[str, str]) -> None:
    response = client.get("/alerts", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_viewer_reads_but_may_not_act(viewer: Call) -> None:
    assert viewer("get", "/alerts").status_code == 200
    response = viewer("post", "/alerts/a-fraud-1/acknowledge")
    assert response.status_code == 403
    assert "needs analyst" in response.json()["detail"]


def test_admin_may_act(client: ApiClient) -> None:
    admin = as_role(client, "adm-tok")
    assert admin("post", "/alerts/a-fraud-1/acknowledge").status_code == 200


def test_tokens_file_is_read(prefix: str, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text('{"file-tok": {"user": "bob", "role": "analyst"}}', encoding="utf-8")
    settings = ApiSettings(tokens_file=tokens)
    with ApiClient(create_app(settings_for(prefix, tmp_path), settings)) as client:
        response = as_role(client, "file-tok")("post", "/alerts/a-fraud-1/acknowledge")
    assert response.json()["transitions"][0]["user"] == "bob"


def test_tokens_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DUOLI_API_TOKENS", '{"t1": "viewer", "t2": {"user": "al", "role": "admin"}}'
    )
    identities = ApiSettings().identities()
    assert (identities["t1"].user, identities["t1"].role.name) == ("viewer", "viewer")
    assert (identities["t2"].user, identities["t2"].role.name) == ("al", "admin")


# -- listing and filters ----------------------------------------------------------------------


def test_alerts_newest_first(viewer: Call) -> None:
    response = viewer("get", "/alerts")
    assert ids(response) == [alert["alert_id"] for alert in reversed(ALERTS)]
    body = response.json()
    assert body["count"] == 4 and body["truncated"] is False
    assert body["alerts"][0]["workflow"]["status"] == "open"
    assert body["alerts"][0]["reasons"] == ["big_cash: reason of a-fraud-3"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"kind": "delinquency"}, ["a-delinq-1"]),
        ({"severity": "high"}, ["a-fraud-3", "a-fraud-1"]),
        ({"account_id": "acc-1"}, ["a-delinq-1", "a-fraud-1"]),
        ({"kind": "fraud", "account_id": "acc-2", "severity": "critical"}, ["a-fraud-2"]),
        ({"account_id": "nobody"}, []),
    ],
)
def test_filters(viewer: Call, query: dict[str, str], expected: list[str]) -> None:
    assert ids(viewer("get", "/alerts", params=query)) == expected


def test_status_filter_follows_the_life_cycle(viewer: Call, analyst: Call) -> None:
    analyst("post", "/alerts/a-fraud-1/acknowledge")
    analyst("post", "/alerts/a-fraud-2/resolve", json={"resolution": "false_positive"})
    assert ids(viewer("get", "/alerts", params={"status": "acknowledged"})) == ["a-fraud-1"]
    assert ids(viewer("get", "/alerts", params={"status": "resolved"})) == ["a-fraud-2"]
    assert ids(viewer("get", "/alerts", params={"status": "open"})) == ["a-fraud-3", "a-delinq-1"]


def test_limit_truncates(viewer: Call) -> None:
    response = viewer("get", "/alerts", params={"limit": 2})
    assert ids(response) == ["a-fraud-3", "a-fraud-2"]
    assert response.json()["truncated"] is True


def test_invalid_filter_is_422(viewer: Call) -> None:
    assert viewer("get", "/alerts", params={"kind": "weather"}).status_code == 422
    assert viewer("get", "/alerts", params={"limit": 0}).status_code == 422


def test_one_alert_and_unknown_alert(viewer: Call) -> None:
    response = viewer("get", "/alerts/a-fraud-2")
    assert response.status_code == 200
    assert response.json()["severity"] == "critical"
    assert response.json()["transitions"] == []
    missing = viewer("get", "/alerts/nope")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no alert 'nope'"}


# -- life cycle -------------------------------------------------------------------------------


def test_full_life_cycle_is_recorded(analyst: Call, viewer: Call) -> None:
    assert analyst("post", "/alerts/a-fraud-1/acknowledge").status_code == 200
    assigned = analyst("post", "/alerts/a-fraud-1/assign", json={"assignee": "bob"})
    assert assigned.json()["workflow"]["assignee"] == "bob"
    analyst("post", "/alerts/a-fraud-1/comment", json={"comment": "called the customer"})
    body = {"resolution": "fraud_confirmed", "comment": "card stolen"}
    resolved = analyst("post", "/alerts/a-fraud-1/resolve", json=body)
    assert resolved.status_code == 200
    detail = viewer("get", "/alerts/a-fraud-1").json()
    workflow = detail["workflow"]
    assert workflow["status"] == "resolved"
    assert workflow["resolution"] == "fraud_confirmed"
    assert (workflow["assignee"], workflow["updated_by"]) == ("bob", "alice")
    steps = [
        (t["action"], t["from_status"], t["to_status"], t["user"], t["role"])
        for t in detail["transitions"]
    ]
    assert steps == [
        ("acknowledge", "open", "acknowledged", "alice", "analyst"),
        ("assign", "acknowledged", "acknowledged", "alice", "analyst"),
        ("comment", "acknowledged", "acknowledged", "alice", "analyst"),
        ("resolve", "acknowledged", "resolved", "alice", "analyst"),
    ]
    assert detail["transitions"][1]["assignee"] == "bob"
    assert detail["transitions"][2]["comment"] == "called the customer"
    assert detail["transitions"][3]["comment"] == "card stolen"
    assert all(t["at"].endswith("Z") for t in detail["transitions"])


@pytest.mark.parametrize(
    ("first", "then", "json", "status"),
    [
        ("resolve", "resolve", {"resolution": "other"}, "resolved"),
        ("resolve", "acknowledge", None, "resolved"),
        ("resolve", "assign", {"assignee": "bob"}, "resolved"),
        ("acknowledge", "acknowledge", None, "acknowledged"),
    ],
)
def test_invalid_transition_is_409_and_not_recorded(
    analyst: Call, first: str, then: str, json: dict[str, str] | None, status: str
) -> None:
    first_body = {"resolution": "other"} if first == "resolve" else None
    assert analyst("post", f"/alerts/a-fraud-3/{first}", json=first_body).status_code == 200
    response = analyst("post", f"/alerts/a-fraud-3/{then}", json=json)
    assert response.status_code == 409
    assert (
        response.json()["detail"] == f"cannot {then} an alert that is {status} (alert 'a-fraud-3')"
    )
    detail = analyst("get", "/alerts/a-fraud-3").json()
    assert [t["action"] for t in detail["transitions"]] == [first]


def test_comment_on_a_resolved_alert_is_allowed(analyst: Call) -> None:
    analyst("post", "/alerts/a-fraud-3/resolve", json={"resolution": "other"})
    response = analyst("post", "/alerts/a-fraud-3/comment", json={"comment": "reopened? no"})
    assert response.status_code == 200
    assert response.json()["workflow"]["status"] == "resolved"


def test_step_on_unknown_alert_is_404_and_writes_nothing(analyst: Call, prefix: str) -> None:
    response = analyst("post", "/alerts/ghost/acknowledge")
    assert response.status_code == 404
    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        assert list(client.scan_iter(f"{prefix}:alert_*:ghost")) == []
    finally:
        client.close()


def test_bad_bodies_are_422(analyst: Call) -> None:
    assert analyst("post", "/alerts/a-fraud-1/resolve", json={}).status_code == 422
    bad = {"resolution": "shrug"}
    assert analyst("post", "/alerts/a-fraud-1/resolve", json=bad).status_code == 422
    assert analyst("post", "/alerts/a-fraud-1/comment", json={"comment": ""}).status_code == 422


# -- accounts and rules -----------------------------------------------------------------------


def test_account_view(viewer: Call) -> None:
    response = viewer("get", "/accounts/acc-1")
    assert response.status_code == 200
    body = response.json()
    assert body["state"]["status"] == "overdue"
    assert body["state"]["credit_limit"] == 10000.0
    assert body["state"]["days_past_due"] == 1
    assert [a["alert_id"] for a in body["recent_alerts"]] == ["a-delinq-1", "a-fraud-1"]
    assert viewer("get", "/accounts/acc-unknown").status_code == 404


def test_rules_with_statistics(viewer: Call) -> None:
    response = viewer("get", "/rules")
    assert response.status_code == 200
    body = response.json()
    assert len(body["ruleset_version"]) == 12
    rules = {rule["rule_id"]: rule for rule in body["rules"]}
    assert list(rules) == ["big_cash", "night_owl", "retired_rule"]
    big = rules["big_cash"]
    assert (big["mode"], big["version"], big["source"]) == ("active", 2, "file")
    stats = big["stats"]
    assert (stats["hits"], stats["matured_hits"], stats["confirmed_frauds"]) == (5, 4, 3)
    assert stats["precision"] == pytest.approx(0.75)
    assert stats["last_hit_at"] == "2026-03-02T09:00:00Z"
    owl = rules["night_owl"]["stats"]
    assert (owl["shadow_hits"], owl["matured_hits"], owl["precision"]) == (2, 0, None)
    assert rules["retired_rule"]["source"] == "stats_only"
    assert rules["retired_rule"]["mode"] is None


def test_one_rule(viewer: Call) -> None:
    assert viewer("get", "/rules/night_owl").json()["mode"] == "shadow"
    assert viewer("get", "/rules/nope").status_code == 404


def test_redis_down_is_503(tmp_path: Path) -> None:
    settings = settings_for("api-down", tmp_path).model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0"}
    )
    with ApiClient(create_app(settings, ApiSettings(tokens=TOKENS))) as client:
        assert client.get("/health").json() == {"status": "degraded", "redis": False}
        response = as_role(client, "view-tok")("get", "/alerts")
    assert response.status_code == 503
    assert "cannot read the alerts stream" in response.json()["detail"]


@pytest.mark.parametrize(
    "tokens", ['{"leaky-secret": "superuser"}', '{"leaky-secret": {"role": "viewer"}}', "{not json"]
)
def test_bad_tokens_setting_is_a_config_error_that_hides_tokens(
    monkeypatch: pytest.MonkeyPatch, tokens: str
) -> None:
    monkeypatch.setenv("DUOLI_API_TOKENS", tokens)
    with pytest.raises(ConfigError, match="DUOLI_API_TOKENS") as caught:
        load_api_settings()
    assert "leaky-secret" not in str(caught.value)


def test_metrics_count_requests_by_route_template(client: ApiClient) -> None:
    viewer = as_role(client, "view-tok")
    assert viewer("get", "/alerts/a-fraud-1").status_code == 200
    assert viewer("get", "/alerts/no-such-alert").status_code == 404
    assert client.get("/alerts").status_code == 401
    text = client.get("/metrics").text  # no token: scraped on a private network
    assert 'duoli_api_requests_total{method="GET",route="/alerts/{alert_id}",status="200"}' in text
    assert 'duoli_api_requests_total{method="GET",route="/alerts/{alert_id}",status="404"}' in text
    assert 'duoli_api_requests_total{method="GET",route="/alerts",status="401"}' in text
    assert "a-fraud-1" not in text and 'duoli_api_request_seconds_bucket{le="0.005"' in text
