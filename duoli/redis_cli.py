"""``duoli redis``: the serving store, rebuilt from the topics when it was lost."""

from __future__ import annotations

import asyncio

import click

from duoli.errors import ConfigError
from duoli.settings import load_settings

__all__ = ["redis"]


@click.group()
def redis() -> None:
    """Redis, the serving store: Kafka is the record, and Redis can be rebuilt from it."""


@redis.command()
def rebuild() -> None:
    """Write back alerts, account and merchant hashes and clocks from the topics.

    Run it with the workers stopped, for example after Redis came back empty: a worker
    writing meanwhile could see its newer hash replaced by the rebuilt one.
    """
    from streams.rebuild import rebuild_redis, summary

    settings = load_settings()
    if not settings.kafka_url:
        raise ConfigError("set DUOLI_KAFKA_URL to the broker the workers use")
    rebuilt = asyncio.run(rebuild_redis(settings, settings.kafka_url))
    for line in summary(rebuilt):
        click.echo(line)
