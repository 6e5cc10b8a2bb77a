"""Unit tests for the memory budget (no I/O)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from streamer.errors import ConfigError
from streamer.pipeline.budget import ByteBudget, available_memory, check_budget_fits
from streamer.pipeline.buffers import BufferPool
from streamer.pipeline.chunker import PRODUCER, Part
from streamer.store.base import PartBody

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
        await anyio.wait_all_tasks_blocked()  # it ran until it had to wait
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


async def test_pool_reuses_a_free_buffer_and_counts_it_in_the_budget() -> None:
    budget = ByteBudget(100)
    pool = BufferPool(budget)
    a = await pool.take(40)
    assert budget.used == 40 and pool.allocated == 1
    pool.give_back(a, 40)  # nothing else holds it: pooled, still counted
    assert budget.used == 40
    b = await pool.take(40)
    assert b is a and pool.reused == 1 and budget.used == 40
    del a, b
    assert budget.used == 0  # the buffer died: its finalizer returned the budget


async def test_a_part_still_referenced_is_not_reused() -> None:
    budget = ByteBudget(100)
    pool = BufferPool(budget)
    returned: list[PartBody | None] = []
    body = await pool.take(40)
    part = Part(1, body, {1}, lambda p, b: returned.append(b))
    view = memoryview(body)  # e.g. a request still sending it
    del body
    part.release(PRODUCER)
    part.release(1)
    assert returned == [None]  # not handed back for reuse
    assert budget.used == 40  # still alive through the view
    view.release()
    del view
    assert budget.used == 0  # freed for real: the finalizer returned it
    body = await pool.take(40)
    part = Part(2, body, {1}, lambda p, b: returned.append(b))
    del body
    part.release(PRODUCER)
    part.release(1)
    assert isinstance(returned[-1], PartBody)  # unshared: offered for reuse


async def test_pool_waits_for_a_buffer_or_budget_and_drops_other_sizes() -> None:
    budget = ByteBudget(100)
    pool = BufferPool(budget)
    held = [await pool.take(40), await pool.take(40)]
    got: list[PartBody] = []

    async def third() -> None:
        got.append(await pool.take(40))

    async with anyio.create_task_group() as tg:
        tg.start_soon(third)
        await anyio.wait_all_tasks_blocked()  # it ran until it had to wait
        assert not got  # 120 > 100: backpressure
        pool.give_back(held.pop(), 40)
    assert len(got) == 1 and budget.used == 80
    pool.give_back(got.pop(), 40)
    big = await pool.take(60)  # a pooled 40 is dropped to make room
    assert len(big) == 60 and budget.used == 100
    del big, held
    pool.drain()
    assert budget.used == 0


MEMINFO = "MemTotal:       24683640 kB\nMemFree:        20011460 kB\nMemAvailable:   22500000 kB\n"


def test_available_memory_reads_meminfo() -> None:
    assert available_memory(MEMINFO) == 22500000 * 1024
    assert available_memory("MemTotal: 1 kB\n") is None


def test_a_budget_beyond_the_available_memory_is_refused(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(MEMINFO)
    check_budget_fits(256 * 2**20, meminfo)  # fits
    with pytest.raises(ConfigError, match=r"is 102400 MiB but this machine has only 21973 MiB"):
        check_budget_fits(100 * 2**30, meminfo)
    check_budget_fits(100 * 2**30, tmp_path / "absent")  # nothing to check against: no error
