"""The public input contract: one pydantic model per event type, and the parser that guards it.

>>> event = parse_event(b'{"type": "transaction", "event_id": "e1", "account_id": "a1",'
...     b' "occurred_at": "2026-01-05T10:00:00", "amount": 12.5, "merchant_id": "m1"}')
>>> event.kind, event.currency, event.occurred_at.tzinfo is not None
('purchase', 'CNY', True)
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from duoli.errors import InvalidEvent

__all__ = [
    "CreditLineOpened",
    "Event",
    "FraudLabel",
    "InstallmentDue",
    "Repayment",
    "Transaction",
    "event_time",
    "parse_event",
]

Identifier = Annotated[str, Field(min_length=1, max_length=128)]
Money = Annotated[float, Field(gt=0, allow_inf_nan=False)]
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _as_utc(value: datetime) -> datetime:
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    if not EARLIEST <= value < LATEST:
        raise ValueError("time outside 2000..2100")
    return value.astimezone(UTC)


def event_time(text: str) -> float:
    """Epoch seconds of an ISO-8601 time, read as the contract says (no zone means UTC)."""
    return _as_utc(datetime.fromisoformat(text)).timestamp()


class _Event(BaseModel):
    """Fields every event has; fields Duoli does not know are kept (``extra='allow'``)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    event_id: Identifier
    account_id: Identifier
    occurred_at: datetime

    _utc = field_validator("occurred_at")(_as_utc)

    @cached_property
    def at(self) -> float:
        """Event time in epoch seconds (read several times per event, so kept)."""
        return self.occurred_at.timestamp()


class CreditLineOpened(_Event):
    type: Literal["credit_line_opened"]
    credit_limit: Money
    apr: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]


class Transaction(_Event):
    type: Literal["transaction"]
    amount: Money
    merchant_id: Identifier
    kind: Literal["purchase", "cash_withdrawal", "loan_drawdown"] = "purchase"
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "CNY"
    merchant_category: str | None = None
    channel: str | None = None
    device_id: str | None = None
    city: str | None = None


class InstallmentDue(_Event):
    type: Literal["installment_due"]
    installment_id: Identifier
    due_at: datetime
    amount_due: Money

    _due_utc = field_validator("due_at")(_as_utc)


class Repayment(_Event):
    type: Literal["repayment"]
    amount: Money
    installment_id: Identifier | None = None


class FraudLabel(_Event):
    type: Literal["fraud_label"]
    transaction_id: Identifier
    is_fraud: bool
    source: Literal["chargeback", "customer_report", "analyst"] | None = None


Event = Annotated[
    CreditLineOpened | Transaction | InstallmentDue | Repayment | FraudLabel,
    Field(discriminator="type"),
]
EVENT_TYPES: tuple[type[_Event], ...] = (
    CreditLineOpened,
    Transaction,
    InstallmentDue,
    Repayment,
    FraudLabel,
)
_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

_REASONS = {
    "json_invalid": "malformed_json",
    "json_type": "malformed_json",
    "model_type": "malformed_json",
    "model_attributes_type": "malformed_json",
    "dict_type": "not_an_object",
    "union_tag_not_found": "missing_field",
    "union_tag_invalid": "unknown_event_type",
    "missing": "missing_field",
    "greater_than": "invalid_amount",
    "finite_number": "invalid_amount",
    "less_than_equal": "absurd_value",
    "value_error": "absurd_value",
}


def parse_event(raw: bytes | str, max_amount: float = float("inf")) -> Event:
    """Validate one raw event, or raise InvalidEvent with a stable reason code."""
    try:
        event = _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"][1:] or first["loc"])
        reason = _REASONS.get(first["type"], "invalid_field")
        raise InvalidEvent(reason, f"{where}: {first['msg']}" if where else first["msg"]) from exc
    amount = getattr(event, "amount", None) or getattr(event, "amount_due", None)
    if amount is not None and amount > max_amount:
        raise InvalidEvent("absurd_value", f"amount {amount} above the maximum {max_amount}")
    return event


def json_schemas() -> dict[str, dict[str, object]]:
    """The JSON Schema of every event type, keyed by type name."""
    return {
        model.model_fields["type"].annotation.__args__[0]: model.model_json_schema()  # type: ignore[union-attr]
        for model in EVENT_TYPES
    }
