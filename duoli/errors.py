"""The one exception tree of Duoli.

DuoliError
├── ConfigError            settings that fail validation at start
├── InvalidEvent           an input event that must be dead-lettered (has a ``reason``)
├── RuleError              a rule refused at load time (names the rule and the position)
├── BrokerError            Kafka / the embedded broker, translated at the connector boundary
└── StoreError             Redis, translated at the connector boundary
"""

from __future__ import annotations

__all__ = ["BrokerError", "ConfigError", "DuoliError", "InvalidEvent", "RuleError", "StoreError"]


class DuoliError(Exception):
    """Root of every error Duoli raises on purpose."""


class ConfigError(DuoliError):
    """A setting is missing or invalid."""


class InvalidEvent(DuoliError):
    """An input event that cannot be processed; ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RuleError(DuoliError):
    """A rule that cannot be loaded, with the rule id and the position of the fault."""

    def __init__(self, rule_id: str, message: str, line: int = 1, column: int = 0) -> None:
        super().__init__(f"rule {rule_id!r}, line {line}, column {column}: {message}")
        self.rule_id = rule_id
        self.line = line
        self.column = column


class BrokerError(DuoliError):
    """The Kafka broker (embedded or remote) failed or cannot be reached."""


class StoreError(DuoliError):
    """Redis failed or cannot be reached."""
