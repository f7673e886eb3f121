"""Schemathesis against the API's own OpenAPI spec, in-process, as admin, on seeded Redis.

Every operation gets generated requests (valid and invalid); each response must not be a
server error and must match the status codes, content types and schemas the spec declares.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from duoli.api import ApiSettings, create_app
from duoli.settings import Settings
from tests.integration.api_seed import REDIS_URL, TOKENS, cleanup, new_prefix, seed

pytestmark = pytest.mark.integration

_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


# Loaded at import, as schemathesis needs; the app meets Redis only when the tests run.
_PREFIX = new_prefix()
_APP = create_app(Settings(redis_url=REDIS_URL, redis_prefix=_PREFIX), ApiSettings(tokens=TOKENS))
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@pytest.fixture(scope="module", autouse=True)
def seeded_redis() -> Iterator[None]:
    seed(_PREFIX)
    yield
    cleanup(_PREFIX)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_spec(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": "Bearer adm-tok"}, checks=_CHECKS)


# Generated ids almost never name a seeded alert, so the success paths are validated here.
_SEEDED_CASES = [
    ("/alerts/{alert_id}", "GET", {"alert_id": "a-fraud-1"}, None),
    ("/alerts/{alert_id}/acknowledge", "POST", {"alert_id": "a-fraud-1"}, None),
    ("/alerts/{alert_id}/assign", "POST", {"alert_id": "a-fraud-1"}, {"assignee": "bob"}),
    ("/alerts/{alert_id}/comment", "POST", {"alert_id": "a-fraud-1"}, {"comment": "seen"}),
    ("/alerts/{alert_id}/resolve", "POST", {"alert_id": "a-fraud-1"}, {"resolution": "other"}),
    ("/alerts/{alert_id}/resolve", "POST", {"alert_id": "a-fraud-1"}, {"resolution": "other"}),
    ("/accounts/{account_id}", "GET", {"account_id": "acc-1"}, None),
    ("/rules/{rule_id}", "GET", {"rule_id": "retired_rule"}, None),
]


def test_seeded_resources_conform_to_the_spec() -> None:
    statuses = []
    for path, method, parameters, body in _SEEDED_CASES:
        operation = schema[path][method]
        extra: dict[str, Any] = {} if body is None else {"body": body}
        case = operation.Case(path_parameters=parameters, media_type="application/json", **extra)
        response = case.call_and_validate(
            headers={"Authorization": "Bearer adm-tok"}, checks=_CHECKS
        )
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 200, 200, 409, 200, 200]
