"""The worker's pure helpers: the overdue watch, the merchant feature cache, dead letters."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

import pytest

import rules
from duoli.account import DAY, AccountState, Installment
from duoli.engine import AccountEngine
from duoli.errors import InvalidEvent
from duoli.events import parse_event
from duoli.merchant import MerchantFact, add_fact, encode_buckets
from duoli.settings import Settings
from rules.control import Controls
from streams.processing import DelinquencyWatch, MerchantCache, dead_letter

DUE = 1775001600.0  # 2026-04-01T00:00:00Z
TODAY = 20_500


# DelinquencyWatch -------------------------------------------------------------------------


def test_due_returns_accounts_in_time_order_up_to_the_clock() -> None:
    watch = DelinquencyWatch()
    watch.push(0, 30.0, "c")
    watch.push(0, 10.0, "a")
    watch.push(0, 20.0, "b")
    watch.push(0, None, "never")
    assert watch.due(0, 25.0) == ["a", "b"]
    assert watch.due(0, 25.0) == []
    assert watch.due(0, 30.0) == ["c"]


def test_an_account_pushed_twice_is_due_once() -> None:
    watch = DelinquencyWatch()
    for moment in (10.0, 15.0, 12.0):
        watch.push(0, moment, "a")
    watch.push(0, 11.0, "b")
    assert watch.due(0, 20.0) == ["a", "b"]


def test_partitions_do_not_see_each_others_accounts() -> None:
    watch = DelinquencyWatch()
    watch.push(0, 10.0, "on-zero")
    watch.push(1, 5.0, "on-one")
    assert watch.due(2, 100.0) == []
    assert watch.due(0, 100.0) == ["on-zero"]
    assert watch.due(1, 100.0) == ["on-one"]


def overdue(account_id: str, partition: int, due_at: float = DUE) -> AccountState:
    state = AccountState.fresh(account_id, 5000.0, 0.18)
    state.partition = partition
    state.installments["i-1"] = Installment(due_at=due_at, amount_due=100.0, event_id="bill")
    return state


@pytest.fixture
def engine() -> AccountEngine:
    return AccountEngine(Settings(), Controls(rules.parse_rules("rules:\n")))


def test_ensure_rebuilds_a_partition_from_the_accounts_table(engine: AccountEngine) -> None:
    accounts = {
        "late": overdue("late", partition=0),
        "later": overdue("later", partition=0, due_at=DUE + 3 * DAY),
        "elsewhere": overdue("elsewhere", partition=1),
        "settled": AccountState(account_id="settled", credit_limit=1.0, apr=0.1, partition=0),
    }
    watch = DelinquencyWatch()
    watch.ensure(0, accounts, engine)
    assert watch.due(0, DUE + DAY) == ["late"]
    assert watch.due(0, DUE + 4 * DAY) == ["later"]
    assert watch.due(0, DUE + 400 * DAY) == []


def test_ensure_keeps_a_live_heap_until_reset(engine: AccountEngine) -> None:
    accounts = {"late": overdue("late", partition=0)}
    watch = DelinquencyWatch()
    watch.ensure(0, accounts, engine)
    assert watch.due(0, DUE + DAY) == ["late"]
    watch.ensure(0, accounts, engine)  # already built: the popped entry stays popped
    assert watch.due(0, DUE + DAY) == []
    watch.reset()  # a rebalance: rebuild from the table
    watch.ensure(0, accounts, engine)
    assert watch.due(0, DUE + DAY) == ["late"]


# MerchantCache ----------------------------------------------------------------------------


class FakeStore:
    """A fake standing in for Redis, used only to test the cache's logic; the real Redis
    path is covered by the integration tests. It records every ``read_hashes`` call."""

    def __init__(self, hashes: dict[str, dict[str, str]]) -> None:
        self.hashes = hashes
        self.calls: list[list[str]] = []

    async def read_hashes(self, suffixes: Sequence[str]) -> list[dict[str, str]]:
        self.calls.append(list(suffixes))
        return [dict(self.hashes.get(suffix, {})) for suffix in suffixes]


def stored(*facts: MerchantFact) -> dict[str, str]:
    buckets: dict[int, list[float]] = {}
    for fact in facts:
        add_fact(buckets, fact)
    return {"buckets": encode_buckets(buckets)}


@pytest.fixture
def store() -> FakeStore:
    return FakeStore(
        {
            "merchant:live:m1": stored(
                MerchantFact("m1", TODAY - 2, amount=40.0),
                MerchantFact("m1", TODAY - 1, label=True),
                MerchantFact("m1", TODAY, amount=999.0),
                MerchantFact("m1", TODAY, label=True),
            ),
            "merchant:live:m2": stored(MerchantFact("m2", TODAY - 1, amount=5.0)),
        }
    )


def test_prefetch_reads_all_missing_merchants_in_one_call(store: FakeStore) -> None:
    cache = MerchantCache(store, "live")
    asyncio.run(cache.prefetch(iter([("m1", TODAY), ("m2", TODAY), ("m1", TODAY)])))
    assert store.calls == [["merchant:live:m1", "merchant:live:m2"]]
    assert cache.get("m2", TODAY)["merchant_amount_7d"] == 5.0


def test_prefetch_reads_only_what_is_not_cached(store: FakeStore) -> None:
    cache = MerchantCache(store, "live")
    asyncio.run(cache.prefetch([("m1", TODAY)]))
    asyncio.run(cache.prefetch([("m1", TODAY), ("m2", TODAY)]))
    asyncio.run(cache.prefetch([("m2", TODAY), ("m1", TODAY)]))
    assert store.calls == [["merchant:live:m1"], ["merchant:live:m2"]]


def test_features_use_only_the_days_before_the_events_day(store: FakeStore) -> None:
    cache = MerchantCache(store, "live")
    asyncio.run(cache.prefetch([("m1", TODAY), ("m1", TODAY + 1)]))
    today = cache.get("m1", TODAY)
    assert (today["merchant_tx_count_7d"], today["merchant_amount_7d"]) == (1, 40.0)
    assert (today["merchant_labelled_30d"], today["merchant_frauds_30d"]) == (1, 1)
    tomorrow = cache.get("m1", TODAY + 1)
    assert (tomorrow["merchant_tx_count_7d"], tomorrow["merchant_frauds_30d"]) == (2, 2)


def test_features_once_read_do_not_change(store: FakeStore) -> None:
    """Day d's features depend only on closed days, so a later write must not move them."""
    cache = MerchantCache(store, "live")
    asyncio.run(cache.prefetch([("m2", TODAY)]))
    store.hashes["merchant:live:m2"] = stored(MerchantFact("m2", TODAY - 1, amount=700.0))
    asyncio.run(cache.prefetch([("m2", TODAY)]))
    assert cache.get("m2", TODAY)["merchant_amount_7d"] == 5.0


