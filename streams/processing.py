"""What a worker does with each message, between the agents (I/O) and the engine (pure).

Messages are handled one by one, synchronously, inside a ``Batch``: state changes are
staged, and records and Redis writes to send are collected. At the end of the batch the
agent writes each touched table key once, sends the records straight to the producer and,
once they are stored, writes Redis.
Faust's per-message send path (``send_soon`` and its buffer) cost about 1 ms per event
here; this keeps the hot path to plain Python and one producer call per record.
"""

from __future__ import annotations

import heapq
import json
import logging
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from connectors.redis_store import RedisWrites
from duoli.account import AccountState
from duoli.engine import AccountEngine, Outcome, day_of
from duoli.errors import InvalidEvent
from duoli.events import Event, Transaction, parse_event
from duoli.merchant import (
    EMPTY_BUCKET,
    add_bucket,
    add_exactly,
    as_bucket,
    decode_buckets,
    encode_buckets,
    merchant_features,
)
from duoli.metrics import Tally
from duoli.rule_stats import CLOCKS_KEY, clock_fields
from duoli.rule_stats import record as record_rule_activity
from duoli.scoring import iso
from duoli.settings import Settings
from models.snapshot import version_day
from streams.tables import Tables
from streams.topics import Topics
from streams.wire import json_bytes

__all__ = [
    "AccountProcessor",
    "Batch",
    "DelinquencyWatch",
    "MerchantCache",
    "MerchantProcessor",
    "count_events",
    "count_outcome",
    "dead_letter",
    "training_records",
]

log = logging.getLogger(__name__)


TRAINING_ITEMS_PER_RECORD = 250  # a scored transaction's item is about 1 KB of JSON


def training_records(partition: int, items: list[list[Any]], clock: float) -> list[dict[str, Any]]:
    """A partition's training items in records of about ``TRAINING_ITEMS_PER_RECORD``:
    a batch of 2,000 transactions in one record would pass the broker's 1 MB limit. The
    items of one event (a repayment can settle several bills) stay in one record: the
    trainer takes a later record's items at an offset it already holds for a redelivery.
    A record that more follow carries the clock of its last item (``known_at``), as if the
    batch had ended there; the last one carries ``clock``.

    >>> items = [["tx", f"t{n}", 0.0, n, 10.0 * n, []] for n in range(600)]
    >>> [(len(r["items"]), r["clock"]) for r in training_records(0, items, 7000.0)]
    [(250, 2490.0), (250, 4990.0), (100, 7000.0)]
    >>> items[250][3] = 249  # the 250th event settled two bills
    >>> [len(r["items"]) for r in training_records(0, items, 7000.0)]
    [251, 250, 99]
    >>> training_records(1, [], 50.0)
    [{'p': 1, 'clock': 50.0, 'items': []}]
    """
    chunks: list[list[list[Any]]] = [[]]
    for item in items:
        chunk = chunks[-1]
        if len(chunk) >= TRAINING_ITEMS_PER_RECORD and item[3] != chunk[-1][3]:
            chunks.append(chunk := [])
        chunk.append(item)
    clocks = [chunk[-1][4] for chunk in chunks[:-1]] + [clock]
    return [
        {"p": partition, "clock": at, "items": chunk}
        for chunk, at in zip(chunks, clocks, strict=True)
    ]


def merchant_hash(topic_prefix: str, merchant_id: str) -> str:
    """Where a merchant's day buckets live in Redis: under its topics' prefix, since
    workers read them back to score. A replay, or another replay beside it, has topics of
    its own and must never read buckets another set of topics wrote (with one shared key,
    two replays side by side gave different scores)."""
    return f"merchant:{topic_prefix}:{merchant_id}"


def merchant_partition(merchant_id: str, partitions: int) -> int:
    """Where a merchant's facts go: any stable hash will do, as long as it never changes."""
    return zlib.crc32(merchant_id.encode()) % partitions


def redelivered(state: AccountState, event: Event, partition: int, offset: int) -> bool:
    """The broker delivering again an event this account already applied, after a crash
    or a re-fetch: skipped in silence. The same id at a new offset is a real duplicate."""
    return (
        state.partition == partition
        and offset <= state.last_offset
        and state.has_seen(event.event_id)
    )


def dead_letter(raw: bytes, error: Exception, source: str) -> dict[str, Any]:
    """The one failure policy: a bad message becomes a dead letter with its reason; the
    worker goes on. Unexpected errors are dead-lettered too, and logged with a trace."""
    if isinstance(error, InvalidEvent):
        reason, detail = error.reason, error.detail
    else:
        log.exception("processing failed for a message from %s", source)
        reason, detail = "processing_error", f"{type(error).__name__}: {error}"
    return {
        "reason": reason,
        "detail": detail,
        "source": source,
        "raw": raw.decode("utf-8", errors="backslashreplace"),
    }


