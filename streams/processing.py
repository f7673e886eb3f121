"""What a worker does with each message, between the agents (I/O) and the engine (pure).

Everything here is synchronous: table reads and writes are local, sends are buffered
(``send_soon``) and Redis writes go to the batch sink, so one message is handled
atomically with respect to the event loop.
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from duoli.engine import AccountEngine, Outcome, day_of
from duoli.errors import InvalidEvent
from duoli.events import Event, Transaction, parse_event
from duoli.merchant import MerchantFact, add_fact, decode_buckets, encode_buckets, merchant_features
from duoli.settings import Settings
from streams.tables import Tables
from streams.topics import Topics

__all__ = [
    "AccountProcessor",
    "DelinquencyWatch",
    "MerchantCache",
    "MerchantProcessor",
    "dead_letter",
]

log = logging.getLogger(__name__)


def _json(record: Any) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


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


class MerchantCache:
    """Merchant features per (merchant, day), read from Redis once and then held.

    Features of day ``d`` only use buckets before ``d``, so once read they never change.
    """

    MAX_ENTRIES = 200_000

    def __init__(self, store: Any) -> None:
        self.store = store
        self.features: dict[tuple[str, int], dict[str, Any]] = {}

    async def prefetch(self, keys: Iterable[tuple[str, int]]) -> None:
        wanted = set(keys)
        missing = sorted(wanted - self.features.keys())
        if not missing:
            return
        if len(self.features) + len(missing) > self.MAX_ENTRIES:
            self.features.clear()  # bounded memory; this batch's keys are all read again
            missing = sorted(wanted)
        hashes = await self.store.read_hashes([f"merchant:{merchant}" for merchant, _ in missing])
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
        self, settings: Settings, engine: AccountEngine, tables: Tables, topics: Topics, sink: Any,
        merchants: MerchantCache,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.engine = engine
        self.tables = tables
        self.topics = topics
        self.sink = sink
        self.merchants = merchants
        self.watch = DelinquencyWatch()
        self.clocks: dict[int, float] = {}
        self.wall_anchor: dict[int, tuple[float, float]] = {}  # partition -> (wall time, clock)
        self.processed = 0

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

    def on_event(self, raw: bytes, parsed: Event | InvalidEvent, partition: int) -> None:
        """One input event: validate, score, alert, update state; never raises."""
        self.processed += 1
        try:
            if isinstance(parsed, InvalidEvent):
                raise parsed
            self._process(parsed, partition)
        except Exception as error:
            self._send(
                self.topics.dead_letters, None, dead_letter(raw, error, self.topics.names.events)
            )

    def on_tick(self, raw: bytes, partition: int) -> None:
        """A clock tick from the live timer: time passed while the partition was quiet."""
        try:
            self.advance_clock(partition, float(json.loads(raw)["at"]))
        except Exception as error:
            self._send(
                self.topics.dead_letters, None, dead_letter(raw, error, self.topics.names.clock)
            )

    def _process(self, event: Event, partition: int) -> None:
        accounts = self.tables.accounts
        self.watch.ensure(partition, accounts, self.engine)
        state = accounts.get(event.account_id) or self.engine.new_state(event.account_id)
        self.engine.check(state, event, self.clock(partition))
        merchant_key = self.merchant_key(event)
        merchant = self.merchants.get(*merchant_key) if merchant_key else None
        outcome = self.engine.handle(state, event, merchant)
        state.partition = partition
        accounts[event.account_id] = state
        self._emit(event.account_id, outcome)
        self.watch.push(partition, outcome.next_crossing, event.account_id)
        self.wall_anchor[partition] = (time.monotonic(), max(self.clock(partition), event.at))
        self.advance_clock(partition, event.at)

    def clock(self, partition: int) -> float:
        if partition not in self.clocks:
            self.clocks[partition] = self.tables.clocks[str(partition)]
        return self.clocks[partition]

    def advance_clock(self, partition: int, at: float) -> None:
        """Move the partition's event-time clock forward and fire what it passed."""
        previous = self.clock(partition)
        if at <= previous:
            return
        self.clocks[partition] = at
        if at - self.tables.clocks[str(partition)] >= 1.0:
            self.tables.clocks[str(partition)] = at
        self.watch.ensure(partition, self.tables.accounts, self.engine)
        for account_id in self.watch.due(partition, at):
            self._fire_overdue(account_id, partition, at)

    def _fire_overdue(self, account_id: str, partition: int, clock: float) -> None:
        state = self.tables.accounts.get(account_id)
        if state is None:
            return
        outcome = self.engine.advance(state, clock)
        if outcome.alerts:
            self.tables.accounts[account_id] = state
            self._emit(account_id, outcome)
        self.watch.push(partition, outcome.next_crossing, account_id)

    def _emit(self, account_id: str, outcome: Outcome) -> None:
        key = account_id.encode()
        if outcome.score is not None:
            self._send(self.topics.scores, key, outcome.score)
        for alert in outcome.alerts:
            self._send(self.topics.alerts, key, alert)
            self.sink.put_alert(alert)
        for fact in outcome.merchant_facts:
            self._send(self.topics.merchant_facts, fact.merchant_id.encode(), fact.to_json())
        if outcome.account is not None:
            self.sink.put_hash(f"account:{account_id}", outcome.account)

    @staticmethod
    def _send(topic: Any, key: bytes | None, record: Any) -> None:
        topic.send_soon(key=key, value=_json(record))

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
    """Handles merchant facts: adds them to day buckets and serves the buckets from Redis."""

    def __init__(self, tables: Tables, topics: Topics, sink: Any) -> None:
        self.tables = tables
        self.topics = topics
        self.sink = sink

    def on_fact(self, raw: bytes) -> str | None:
        """Count one fact; returns the merchant whose buckets changed."""
        try:
            fact = MerchantFact(**json.loads(raw))
        except Exception as error:
            AccountProcessor._send(
                self.topics.dead_letters, None, dead_letter(raw, error, "merchant-facts")
            )
            return None
        buckets = decode_buckets(self.tables.merchants.get(fact.merchant_id))
        add_fact(buckets, fact)
        self.tables.merchants[fact.merchant_id] = encode_buckets(buckets)
        return fact.merchant_id

    def publish(self, merchant_ids: Iterable[str]) -> None:
        for merchant_id in merchant_ids:
            self.sink.put_hash(
                f"merchant:{merchant_id}", {"buckets": self.tables.merchants[merchant_id]}
            )
