"""Every worker follows the control topic and swaps what it scores with, with no restart.

The follower reads the whole compacted control topic from the start (no consumer group:
every worker needs every record), folds it into a :class:`rules.control.ControlState`,
and after each fetch that brought records replaces the engine's ``controls`` with one new
immutable object. The agents score a batch without yielding to the event loop between
events, so a swap lands between events: none is dropped or scored twice, and each score
record names the rule-set version that scored it. A record that does not apply is logged
and skipped; the running set stays as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from duoli.errors import DuoliError
from rules import Rule
from rules.control import ControlState
from streams.follower import TopicFollower

__all__ = ["ControlFollower"]

log = logging.getLogger(__name__)


class ControlFollower(TopicFollower):
    """Keeps ``engine.controls`` equal to the file rules plus the control topic."""

    def __init__(
        self, broker_url: str, topic: str, engine: Any, base_rules: Sequence[Rule], **kwargs: Any
    ) -> None:
        super().__init__(broker_url, topic, **kwargs)
        self.engine = engine
        self.base_rules = tuple(base_rules)
        self.folded = ControlState()

    def apply(self, records: Sequence[Any]) -> None:
        for record in records:
            key = record.key.decode() if record.key else ""
            try:
                self.folded.apply(key, record.value)
            except DuoliError as error:
                log.warning("control record at offset %d skipped: %s", record.offset, error)
        try:
            controls = self.folded.controls(self.base_rules)
        except DuoliError as error:
            log.warning("control change refused, the running rules stay: %s", error)
            return
        previous, self.engine.controls = self.engine.controls, controls
        if controls.ruleset.version != previous.ruleset.version:
            log.info("now scoring with rule set %s", controls.ruleset.version)
