"""The order in which a batch's parts are stored."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest

from streams.agents import _after


def test_a_step_runs_only_after_the_steps_it_depends_on() -> None:
    async def scenario() -> list[str]:
        done: list[str] = []

        async def step(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            done.append(name)

        outputs = asyncio.ensure_future(step("outputs", 0.03))
        state_before = asyncio.ensure_future(step("state before", 0.01))
        await _after([outputs, state_before, None], partial(step, "state", 0.0))
        return done

    assert asyncio.run(scenario()) == ["state before", "outputs", "state"]


def test_a_failed_step_fails_what_depends_on_it_without_running_it() -> None:
    async def scenario() -> list[str]:
        ran: list[str] = []

        async def fail() -> None:
            raise RuntimeError("the broker refused the outputs")

        async def state() -> None:
            ran.append("state")

        outputs = asyncio.ensure_future(fail())
        with pytest.raises(RuntimeError, match="refused"):
            await _after([outputs], state)
        return ran

    assert asyncio.run(scenario()) == []
