"""docker-compose.yml, checked without a Docker engine (there is none on this machine).

The file is validated against the Compose Specification JSON schema vendored in
tests/data/compose-spec.json (source and licence in tests/data/README.md), then checked for
what the schema cannot know: healthchecks everywhere, workers that scale, and mounts and
ports that agree with deploy/. Nothing here starts a container.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
# A Go duration, as Compose parses healthcheck times: "10s", "1m30s", "500ms".
GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path to host path of the service's short-syntax bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[target] = source
    return mounts


def test_compose_file_matches_the_compose_specification(validator, compose):
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_rejects_a_misspelt_key(validator, compose):
    # Guards the test above against a schema that accepts anything.
    redis = {"image": "redis", "healthchek": {"test": ["CMD", "true"]}}
    broken = {**compose, "services": {**compose["services"], "redis": redis}}
    assert not validator.is_valid(broken)


def test_the_stack_has_every_service(services):
    assert set(services) == {"kafka", "redis", "worker", "api", "prometheus", "grafana"}
    assert services["kafka"]["image"].startswith("apache/kafka:")


def test_every_service_has_a_healthcheck(services):
    for name, service in services.items():
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), name
        for key in ("interval", "timeout", "start_period"):
            if key in check:
                assert GO_DURATION.match(check[key]), (name, key, check[key])


def test_workers_scale_without_clashing(services):
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker  # a fixed host port would fail the second replica
    assert worker["command"] == ["duoli", "worker"]


def test_workers_are_scraped_where_prometheus_looks(services):
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    [dns] = jobs["duoli-worker"]["dns_sd_configs"]
    assert jobs["duoli-api"]["static_configs"] == [{"targets": ["api:8000"]}]
    worker = services["worker"]
    assert dns["names"] == ["worker"]
    assert str(worker["environment"]["DUOLI_METRICS_PORT"]) == str(dns["port"])
    assert str(dns["port"]) in [str(port) for port in worker["expose"]]


def test_workers_and_api_reach_kafka_and_redis_by_service_name(services):
    listeners = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for name in ("worker", "api"):
        env = services[name]["environment"]
        assert env["DUOLI_KAFKA_URL"] == "kafka:9092"
        assert "PLAINTEXT://kafka:9092" in listeners.split(",")
        assert "redis://redis:6379" in env["DUOLI_REDIS_URL"]
        assert {"kafka", "redis"} <= set(services[name]["depends_on"])


def test_api_listens_on_all_interfaces_with_tokens_from_the_environment(services):
    api = services["api"]
    assert api["command"][:2] == ["duoli", "api"]
    assert api["command"][api["command"].index("--host") + 1] == "0.0.0.0"
    assert api["ports"] == ["8000:8000"]
    assert api["environment"]["DUOLI_API_TOKENS"].startswith("${DUOLI_API_TOKENS")
    assert "/health" in " ".join(api["healthcheck"]["test"])


def test_prometheus_mounts_the_repo_config(services):
    mounts = bind_mounts(services["prometheus"])
    source = ROOT / mounts["/etc/prometheus/prometheus.yml"]
    assert source.is_file()
    assert source == ROOT / "deploy/prometheus/prometheus.yml"


def test_grafana_mounts_provisioning_and_the_dashboards_it_provisions(services):
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    dashboards = ROOT / mounts["/var/lib/grafana/dashboards"]
    assert (provisioning / "datasources").is_dir()
    assert sorted(p.name for p in dashboards.glob("*.json")) == [
        "duoli-operations.json",
        "duoli-risk.json",
    ]
    provider = yaml.safe_load((provisioning / "dashboards/dashboards.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert grafana["environment"]["GF_INSTALL_PLUGINS"] == "redis-datasource"


def test_the_duoli_image_is_built_from_the_repo(services):
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile
    for name in ("worker", "api"):
        assert services[name]["build"] == "."
