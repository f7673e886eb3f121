"""Running a worker: against the configured cluster, or an embedded broker started for it."""

from __future__ import annotations

import logging
import signal
from contextlib import ExitStack

import faust

from connectors.broker import EmbeddedBroker
from connectors.kafka_admin import ensure_topics
from duoli.runtime import calm_garbage_collector
from duoli.settings import Settings
from streams.app import build_app
from streams.topics import topic_specs

__all__ = ["prepare_topics", "run_worker"]


def prepare_topics(settings: Settings, broker_url: str) -> None:
    ensure_topics(broker_url, topic_specs(settings))


def run_worker(settings: Settings, broker_url: str | None = None) -> None:
    """Block running one stream worker until SIGINT/SIGTERM. With no broker URL and no
    ``DUOLI_KAFKA_URL``, an embedded broker is started first and stopped on exit."""
    # A shell starts a background job with SIGINT ignored, and a child inherits that: until
    # Faust installs its handlers, the worker would then ignore SIGINT sent while it starts.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with ExitStack() as stack:
        url = broker_url or settings.kafka_url or stack.enter_context(EmbeddedBroker()).url
        prepare_topics(settings, url)
        app = build_app(settings, url)
        # Faust logs its producer's backpressure as a warning on every busy batch.
        logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
        worker = faust.Worker(
            app, loglevel=logging.getLevelName(settings.log_level.upper()), quiet=True
        )
        # The terminal spinner sets the root logger to DEBUG, and the Kafka clients then
        # build a log record per message: about 9% of a worker's CPU.
        worker.spinner = None
        calm_garbage_collector()
        worker.execute_from_commandline()
