"""The bandwidth limit's async side (store/throttle.py): meters sharing one bucket.

No server: the writes go to lists.  Durations are asserted as lower bounds
only (the limit must never be beaten), never as upper bounds."""

from __future__ import annotations

import time

import anyio
import pytest

from streamer.store.throttle import Throttle

pytestmark = pytest.mark.anyio
KiB = 1024
MiB = 1024 * KiB


async def test_meters_share_the_limit_and_never_beat_it() -> None:
    throttle = Throttle(1 * MiB)
    sent: dict[int, list[int]] = {1: [], 2: [], 3: []}
    seen_at_first_finish: dict[int, int] = {}

    async def region(flow: int, parts: int) -> None:
        async def write(piece: memoryview) -> None:
            sent[flow].append(len(piece))
        for _ in range(parts):
            await throttle.meter(flow).send(memoryview(bytearray(128 * KiB)), write)
        if not seen_at_first_finish:
            seen_at_first_finish.update({f: sum(v) for f, v in sent.items()})

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for flow in sent:
            tg.start_soon(region, flow, 4)
    elapsed = time.monotonic() - started
    total = sum(sum(v) for v in sent.values())
    assert total == 3 * 4 * 128 * KiB
    assert elapsed >= total / MiB  # 1.5 MiB at 1 MiB/s: at least 1.5 s
    assert max(max(v) for v in sent.values()) <= throttle.chunk  # sent in chunks, not whole
    # fair: when the first region was done, the others were within a chunk of it
    done = seen_at_first_finish
    assert max(done.values()) - min(done.values()) <= throttle.chunk
    assert throttle.granted == {f: 4 * 128 * KiB for f in sent}


async def test_a_cancelled_sender_does_not_block_the_others() -> None:
    throttle = Throttle(256 * KiB)
    got: list[int] = []

    async def write(piece: memoryview) -> None:
        got.append(len(piece))

    async with anyio.create_task_group() as tg:  # region 1 is dropped mid-part
        tg.start_soon(throttle.meter(1).send, memoryview(bytearray(4 * MiB)), write)
        await anyio.sleep(0.2)
        tg.cancel_scope.cancel()
    before = sum(got)
    assert before < 4 * MiB
    with anyio.fail_after(30):
        await throttle.meter(2).send(memoryview(bytearray(64 * KiB)), write)
    assert sum(got) == before + 64 * KiB
