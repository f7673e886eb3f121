from __future__ import annotations

import json

import pytest

from duoli.errors import InvalidEvent
from duoli.events import FraudLabel, Transaction, parse_event
from duoli.schemas import SCHEMA_DIR, render_schemas


def reason_of(raw: str | bytes, max_amount: float = 1e6) -> str:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw, max_amount)
    return caught.value.reason


def test_optional_fields_default_and_unknown_fields_are_kept(make_event):
    event = parse_event(json.dumps(make_event("transaction", loyalty_tier="gold")))
    assert isinstance(event, Transaction)
    assert (event.kind, event.currency, event.channel) == ("purchase", "CNY", None)
    assert event.model_extra == {"loyalty_tier": "gold"}


def test_time_without_zone_is_utc_and_zones_are_converted(make_event):
    naive = parse_event(json.dumps(make_event("transaction", occurred_at="2026-01-01T08:00:00")))
    shanghai = parse_event(
        json.dumps(make_event("transaction", occurred_at="2026-01-01T16:00:00+08:00"))
    )
    assert naive.at == shanghai.at


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: "{not json", "malformed_json"),
        (lambda e: "[1, 2]", "not_an_object"),
        (lambda e: json.dumps({**e, "type": "teleport"}), "unknown_event_type"),
        (lambda e: json.dumps({k: v for k, v in e.items() if k != "merchant_id"}), "missing_field"),
        (lambda e: json.dumps({k: v for k, v in e.items() if k != "type"}), "missing_field"),
        (lambda e: json.dumps({**e, "amount": "12.50"}), "invalid_field"),
        (lambda e: json.dumps({**e, "amount": -5}), "invalid_amount"),
        (lambda e: json.dumps({**e, "amount": 0}), "invalid_amount"),
        (lambda e: json.dumps({**e, "amount": 5e9}), "absurd_value"),
        (lambda e: json.dumps({**e, "occurred_at": "1850-01-01T00:00:00"}), "absurd_value"),
        (lambda e: json.dumps({**e, "occurred_at": "yesterday"}), "invalid_field"),
        (lambda e: json.dumps({**e, "kind": "teleport"}), "invalid_field"),
        (lambda e: json.dumps({**e, "event_id": ""}), "invalid_field"),
    ],
)
def test_each_class_of_bad_input_has_its_reason(make_event, mutate, reason):
    assert reason_of(mutate(make_event("transaction"))) == reason


def test_labels_need_a_real_boolean(make_event):
    assert reason_of(json.dumps(make_event("fraud_label", is_fraud="yes"))) == "invalid_field"
    label = parse_event(json.dumps(make_event("fraud_label", is_fraud=False)))
    assert isinstance(label, FraudLabel) and label.is_fraud is False


def test_committed_json_schemas_match_the_models():
    """Fails when the models and schemas/ drift apart: run `make schemas` and commit."""
    committed = {path.name: path.read_text() for path in SCHEMA_DIR.glob("*.schema.json")}
    assert committed == render_schemas()
