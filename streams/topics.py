"""Every Kafka topic Duoli reads or writes, named from the topic prefix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.kafka_admin import TopicSpec
from duoli.settings import Settings

__all__ = ["TopicNames", "Topics", "define_topics", "topic_specs"]


@dataclass(frozen=True)
class TopicNames:
    events: str
    clock: str
    merchant_facts: str
    scores: str
    alerts: str
    dead_letters: str
    control: str  # compacted: the latest pushed rule, list and snooze per key
    audit: str  # every control change, with its author and the previous value
    training: str  # what workers scored and learned, for the trainer
    models: str  # compacted: the latest model snapshot and the trainer's status
    trainer_state: str  # compacted: the trainer's checkpoint
    decisions: str  # credit decisions for the limit-adjustment service, keyed by account
    ledger: str  # the hash chain of every decision and alert; never compacted

    @classmethod
    def of(cls, settings: Settings) -> TopicNames:
        prefix = settings.topic_prefix
        return cls(
            events=f"{prefix}.events",
            clock=f"{prefix}.clock",
            merchant_facts=f"{prefix}.merchant-facts",
            scores=f"{prefix}.scores",
            alerts=f"{prefix}.alerts",
            dead_letters=f"{prefix}.dead-letters",
            control=f"{prefix}.control",
            audit=f"{prefix}.audit",
            training=f"{prefix}.training",
            models=f"{prefix}.models",
            trainer_state=f"{prefix}.trainer-state",
            decisions=f"{prefix}.decisions",
            ledger=f"{prefix}.ledger",
        )


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Created up front: Faust creates only its internal topics, and a broker's auto-create
    would pick its own partition count."""
    names = TopicNames.of(settings)
    singles = [  # one partition keeps their order
        TopicSpec(names.control, 1, compacted=True),
        TopicSpec(names.audit, 1),
        TopicSpec(names.training, 1),
        TopicSpec(names.models, 1, compacted=True, large=True),
        TopicSpec(names.trainer_state, 1, compacted=True, large=True),
        TopicSpec(names.ledger, 1),
    ]
    single_names = {spec.name for spec in singles}
    data = [TopicSpec(name, settings.partitions) for name in vars(names).values()]
    return [spec for spec in data if spec.name not in single_names] + singles


@dataclass(frozen=True)
class Topics:
    names: TopicNames
    account_input: Any  # events and clock ticks, co-partitioned, one agent
    merchant_facts: Any
    scores: Any
    alerts: Any
    dead_letters: Any


def define_topics(app: Any, settings: Settings) -> Topics:
    names = TopicNames.of(settings)

    def raw(*topic_names: str) -> Any:
        return app.topic(*topic_names, key_serializer="raw", value_serializer="raw")

    return Topics(
        names=names,
        account_input=raw(names.events, names.clock),
        merchant_facts=raw(names.merchant_facts),
        scores=raw(names.scores),
        alerts=raw(names.alerts),
        dead_letters=raw(names.dead_letters),
    )