def count_outcome(tally: Tally, outcome: Outcome) -> None:
    """What the metrics count of one outcome: its score, alerts, decisions and rule hits."""
    if outcome.score is not None:
        tally.fraud_scores.append(outcome.score["fraud_score"])
    for alert in outcome.alerts:
        tally.alerts[alert["kind"], alert["severity"]] += 1
    for decision in outcome.decisions:
        tally.decisions[decision["action"]] += 1
    if (activity := outcome.rule_activity) is not None:
        tally.rule_hits.update((rule_id, "active") for rule_id in activity.hits)
        tally.rule_hits.update((rule_id, "shadow") for rule_id in activity.shadow)


def count_events(tally: Tally, parsed: Iterable[Event | InvalidEvent | None]) -> None:
    """Valid input events by type; bad ones are counted as dead letters."""
    tally.events.update(item.type for item in parsed if item and not isinstance(item, InvalidEvent))


@dataclass
class Batch:
    """One batch's unit of work: staged table writes, records to send and Redis writes.

    ``writes`` maps (table, key) to (value, the partition whose changelog carries it);
    ``records`` are (topic, key, value) in the order they were made; ``redis`` is written
    after them; ``tally`` counts what the batch did, for the metrics.
    """

    writes: dict[tuple[Any, Any], tuple[Any, int]] = field(default_factory=dict)
    records: list[tuple[str, bytes | None, bytes, int | None]] = field(default_factory=list)
    redis: RedisWrites = field(default_factory=RedisWrites)
    tally: Tally = field(default_factory=Tally)

    def stage(self, table: Any, key: Any, value: Any, partition: int) -> None:
        self.writes[table, key] = (value, partition)

    def staged(self, table: Any, key: Any) -> Any:
        found = self.writes.get((table, key))
        return found[0] if found else table.get(key)

    def send(
        self, topic: str, key: bytes | None, record: Any, partition: int | None = None
    ) -> None:
        """Queue a record; outputs of an account event go to the input's own partition,
        which is where the key's hash would send them (same key, same partition count)."""
        self.records.append((topic, key, json_bytes(record, sort_keys=True), partition))

    def reject(self, topic: str, letter: dict[str, Any]) -> None:
        """Send a dead letter made by :func:`dead_letter`."""
        self.tally.dead_letters[letter["reason"]] += 1
        self.send(topic, None, letter)


class MerchantCache:
    """Merchant features per (merchant, day), read from Redis once and then held.

    Features of day ``d`` only use buckets before ``d``, so once read they never change.
    """

    MAX_ENTRIES = 200_000

    def __init__(self, store: Any, topic_prefix: str) -> None:
        self.store = store
        self.topic_prefix = topic_prefix
        self.features: dict[tuple[str, int], dict[str, Any]] = {}

    async def prefetch(self, keys: Iterable[tuple[str, int]]) -> None:
        wanted = set(keys)
        missing = sorted(key for key in wanted if key not in self.features)
        if not missing:
            return
        if len(self.features) + len(missing) > self.MAX_ENTRIES:
            self.features.clear()  # bounded memory; this batch's keys are all read again
            missing = sorted(wanted)
        hashes = await self.store.read_hashes(
            [merchant_hash(self.topic_prefix, merchant) for merchant, _ in missing]
        )
        for (merchant, day), fields in zip(missing, hashes, strict=True):
            self.features[merchant, day] = merchant_features(
                decode_buckets(fields.get("buckets")), day
            )

    def get(self, merchant_id: str, day: int) -> dict[str, Any]:
        return self.features[merchant_id, day]


@dataclass
class DelinquencyWatch:
    """Per partition, a heap of (moment of the next threshold, account), rebuilt from the
    table after each rebalance. Entries may be stale; the engine re-checks on pop."""

    heaps: dict[int, list[tuple[float, str]]] = field(default_factory=dict)

    def reset(self) -> None:
        self.heaps.clear()

    def ensure(self, partition: int, accounts: Any, engine: AccountEngine) -> None:
        if partition in self.heaps:
            return
        heap = [
            (moment, account_id)
            for account_id, state in accounts.items()
            if state.partition == partition
            and (moment := engine.advance_preview(state)) is not None
        ]
        heapq.heapify(heap)
        self.heaps[partition] = heap

    def push(self, partition: int, moment: float | None, account_id: str) -> None:
        if moment is not None:
            heapq.heappush(self.heaps.setdefault(partition, []), (moment, account_id))

    def due(self, partition: int, clock: float) -> list[str]:
        heap = self.heaps.get(partition, [])
        accounts = []
        while heap and heap[0][0] <= clock:
            accounts.append(heapq.heappop(heap)[1])
        return list(dict.fromkeys(accounts))


