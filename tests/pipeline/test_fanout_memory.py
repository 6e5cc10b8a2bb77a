"""Fan-out and quorum over in-memory stores: fast, no servers (store/memory.py)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import anyio
import pytest

from streamer.pipeline.budget import ByteBudget
from streamer.pipeline.fanout import ArtifactRun, Fanout, RegionRun
from streamer.pipeline.sizing import MIN_PART
from streamer.pipeline.upload_state import Decision
from streamer.process import ProcessSource
from streamer.settings.config import Config, parse_config
from streamer.store.memory import MemoryStore
from streamer.store.retry import RetryPolicy

pytestmark = pytest.mark.anyio
NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)


def _config(quorum: int) -> Config:
    return parse_config({"S3_HOST_BASE": "http://a|http://b|http://c", "S3_ACCESS_KEY": "k",
                         "S3_SECRET_KEY": "s", "STREAMER_BUCKET": "memory",
                         "STREAMER_COMPRESSION": "none", "STREAMER_QUORUM": str(quorum),
                         "STREAMER_MEMORY_BUDGET": str(5 * MIN_PART),
                         "DATABASE_INSTALLATION_TYPE": "None"})


async def _fan_out(tmp_path: Path, stores: list[MemoryStore], quorum: int
                   ) -> tuple[ArtifactRun, list[RegionRun], bytes, list[bool], str]:
    data = os.urandom(2 * MIN_PART + 777)  # three parts
    source = tmp_path / "stream"
    source.write_bytes(data)
    for store in stores:
        await store.ensure_bucket()
    runs = [RegionRun(s) for s in stores]
    below: list[bool] = []
    config = _config(quorum)
    fanout = Fanout(config, runs, ByteBudget(config.memory_budget), MIN_PART,
                    lambda: below.append(True))
    key = f"fan/{uuid.uuid4().hex}"
    art = ArtifactRun("webroot", key, ProcessSource("webroot", ("cat", str(source))))
    with anyio.fail_after(60):
        await fanout.stream(art)
    return art, runs, data, below, key


async def test_every_region_gets_every_part(tmp_path: Path) -> None:
    stores = [MemoryStore(index=i, policy=NO_WAIT) for i in (1, 2, 3)]
    art, _runs, data, below, key = await _fan_out(tmp_path, stores, 3)
    assert art.exit_code == 0 and art.parts == 3 and not below
    for store in stores:
        state = art.states[store.index]
        assert state.decision() is Decision.READY
        await store.complete_multipart(key, state.upload_id or "", state.completion_parts())
        assert store.objects[key].data == data
        assert store.calls["UploadPart"] == 3


async def test_a_region_that_refuses_parts_is_dropped_and_the_quorum_holds(tmp_path: Path) -> None:
    stores = [MemoryStore(index=i, policy=NO_WAIT) for i in (1, 2, 3)]
    stores[1].fail("UploadPart", nth=2, transient=False, status=403)
    art, runs, data, below, key = await _fan_out(tmp_path, stores, 2)
    assert art.exit_code == 0 and not below
    assert not runs[1].alive and runs[1].failure
    for store in (stores[0], stores[2]):
        state = art.states[store.index]
        assert state.decision() is Decision.READY
        await store.complete_multipart(key, state.upload_id or "", state.completion_parts())
        assert store.objects[key].data == data
    assert stores[1].uploads == {}  # the dropped region's upload was aborted


@pytest.mark.parametrize("checksum", ["md5", "sha256", "crc32"])
async def test_each_parts_digest_is_recorded_for_the_manifest(tmp_path: Path,
                                                              checksum: str) -> None:
    import hashlib

    from streamer.manifest import parse_part_digests
    from streamer.pipeline.fanout import recorded_parts

    stores = [MemoryStore(index=i, policy=NO_WAIT) for i in (1, 2, 3)]
    config = _config(3)
    object.__setattr__(config, "checksum", checksum)
    data = os.urandom(2 * MIN_PART + 777)
    (tmp_path / "stream").write_bytes(data)
    fanout = Fanout(config, [RegionRun(s) for s in stores], ByteBudget(config.memory_budget),
                    MIN_PART, lambda: None)
    art = ArtifactRun("webroot", "k", ProcessSource("webroot", ("cat", str(tmp_path / "stream"))))
    with anyio.fail_after(60):
        await fanout.stream(art)
    parts = recorded_parts(art)
    assert parts is not None and parts.algorithm == ("sha256" if checksum == "sha256" else "md5")
    assert parts.sizes == (MIN_PART, MIN_PART, 777)
    for offset, size, digest in parts.spans():
        assert hashlib.new(parts.algorithm, data[offset:offset + size]).hexdigest() == digest
    # the manifest form parses back, and is checked against the stored size
    assert parse_part_digests(parts.to_json(), len(data)) == parts
    with pytest.raises(ValueError):
        parse_part_digests(parts.to_json(), len(data) + 1)
    bad = parts.to_json() | {"digests": ["zz" * 16] * 3}
    with pytest.raises(ValueError):
        parse_part_digests(bad, len(data))
