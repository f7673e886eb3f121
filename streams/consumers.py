"""Duoli's own aiokafka consumers, beside Faust's: control, models, trainer and ledger."""

from __future__ import annotations

from typing import Any

import aiokafka

__all__ = ["BACKGROUND_FETCH_WAIT_MS", "background_consumer"]

BACKGROUND_FETCH_WAIT_MS = 200  # what an idle worker pays for it: see ``cap_fetch_wait``


def background_consumer(url: str, **options: Any) -> aiokafka.AIOKafkaConsumer:
    """A consumer outside any group that commits nothing: it reads what it assigns itself."""
    return aiokafka.AIOKafkaConsumer(
        bootstrap_servers=url,
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=BACKGROUND_FETCH_WAIT_MS,
        **options,
    )