class AccountProcessor:
    """Handles the account-keyed input: events and clock ticks."""

    def __init__(
        self, settings: Settings, engine: AccountEngine, tables: Tables, topics: Topics,
        merchants: MerchantCache,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.engine = engine
        self.tables = tables
        self.topics = topics
        self.merchants = merchants
        self.watch = DelinquencyWatch()
        self.clocks: dict[int, float] = {}
        self.wall_anchor: dict[int, tuple[float, float]] = {}  # partition -> (wall time, clock)
        self.tallies: dict[tuple[str, int], list[float]] = {}
        self.training: dict[int, list[list[Any]]] = {}  # per partition, this batch's items

    async def models_ready(self, parsed: Iterable[Event | InvalidEvent | None]) -> None:
        """Wait (at most ``model_wait_seconds``) for the model version of the latest event."""
        wait = self.settings.model_wait_seconds
        times = [item.at for item in parsed if item and not isinstance(item, InvalidEvent)]
        if wait <= 0 or not times:
            return
        if not await self.engine.models.wait_for(version_day(max(times)), wait):
            log.warning("no model version for %s after %.0f s", iso(max(times)), wait)

    def parse(self, raw: bytes) -> Event | InvalidEvent:
        try:
            return parse_event(raw, self.settings.max_amount)
        except InvalidEvent as error:
            return error

    @staticmethod
    def merchant_key(parsed: Event | InvalidEvent | None) -> tuple[str, int] | None:
        """The merchant features a transaction will need: its merchant, on its day."""
        if isinstance(parsed, Transaction):
            return parsed.merchant_id, day_of(parsed.at)
        return None

    def on_event(
        self, batch: Batch, raw: bytes, parsed: Event | InvalidEvent, partition: int, offset: int
    ) -> None:
        """One input event: validate, score, alert, update state; never raises."""
        try:
            if isinstance(parsed, InvalidEvent):
                raise parsed
            self._process(batch, parsed, partition, offset)
        except Exception as error:
            source = self.topics.names.events
            batch.reject(self.topics.names.dead_letters, dead_letter(raw, error, source))

    def on_tick(self, batch: Batch, raw: bytes, partition: int) -> None:
        """A clock tick from the live timer: time passed while the partition was quiet."""
        try:
            self.advance_clock(batch, float(json.loads(raw)["at"]), partition)
        except Exception as error:
            source = self.topics.names.clock
            batch.reject(self.topics.names.dead_letters, dead_letter(raw, error, source))

    def end_batch(self, batch: Batch) -> None:
        self._send_tallies(batch)
        self._write_clocks(batch)
        self._send_training(batch)

    def _send_training(self, batch: Batch) -> None:
        """The training items of each partition the batch moved, with its clock, which
        tells the trainer how far in event time this partition has got."""
        moved = {int(key) for (table, key) in batch.writes if table is self.tables.clocks}
        for partition in sorted(moved | set(self.training)):
            items = self.training.get(partition, [])
            for record in training_records(partition, items, self.clock(partition)):
                batch.send(self.topics.names.training, None, record, 0)
        self.training.clear()

    def _send_tallies(self, batch: Batch) -> None:
        """The batch's merchant facts, summed per merchant and day, in one record per
        merchant partition: consuming a record through Faust costs more than summing it."""
        by_partition: dict[int, list[list[Any]]] = {}
        for (merchant_id, day), bucket in sorted(self.tallies.items()):
            partition = merchant_partition(merchant_id, self.settings.partitions)
            by_partition.setdefault(partition, []).append([merchant_id, day, bucket])
        for partition, tallies in sorted(by_partition.items()):
            batch.send(self.topics.names.merchant_facts, None, {"tallies": tallies}, partition)
        self.tallies.clear()

    def _write_clocks(self, batch: Batch) -> None:
        """The partitions' clocks the batch moved: rule precision matures against them."""
        writes = batch.writes.items()
        clocks = [(key, at) for (table, key), (at, _) in writes if table is self.tables.clocks]
        if clocks:
            batch.redis.put_hash(CLOCKS_KEY, clock_fields(clocks))

    def _process(self, batch: Batch, event: Event, partition: int, offset: int) -> None:
        accounts = self.tables.accounts
        self.watch.ensure(partition, accounts, self.engine)
        state = batch.staged(accounts, event.account_id) or self.engine.new_state(event.account_id)
        if redelivered(state, event, partition, offset):
            return
        self.engine.check(state, event, self.clock(partition))
        merchant_key = self.merchant_key(event)
        merchant = self.merchants.get(*merchant_key) if merchant_key else None
        outcome = self.engine.handle(state, event, merchant, self.clock(partition))
        state.partition, state.last_offset = partition, max(offset, state.last_offset)
        known_at = max(self.clock(partition), event.at)
        items = self.training.setdefault(partition, [])
        for kind, item_id, at, extra in outcome.training:
            items.append([kind, item_id, at, offset, known_at, extra])
        batch.stage(accounts, event.account_id, state, partition)
        self._emit(batch, event.account_id, outcome, partition)
        self.watch.push(partition, outcome.next_crossing, event.account_id)
        self.wall_anchor[partition] = (time.monotonic(), max(self.clock(partition), event.at))
        self.advance_clock(batch, event.at, partition)

    def clock(self, partition: int) -> float:
        if partition not in self.clocks:
            self.clocks[partition] = self.tables.clocks[str(partition)]
        return self.clocks[partition]

    def advance_clock(self, batch: Batch, at: float, partition: int) -> None:
        """Move the partition's event-time clock forward and fire what it passed."""
        if at <= self.clock(partition):
            return
        self.clocks[partition] = at
        batch.stage(self.tables.clocks, str(partition), at, partition)
        self.watch.ensure(partition, self.tables.accounts, self.engine)
        for account_id in self.watch.due(partition, at):
            self._fire_overdue(batch, account_id, at, partition)

    def _fire_overdue(self, batch: Batch, account_id: str, clock: float, partition: int) -> None:
        state = batch.staged(self.tables.accounts, account_id)
        if state is None:
            return
        outcome = self.engine.advance(state, clock)
        if outcome.account is not None:  # thresholds passed: alerts, decisions or both
            batch.stage(self.tables.accounts, account_id, state, partition)
            self._emit(batch, account_id, outcome, partition)
        self.watch.push(partition, outcome.next_crossing, account_id)

    def _emit(self, batch: Batch, account_id: str, outcome: Outcome, partition: int) -> None:
        key = account_id.encode()
        count_outcome(batch.tally, outcome)
        if outcome.score is not None:
            batch.send(self.topics.names.scores, key, outcome.score, partition)
        for alert in outcome.alerts:
            batch.send(self.topics.names.alerts, key, alert, partition)
            batch.redis.put_alert(alert)
        for decision in outcome.decisions:
            batch.send(self.topics.names.decisions, key, decision, partition)
        for fact in outcome.merchant_facts:
            tally = self.tallies.setdefault((fact.merchant_id, fact.day), list(EMPTY_BUCKET))
            add_exactly(tally, as_bucket(fact))
        if outcome.account is not None:
            batch.redis.put_hash(f"account:{account_id}", outcome.account)
        if outcome.rule_activity is not None:
            record_rule_activity(batch.redis, outcome.rule_activity)

    def idle_ticks(self, partitions: Iterable[int]) -> list[tuple[int, float]]:
        """Ticks for partitions quiet for longer than the idle limit: the clock follows the wall."""
        now = time.monotonic()
        ticks = []
        for partition in partitions:
            wall, clock = self.wall_anchor.get(partition, (now, self.clock(partition)))
            self.wall_anchor.setdefault(partition, (wall, clock))
            if clock > 0 and now - wall >= self.settings.idle_after_seconds:
                ticks.append((partition, clock + (now - wall)))
        return ticks


class MerchantProcessor:
    """Adds the merchant tallies to day buckets, and serves the buckets from Redis."""

    def __init__(self, tables: Tables, topics: Topics, topic_prefix: str) -> None:
        self.tables = tables
        self.topics = topics
        self.topic_prefix = topic_prefix

    def on_tallies(self, batch: Batch, raw: bytes, partition: int) -> None:
        """One record of [merchant, day, bucket] tallies, all of merchants of this partition."""
        try:
            tallies = [(str(m), int(d), list(b)) for m, d, b in orjson.loads(raw)["tallies"]]
        except Exception as error:
            source = self.topics.names.merchant_facts
            batch.reject(self.topics.names.dead_letters, dead_letter(raw, error, source))
            return
        for merchant_id, day, bucket in tallies:
            buckets = decode_buckets(batch.staged(self.tables.merchants, merchant_id))
            add_bucket(buckets, day, bucket)
            batch.stage(self.tables.merchants, merchant_id, encode_buckets(buckets), partition)

    def end_batch(self, batch: Batch) -> None:
        for (table, merchant_id), (encoded, _) in batch.writes.items():
            if table is self.tables.merchants:
                key = merchant_hash(self.topic_prefix, merchant_id)
                batch.redis.put_hash(key, {"buckets": encoded})
