"""The rules the workers run: the rule files, with pushed versions when a cluster is set.

Pushed versions live on the compacted control topic, so they are read only when
``DUOLI_KAFKA_URL`` names the cluster the workers use; the embedded broker of another
process cannot be reached, and then the API shows the file rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from duoli.settings import Settings
from rules import Rule, load_rules

__all__ = ["RuleBook", "RuleSource", "rule_source"]


@dataclass(frozen=True)
class RuleBook:
    """The effective rules and where each comes from (``file`` or ``pushed``)."""

    version: str | None
    rules: tuple[tuple[Rule, str], ...]


RuleSource = Callable[[], RuleBook]


def rule_source(settings: Settings) -> RuleSource:
    """A blocking reader of the current rules; the API calls it in a thread."""

    def read() -> RuleBook:
        files = load_rules(settings.rules_path)
        if not settings.kafka_url:
            return RuleBook(files.version, tuple((rule, "file") for rule in files.rules))
        return _with_pushed(settings, settings.kafka_url, files.rules)

    return read


def _with_pushed(settings: Settings, url: str, base: tuple[Rule, ...]) -> RuleBook:
    from connectors import control_topic
    from streams.topics import TopicNames  # loads Faust: only when a cluster is set

    state = control_topic.read_control(url, TopicNames.of(settings))
    ruleset = state.ruleset(base)
    return RuleBook(
        ruleset.version,
        tuple((rule, "pushed" if rule.id in state.rules else "file") for rule in ruleset.rules),
    )
