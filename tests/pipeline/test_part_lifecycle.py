"""Integration: a region dropped while parts wait to be sealed (issue #10's first defect).

Each part is held by the producer and by every region live when it was
created.  Before the fix, a part waiting for the one sealing thread had no
holders yet, so dropping a region freed it: its buffer went back to the pool,
and the part was then hashed and sent as an empty placeholder (or as a later
part's bytes) to the healthy regions, which committed a truncated object.

Here the sealing thread is held shut while the producer fills every part the
budget allows; region 2 is dropped; then sealing goes on.  Regions 1 and 3
must receive exactly each part's bytes, region 2 nothing.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from s3util import RegionsEnv

from streamer.pipeline.budget import ByteBudget
from streamer.pipeline.chunker import Part
from streamer.pipeline.fanout import ArtifactRun, Fanout
from streamer.pipeline.run import preflight_regions
from streamer.pipeline.sizing import MIN_PART
from streamer.pipeline.upload_state import Decision
from streamer.process import ProcessSource
from streamer.settings.config import ChecksumMode, parse_config
from streamer.store.s3 import open_stores

pytestmark = pytest.mark.anyio


async def _until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


@pytest.mark.parametrize("checksum", ["auto", "md5", "sha256"])
async def test_region_dropped_while_parts_wait_to_be_sealed(
        regions: RegionsEnv, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        checksum: ChecksumMode) -> None:
    data = os.urandom(6 * MIN_PART + 12345)  # 7 parts; the budget holds 5 at a time
    source = tmp_path / "stream"
    source.write_bytes(data)
    config = parse_config({**regions.env, "STREAMER_BUCKET": bucket, "STREAMER_COMPRESSION": "none",
                           "STREAMER_CHECKSUM": checksum, "STREAMER_QUORUM": "2",
                           "STREAMER_MEMORY_BUDGET": str(5 * MIN_PART),
                           "DATABASE_INSTALLATION_TYPE": "None"})

    gate = threading.Event()
    sealing: list[int] = []
    real_seal = Part.seal

    def held_shut(part: Part, mode: ChecksumMode, needed: frozenset[str] = frozenset()) -> None:
        sealing.append(part.number)
        assert gate.wait(60), "the test never opened the sealing gate"
        real_seal(part, mode, needed)

    monkeypatch.setattr(Part, "seal", held_shut)
    key = f"lifecycle/{uuid.uuid4().hex}"
    below_quorum: list[bool] = []
    async with open_stores(config) as clients:
        runs = await preflight_regions(clients)
        assert all(r.alive for r in runs)
        fanout = Fanout(config, runs, ByteBudget(config.memory_budget), MIN_PART,
                        lambda: below_quorum.append(True))
        art = ArtifactRun("webroot", key, ProcessSource("webroot", ("cat", str(source))))
        async with anyio.create_task_group() as tg:
            tg.start_soon(fanout.stream, art)
            # Part 1 sits in the sealing thread, parts 2-5 wait for it, and the
            # producer waits for budget to fill part 6.
            await _until(lambda: len(fanout.held) == 5 and sealing == [1], "five parts held")
            await anyio.sleep(0.2)
            assert len(fanout.held) == 5 and sealing == [1]
            fanout.region_failed(runs[1], "dropped by the test")
            gate.set()
        assert not below_quorum
        assert art.exit_code == 0 and art.parts == 7
        assert not runs[1].alive
        for index in (1, 3):
            state = art.states[index]
            assert state.decision() is Decision.READY, (index, state.failure)
            await clients[index - 1].complete_multipart(key, state.upload_id or "",
                                                        state.completion_parts())
        # The dropped region's upload was aborted: nothing of it remains.
        await _until(lambda: not regions.uploads(2, bucket), "region 2's upload aborted", 30)
    assert regions.get(1, bucket, key) == data
    assert regions.get(3, bucket, key) == data
    assert key not in regions.keys(2, bucket)
    assert fanout.held == set()  # every part was freed once all its holders let go
