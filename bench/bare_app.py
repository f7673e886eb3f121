"""The framework's ceiling: a Faust agent that only parses events (``python -m bench.bare_app``).

Same app factory, same settings, same fetch-wait cap and same batching as the real
``score_accounts`` agent, but the body only validates each message with
``duoli.events.parse_event``: no state, no rules, no outputs. Configured like a worker,
from ``DUOLI_*`` variables (``DUOLI_KAFKA_URL`` and ``DUOLI_TOPIC_PREFIX`` at least); the
input topic ``{prefix}.events`` must exist.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from duoli.errors import InvalidEvent
from duoli.events import parse_event
from duoli.settings import Settings, load_settings
from streams._faust_compat import cap_fetch_wait
from streams.agents import BATCH_LINGER, BATCH_SIZE, EventBatches
from streams.app import create_app
from streams.topics import TopicNames

__all__ = ["build_bare_app", "main"]


def build_bare_app(settings: Settings, broker_url: str) -> faust.App:
    cap_fetch_wait(settings.fetch_max_wait_ms)
    app = create_app(settings, broker_url)
    topic = app.topic(TopicNames.of(settings).events, key_serializer="raw", value_serializer="raw")
    max_amount = settings.max_amount

    @app.agent(topic, name="parse_only")
    async def parse_only(stream: Any) -> None:
        source = EventBatches(stream, BATCH_SIZE, BATCH_LINGER)
        async for batch in source:
            invalid = 0
            for event in batch:
                try:
                    parse_event(event.value, max_amount)
                except InvalidEvent:  # the real agent dead-letters it; here it only counts
                    invalid += 1
            await source.ack(batch)

    return app


def main() -> None:
    settings = load_settings()
    if not settings.kafka_url:
        raise SystemExit("bench.bare_app needs DUOLI_KAFKA_URL")
    app = build_bare_app(settings, settings.kafka_url)
    level = logging.getLevelName(settings.log_level.upper())
    faust.Worker(app, loglevel=level, quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
