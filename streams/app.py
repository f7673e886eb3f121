"""The Faust app, built from settings: no module-level state, no hard-coded broker."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from mode import Service

from connectors.redis_store import RedisStore
from duoli.engine import AccountEngine
from duoli.metrics import MetricsServer, WorkerMetrics, serve_metrics
from duoli.settings import Settings
from models.learners import LearningConfig
from models.trainer import TrainerConfig
from rules import load_rules
from rules.control import Controls
from streams._faust_compat import cap_fetch_wait, guard_commit_head, ignore_offset_jumps
from streams.agents import register_agents
from streams.control import ControlFollower
from streams.elected import WRITER_NICENESS, ElectedProcess
from streams.ledger import LedgerWriter
from streams.models import ModelFollower
from streams.processing import AccountProcessor, MerchantCache, MerchantProcessor
from streams.progress import Progress
from streams.tables import define_tables
from streams.timers import register_gap_watch, register_lag_watch, register_timers
from streams.topics import TopicNames, define_topics
from streams.training import TrainerWriter

__all__ = ["build_app", "create_app"]

log = logging.getLogger(__name__)


class RedisLifecycle(Service):
    """Connects the Redis store with the app, and closes it on stop.

    Faust starts user services only after table recovery, while agents may run earlier,
    so the agents also await ``ready()``: every caller waits for the one connection.
    """

    def __init__(self, store: RedisStore, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store
        self._connecting: asyncio.Future[None] | None = None

    async def ready(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self.store.start())
        await self._connecting

    async def on_start(self) -> None:
        await self.ready()

    async def on_stop(self) -> None:
        await self.store.close()


class MetricsLifecycle(Service):
    """Serves the worker's metrics at ``/metrics`` while the app runs."""

    def __init__(self, metrics: WorkerMetrics, port: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        self.port = port
        self.server: MetricsServer | None = None

    async def on_start(self) -> None:
        try:
            self.server = serve_metrics(self.metrics.registry, self.port)
        except OSError as error:  # a port taken must not stop the scoring
            log.error("no /metrics: cannot listen on port %d: %s", self.port, error)

    async def on_stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def create_app(settings: Settings, broker_url: str) -> faust.App:
    timeout = settings.rebalance_timeout_seconds
    return faust.App(
        settings.topic_prefix,
        broker=f"kafka://{broker_url}",
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_seconds,
        broker_rebalance_timeout=timeout,
        broker_session_timeout=max(timeout, 6.0),
        broker_heartbeat_interval=1.0,
        # Each batch flushes its records, and aiokafka's flush waits a batch's linger out
        # rather than sending at once: a linger only delayed every flush (three a batch).
        producer_linger_ms=0,
        producer_max_batch_size=1048576,
        stream_wait_empty=False,
    )


def trainer_niceness(settings: Settings) -> int:
    """How much lower than the worker's the trainer's priority is. A worker that waits for
    each day's model version (a replay) has the trainer on its path: lowered, it starved
    behind other work on a busy machine, and the replay's day ran out of time.

    >>> [trainer_niceness(Settings(model_wait_seconds=wait)) for wait in (0, 120)]
    [10, 0]
    """
    return 0 if settings.model_wait_seconds > 0 else WRITER_NICENESS


def build_app(settings: Settings, broker_url: str) -> faust.App:
    """The whole worker: topics, tables, processors, agents, timers, the Redis store and the
    control follower; the agents wait until Redis answers and the control topic is read."""
    cap_fetch_wait(settings.fetch_max_wait_ms)
    guard_commit_head()
    ignore_offset_jumps()
    app = create_app(settings, broker_url)
    topics = define_topics(app, settings)
    tables = define_tables(app, settings)
    store = RedisStore(settings.redis_url, settings.redis_prefix, settings.alerts_maxlen)
    file_rules = load_rules(settings.rules_path)
    models = ModelFollower(broker_url, topics.names.models)
    engine = AccountEngine(settings, Controls(file_rules), models)
    merchant_cache = MerchantCache(store, settings.topic_prefix)
    accounts = AccountProcessor(settings, engine, tables, topics, merchant_cache)
    merchants = MerchantProcessor(tables, topics, settings.topic_prefix)
    progress = Progress(tables.progress)
    redis = RedisLifecycle(store)
    control = ControlFollower(broker_url, topics.names.control, engine, file_rules.rules)
    trainer = ElectedProcess(
        TrainerWriter(broker_url, topics.names, trainer_config(settings)),
        trainer_niceness(settings),
    )
    ledger = ElectedProcess(LedgerWriter(broker_url, topics.names, settings.partitions))
    metrics = WorkerMetrics()

    async def ready() -> None:
        await asyncio.gather(redis.ready(), control.ready(), models.ready())

    register_agents(app, topics, accounts, merchants, progress, store, ready, metrics)
    register_gap_watch(app, topics, progress)
    if settings.live_clock:
        register_timers(app, topics, accounts)
    app.service(redis)  # type: ignore[arg-type]  # Faust accepts an instance too
    app.service(control)  # type: ignore[arg-type]
    app.service(models)  # type: ignore[arg-type]
    app.service(trainer)  # type: ignore[arg-type]
    app.service(ledger)  # type: ignore[arg-type]
    if settings.metrics_port is not None:
        register_lag_watch(app, topics, metrics)
        app.service(MetricsLifecycle(metrics, settings.metrics_port))  # type: ignore[arg-type]
    _reset_on_rebalance(app, accounts, progress)
    _elect_single_writers(app, topics.names, trainer, ledger)
    return app


def trainer_config(settings: Settings) -> TrainerConfig:
    learning = LearningConfig(
        promotion_margin=settings.promotion_margin,
        promotion_min_labels=settings.promotion_min_labels,
    )
    return TrainerConfig(
        maturity_days=settings.label_maturity_days,
        pending_limit=settings.pending_limit,
        negative_sample_rate=settings.negative_sample_rate,
        learning=learning,
    )


def _elect_single_writers(app: faust.App, names: TopicNames, *writers: ElectedProcess) -> None:
    """The worker holding events partition 0 runs the trainer and the ledger writer; the
    others only score."""

    async def elect(*args: Any, **kwargs: Any) -> None:
        assigned = args[1]  # (sender, the new assignment)
        owner = any(tp.topic == names.events and tp.partition == 0 for tp in assigned)
        for writer in writers:
            writer.set_owner(owner)

    app.on_partitions_assigned.connect(elect)


def _reset_on_rebalance(app: faust.App, accounts: AccountProcessor, progress: Progress) -> None:
    """Partitions may move: forget per-partition memory, rebuilt lazily from the tables."""

    async def forget(*args: Any, **kwargs: Any) -> None:
        accounts.watch.reset()
        accounts.clocks.clear()
        accounts.wall_anchor.clear()
        progress.reset()

    app.on_partitions_revoked.connect(forget)
    app.on_partitions_assigned.connect(forget)
