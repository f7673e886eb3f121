"""The worker's tables: their changelogs are what Faust makes of a changelog."""

from __future__ import annotations

from faust.serializers import codecs

from duoli.account import AccountState
from duoli.settings import Settings
from streams.app import create_app
from streams.tables import define_tables


def test_every_changelog_is_a_changelog_to_faust_not_a_stream_it_must_acknowledge() -> None:
    """An acknowledged topic that no stream reads looks stalled to Faust's monitor, which
    then logs an error per partition every few seconds after five minutes of work."""
    app = create_app(Settings(), "kafka://127.0.0.1:9092")  # never connects
    tables = define_tables(app, Settings())
    for table in (tables.accounts, tables.clocks, tables.merchants, tables.progress):
        topic = table.changelog_topic
        assert topic.get_topic_name().endswith(f"-{table.name}-changelog")
        assert topic.internal and topic.allow_empty
        assert not topic.acks  # what Faust reads to tell its own changelogs from streams


def test_account_states_recover_through_the_account_codec() -> None:
    tables = define_tables(create_app(Settings(), "kafka://127.0.0.1:9092"), Settings())
    codec = tables.accounts.changelog_topic.value_serializer
    assert codec == tables.accounts.value_serializer == "duoli_account"
    state = AccountState(account_id="a1", credit_limit=2500.0, apr=0.18, balance=120.5)
    assert codecs.loads(codec, codecs.dumps(codec, state)) == state