def test_an_unknown_merchant_has_empty_features(store: FakeStore) -> None:
    cache = MerchantCache(store, "live")
    asyncio.run(cache.prefetch([("new", TODAY)]))
    assert cache.get("new", TODAY) == {
        "merchant_tx_count_7d": 0,
        "merchant_amount_7d": 0.0,
        "merchant_labelled_30d": 0,
        "merchant_frauds_30d": 0,
        "merchant_fraud_share": 0.0,
        "merchant_frauds_7d": 0,
        "merchant_frauds_1d": 0,
        "merchant_tx_count_1d": 0,
        "merchant_amount_1d": 0.0,
        "merchant_tx_count_30d": 0,
        "merchant_amount_30d": 0.0,
        "merchant_excess_3d": 0.0,
        "merchant_excess_7d": 0.0,
    }


def test_buckets_of_other_topics_stay_unseen(store: FakeStore) -> None:
    """A replay's workers read only what their own topics wrote, whatever else Redis holds."""
    cache = MerchantCache(store, "replay-1")
    asyncio.run(cache.prefetch([("m1", TODAY)]))
    assert store.calls == [["merchant:replay-1:m1"]]
    assert cache.get("m1", TODAY)["merchant_amount_7d"] == 0.0


def test_a_full_cache_still_serves_every_key_of_the_batch(store: FakeStore) -> None:
    cache = MerchantCache(store, "live")
    cache.MAX_ENTRIES = 2  # the real limit is 200 000; the logic is the same
    asyncio.run(cache.prefetch([("m1", TODAY), ("m2", TODAY)]))
    asyncio.run(cache.prefetch([("m1", TODAY), ("m1", TODAY + 1)]))
    assert cache.get("m1", TODAY)["merchant_amount_7d"] == 40.0
    assert cache.get("m1", TODAY + 1)["merchant_amount_7d"] == 1039.0


# dead_letter ------------------------------------------------------------------------------


def test_an_invalid_event_keeps_its_reason_and_raw_payload() -> None:
    raw = b'{"type": "transaction", "event_id": "e1", "amount": -5}'
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw)
    letter = dead_letter(raw, info.value, "duoli-events")
    assert letter["reason"] == info.value.reason
    assert letter["detail"] == info.value.detail
    assert letter["source"] == "duoli-events"
    assert json.loads(letter["raw"]) == json.loads(raw)


def test_a_raw_payload_that_is_not_utf8_is_kept_and_does_not_raise() -> None:
    raw = b'{"merchant_id": "\xff\xfe caf\xc3\xa9"}'
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw)
    letter = dead_letter(raw, info.value, "duoli-events")
    assert letter["reason"] == "malformed_json"
    assert letter["raw"] == '{"merchant_id": "\\xff\\xfe caf\u00e9"}'
    assert json.loads(json.dumps(letter)) == letter  # fit for the dead-letter topic


def test_an_unexpected_error_is_a_processing_error_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    raw = b'{"type": "transaction"}'
    with caplog.at_level(logging.ERROR, logger="streams.processing"):
        try:
            raise KeyError("merchant")
        except KeyError as error:
            letter = dead_letter(raw, error, "duoli-events")
    assert letter["reason"] == "processing_error"
    assert letter["detail"] == "KeyError: 'merchant'"
    assert letter["raw"] == raw.decode()
    assert [record.exc_info is not None for record in caplog.records] == [True]
