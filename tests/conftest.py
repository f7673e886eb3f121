"""Factory fixtures shared by the unit and integration suites."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from duoli.events import Event, parse_event
from duoli.settings import Settings

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

_DEFAULTS: dict[str, dict[str, Any]] = {
    "credit_line_opened": {"credit_limit": 10_000, "apr": 0.18},
    "transaction": {"amount": 100.0, "merchant_id": "m-1", "device_id": "d-1", "city": "Shenzhen"},
    "installment_due": {"installment_id": "i-1", "amount_due": 500.0},
    "repayment": {"amount": 500.0, "installment_id": "i-1"},
    "fraud_label": {"transaction_id": "t-1", "is_fraud": True, "source": "chargeback"},
}

EventFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def make_event() -> EventFactory:
    """``make_event("transaction", minutes=5, amount=30)``: a valid event dict, overridable.

    ``minutes``/``hours``/``days`` offset ``occurred_at`` from a fixed start; ids are unique.
    """
    counter = itertools.count(1)

    def build(
        event_type: str, /, *, minutes: float = 0, hours: float = 0, days: float = 0, **fields: Any
    ) -> dict[str, Any]:
        at = START + timedelta(minutes=minutes, hours=hours, days=days)
        event = {
            "type": event_type,
            "event_id": f"{event_type}-{next(counter)}",
            "account_id": "acc-1",
            "occurred_at": at.isoformat(),
            **_DEFAULTS[event_type],
        }
        if event_type == "installment_due":
            event["due_at"] = (at + timedelta(days=30)).isoformat()
        event.update(fields)
        return event

    return build


@pytest.fixture
def parsed(make_event: EventFactory) -> Callable[..., Event]:
    """Like ``make_event`` but returns the validated model."""

    def build(event_type: str, /, **fields: Any) -> Event:
        return parse_event(json.dumps(make_event(event_type, **fields)))

    return build


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        return Settings(**overrides)

    return build
