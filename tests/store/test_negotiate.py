"""STREAMER_CHECKSUM=auto against real servers: what each region verifies is
probed once and cached per endpoint; a part whose bytes changed after it was
sealed is refused by every region that verifies its chosen checksum, and
where none is verified (moto) the manifest's CRC catches it on the way back.

SeaweedFS 4.48 verifies CRC32C (and rejects a wrong one with
BadDigest); moto server 5.2.5 verifies neither, nor Content-MD5 (started by
the ``moto_endpoint`` fixture, tests/conftest.py)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from s3util import RegionsEnv

from streamer.errors import IntegrityError, StoreFailure
from streamer.manifest import PartDigests
from streamer.pipeline.chunker import PRODUCER, Part
from streamer.readback.parts import check_part, plan_parts
from streamer.settings.config import Region, Secret
from streamer.store.base import PartBody
from streamer.store.negotiate import CACHE_TTL, Negotiated, negotiate, read_cached, write_cached
from streamer.store.retry import RetryPolicy
from streamer.store.s3 import S3Store, open_store

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024
QUICK = RetryPolicy(max_attempts=2, base_delay=0.1)


@pytest.fixture(params=["seaweedfs-1", "seaweedfs-2", "seaweedfs-3", "moto"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[S3Store]:
    """Each SeaweedFS region and a moto server, in a fresh bucket, under auto."""
    if request.param.startswith("seaweedfs"):
        regions: RegionsEnv = request.getfixturevalue("regions")
        region = regions.region(int(request.param[-1]))
        name = request.getfixturevalue("bucket")
    else:
        region = Region(1, request.getfixturevalue("moto_endpoint"), Secret("testing"),
                        Secret("testing-secret"))
        name = f"t-{uuid.uuid4().hex[:16]}"
    async with open_store(region, name, "auto", 30, QUICK) as s3:
        await s3.ensure_bucket()
        yield s3


async def test_each_region_gets_the_cheapest_checksum_it_verifies_and_it_is_cached(
        server: S3Store, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    moto = request.node.callspec.params["server"] == "moto"
    cache = tmp_path / "streamer" / "integrity.json"
    assert server.part_checksum == "md5"  # until negotiated: the safe default
    answer = await negotiate(server, cache)
    assert not answer.cached and answer.probed is not None
    if moto:
        assert (answer.verified, answer.choice) == (frozenset(), "md5")
    else:
        assert (answer.verified, answer.choice) == (frozenset({"crc32c"}), "crc32c")
    assert server.part_checksum == answer.choice
    # The probe leaves nothing behind: its upload is aborted, no object written.
    assert await server.list_uploads("streamer-probe/") == []
    assert await server.list_objects("streamer-probe/") == []
    # The cache: the endpoint, what it verifies, when -- no key, no bucket.
    text = cache.read_text()
    assert json.loads(text)[server.endpoint]["verified"] == sorted(answer.verified)
    for secret in (server.region.access_key, server.region.secret_key):
        assert str(secret) not in text
    assert server.bucket not in text
    # The second run reads it: no probe (a region that refuses every request still answers).
    server.part_checksum = ""
    again = await negotiate(server, cache)
    assert again.cached and again.choice == answer.choice == server.part_checksum


def test_cache_entries_expire_and_future_stamps_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "integrity.json"
    now = datetime(2026, 12, 3, tzinfo=UTC)

    def store(probed: datetime) -> None:
        path.write_text(json.dumps({"http://x": {"verified": ["crc32c"],
                                                 "probed": probed.isoformat()}}))

    store(now - CACHE_TTL + timedelta(minutes=1))
    cached = read_cached(path, "http://x", now)
    assert cached is not None and cached.choice == "crc32c"
    assert read_cached(path, "http://y", now) is None
    store(now - CACHE_TTL - timedelta(minutes=1))
    assert read_cached(path, "http://x", now) is None
    store(now + timedelta(hours=1))
    assert read_cached(path, "http://x", now) is None
    path.write_text("not json")
    assert read_cached(path, "http://x", now) is None
    assert read_cached(tmp_path / "missing.json", "http://x", now) is None
    assert Negotiated("http://x", frozenset({"crc32c"}), now).choice == "crc32c"
    assert Negotiated("http://x", frozenset(), None).choice == "md5"


async def test_a_flipped_byte_is_refused_with_the_chosen_checksum_or_caught_on_the_way_back(
        server: S3Store, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The part is sealed (its digests computed once, as the producer does),
    then one byte changes before it reaches the server."""
    moto = request.node.callspec.params["server"] == "moto"
    await negotiate(server, tmp_path / "integrity.json")
    data = os.urandom(5 * MiB + 321)
    part = Part(1, PartBody(data), [server.index], lambda *_: None)
    part.seal("auto", {server.part_checksum})
    body = part.body_for(PRODUCER)
    assert part.digest[0] == "crc32c"
    body[4321] ^= 0x01
    key = f"flip/{uuid.uuid4().hex}"
    upload_id = await server.create_multipart(key, "application/octet-stream")
    try:
        if not moto:
            with pytest.raises(StoreFailure) as refused:
                await server.upload_part(key, upload_id, 1, body)
            assert refused.value.status == 400 and not refused.value.transient
            assert "BadDigest" in str(refused.value) or "XAmzContentChecksumMismatch" in str(
                refused.value), refused.value
            body[4321] ^= 0x01  # the retry resends the sealed bytes: accepted
            await server.upload_part(key, upload_id, 1, body)
            return
        # moto verifies nothing: the flipped part is stored ...
        etag = await server.upload_part(key, upload_id, 1, body)
        await server.complete_multipart(key, upload_id, [{"PartNumber": 1, "ETag": etag}])
        upload_id = ""
        stored = await server.get_range(key, 0, len(data) - 1)
        # ... and the manifest's CRC32C part digest refuses it on the way back.
        parts = PartDigests("crc32c", (len(data),), (part.digest[1],))
        with pytest.raises(IntegrityError, match="part 1 at byte 0"):
            check_part(plan_parts(parts, 8 * MiB)[0], "crc32c", [stored], server.label, key)
    finally:
        if upload_id:
            await server.abort_multipart(key, upload_id)


def test_answers_written_at_once_are_all_kept(tmp_path: Path) -> None:
    """The regions' probes end together: no answer is lost to another's write."""
    path = tmp_path / "integrity.json"
    now = datetime.now(UTC)
    answers = [Negotiated(f"http://127.0.0.1:{9000 + i}", frozenset({"crc32c"}), now) for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda a: write_cached(path, a), answers))
    assert all(read_cached(path, a.endpoint, now) is not None for a in answers)
    assert sorted(os.listdir(tmp_path)) == ["integrity.json"]
