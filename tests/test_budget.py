"""Unit tests for the memory budget (no I/O)."""

from __future__ import annotations

import anyio
import pytest

from streamer.budget import ByteBudget

pytestmark = pytest.mark.anyio


async def test_acquire_waits_for_release_and_tracks_peak() -> None:
    budget = ByteBudget(100)
    await budget.acquire(60)
    got = anyio.Event()

    async def second() -> None:
        await budget.acquire(60)
        got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.sleep(0.05)
        assert not got.is_set() and budget.used == 60  # backpressure
        budget.release(60)
        await got.wait()
    assert budget.used == 60 and budget.peak == 60


async def test_over_release_and_oversize_are_errors() -> None:
    budget = ByteBudget(10)
    with pytest.raises(ValueError):
        await budget.acquire(11)
    with pytest.raises(ValueError):
        budget.release(1)
