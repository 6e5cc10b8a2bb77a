"""A freed part whose buffer is kept alive only by a reference cycle (as a
cancelled request's traceback keeps it) is collected when the producer waits
on a spent budget, so its bytes come back (pipeline/buffers.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import anyio
import pytest

from streamer.pipeline.budget import ByteBudget
from streamer.pipeline.buffers import BufferPool
from streamer.pipeline.chunker import Part
from streamer.store.base import PartBody

pytestmark = pytest.mark.anyio
SIZE = 1024 * 1024


@pytest.fixture
def no_automatic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_a_buffer_held_by_a_cycle_is_collected_when_the_budget_is_spent(
        no_automatic_gc: None) -> None:
    pool = BufferPool(ByteBudget(SIZE))
    freed: list[PartBody | None] = []

    def on_free(part: Part, body: PartBody | None) -> None:
        freed.append(body)
        if body is None:
            pool.orphaned(part)

    body = await pool.take(SIZE)
    part = Part(1, body, {1}, on_free)
    cycle: list[object] = [body]
    cycle.append(cycle)  # like a traceback whose frame holds the body
    del body
    part.release(0)
    part.release(1)
    del cycle
    assert freed == [None] and part.lingering and pool.budget.used == SIZE
    with anyio.fail_after(10):
        again = await pool.take(SIZE)
    assert len(again) == SIZE and pool.collections >= 1 and not part.lingering
