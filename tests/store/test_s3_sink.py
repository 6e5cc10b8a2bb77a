"""Conformance of the object sink (streamer.store.s3.RegionClient) against a real region."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from s3util import RegionsEnv

from streamer.errors import StoreFailure
from streamer.pipeline.chunker import PRODUCER, Part
from streamer.settings.config import Region, Secret
from streamer.store.base import PartBody
from streamer.store.retry import RetryPolicy
from streamer.store.s3 import RegionClient, open_region

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024


@pytest.fixture
async def sink(regions: RegionsEnv, bucket: str) -> AsyncIterator[RegionClient]:
    region = Region(1, regions.endpoints[0], Secret(regions.env["S3_ACCESS_KEY"]),
                    Secret(regions.env["S3_SECRET_KEY"]))
    async with open_region(region, bucket, "md5", 30, RetryPolicy(max_attempts=2, base_delay=0.1)) as c:
        await c.ensure_bucket()
        await c.ensure_bucket()  # idempotent
        yield c


def sealed(data: bytes, checksum: str = "md5") -> PartBody:
    part = Part(1, PartBody(data), (), lambda p, b: None)
    part.seal(checksum)  # type: ignore[arg-type]
    return part.body_for(PRODUCER)


async def test_multipart_round_trip(sink: RegionClient) -> None:
    key = f"k/{uuid.uuid4().hex}"
    chunks = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1234)]
    upload = await sink.create_multipart(key, "application/zstd")
    assert (key, upload) in await sink.list_multipart_uploads("k/")
    etags = [await sink.upload_part(key, upload, n, sealed(c)) for n, c in enumerate(chunks, 1)]
    assert etags[0].strip('"') == hashlib.md5(chunks[0]).hexdigest()
    await sink.complete_multipart(key, upload, [{"PartNumber": n, "ETag": e}
                                                for n, e in enumerate(etags, 1)])
    assert await sink.get_bytes(key) == b"".join(chunks)
    assert await sink.get_bytes(key, "bytes=5-9") == chunks[0][5:10]
    assert await sink.list_multipart_uploads("k/") == []


async def test_server_rejects_a_part_that_does_not_match_its_digest(sink: RegionClient) -> None:
    """The integrity check the default checksum mode relies on: a corrupted body fails."""
    key = f"k/{uuid.uuid4().hex}"
    upload = await sink.create_multipart(key, "application/zstd")
    body = sealed(os.urandom(MiB))
    body[100] ^= 0xFF  # corrupted after its digest was computed
    with pytest.raises(StoreFailure) as info:
        await sink.upload_part(key, upload, 1, body)
    assert info.value.status == 400 and "BadDigest" in str(info.value)
    await sink.abort_multipart(key, upload)
    assert await sink.list_multipart_uploads("k/") == []


async def test_conditional_put_and_delete(sink: RegionClient) -> None:
    key = f"lock/{uuid.uuid4().hex}"
    await sink.put_object(key, b"one", if_none_match=True)
    with pytest.raises(StoreFailure) as info:
        await sink.put_object(key, b"two", if_none_match=True)
    assert info.value.status == 412
    assert await sink.get_bytes(key) == b"one"
    assert (key, 3) in await sink.list_keys("lock/")
    await sink.delete_keys([key])
    assert await sink.list_keys("lock/") == []


async def test_refused_endpoint_is_a_transient_failure_naming_the_region() -> None:
    region = Region(2, "http://127.0.0.1:9", Secret("a"), Secret("very-secret-key"))
    async with open_region(region, "b-x", "md5", 5, RetryPolicy(max_attempts=2, base_delay=0.05)) as c:
        with pytest.raises(StoreFailure) as info:
            await c.ensure_bucket()
    assert info.value.transient
    assert "region 2 (127.0.0.1:9)" in str(info.value)
    assert "very-secret-key" not in str(info.value)
