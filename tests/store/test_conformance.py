"""The ObjectStore conformance suite: every implementation, the same contract.

Run against the in-memory store, SeaweedFS (the local regions) and moto
server.  Where the servers differ, the difference is recorded here per server
(``EXPECTED_CHECKSUMS``), not hidden: the integrity probe (store/integrity.py)
measures it and the suite asserts each server's table.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from s3util import RegionsEnv

from streamer.errors import StoreFailure
from streamer.pipeline.chunker import PRODUCER, Part
from streamer.settings.config import Region, Secret
from streamer.store.base import CHECKSUM_ALGORITHMS, BucketLock, ObjectStore, PartBody, Retention
from streamer.store.integrity import Verdict, probe_checksums
from streamer.store.memory import MemoryStore
from streamer.store.retry import RetryPolicy
from streamer.store.s3 import open_store

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024
QUICK = RetryPolicy(max_attempts=2, base_delay=0.1)

VERIFIED, IGNORED = Verdict.VERIFIED.value, Verdict.IGNORED.value


def _same(verdict: str, **other: str) -> dict[str, dict[str, str]]:
    return {a: {"PutObject": other.get(a, verdict), "UploadPart": other.get(a, verdict)}
            for a in CHECKSUM_ALGORITHMS}


# What each server does with a deliberately wrong digest header, as measured
# (SeaweedFS 4.48, moto 5.2.5).  moto verifies nothing, not even Content-MD5:
# a backup's integrity against such a server rests on the manifest's SHA-256,
# checked by `streamer verify` / restore, not on the upload.
EXPECTED_CHECKSUMS: dict[str, dict[str, dict[str, str]]] = {
    "memory": _same(VERIFIED),
    "seaweedfs": _same(VERIFIED),
    "moto": _same(IGNORED),
}


def verifies_md5(request: pytest.FixtureRequest) -> bool:
    name = request.node.callspec.params["store"]
    return EXPECTED_CHECKSUMS[name]["md5"]["UploadPart"] == VERIFIED


@pytest.fixture(params=["memory", "seaweedfs", "moto"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ObjectStore]:
    name = f"t-{uuid.uuid4().hex[:16]}"
    if request.param == "memory":
        memory = MemoryStore(bucket=name)
        await memory.ensure_bucket()
        yield memory
        return
    if request.param == "seaweedfs":
        regions: RegionsEnv = request.getfixturevalue("regions")
        name = request.getfixturevalue("bucket")
        region = Region(1, regions.endpoints[0], Secret(regions.env["S3_ACCESS_KEY"]),
                        Secret(regions.env["S3_SECRET_KEY"]))
    else:
        region = Region(1, request.getfixturevalue("moto_endpoint"), Secret("testing"),
                        Secret("testing-secret"))
    async with open_store(region, name, "md5", 30, QUICK) as s3:
        await s3.ensure_bucket()
        await s3.ensure_bucket()  # idempotent
        yield s3


def sealed(data: bytes, checksum: str = "md5") -> PartBody:
    part = Part(1, PartBody(data), (), lambda p, b: None)
    part.seal(checksum)  # type: ignore[arg-type]
    return part.body_for(PRODUCER)


def md5_etag(*parts: bytes) -> str:
    if len(parts) == 1:
        return hashlib.md5(parts[0]).hexdigest()
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"


async def test_multipart_round_trip(store: ObjectStore) -> None:
    key = f"k/{uuid.uuid4().hex}"
    chunks = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1234)]
    upload = await store.create_multipart(key, "application/zstd")
    assert [(u.key, u.upload_id) for u in await store.list_uploads("k/")] == [(key, upload)]
    etags = [await store.upload_part(key, upload, n, sealed(c)) for n, c in enumerate(chunks, 1)]
    assert [e.strip('"') for e in etags] == [md5_etag(c) for c in chunks]
    etag = await store.complete_multipart(key, upload, [{"PartNumber": n, "ETag": e}
                                                         for n, e in enumerate(etags, 1)])
    assert etag.strip('"') == md5_etag(*chunks)
    whole = b"".join(chunks)
    assert await store.get_range(key, 0, len(whole) - 1) == whole
    assert await store.get_range(key, 5, 9, if_match=etag) == chunks[0][5:10]
    assert await store.head_object(key) == (len(whole), etag)
    assert await store.list_uploads("k/") == []
    [info] = await store.list_objects("k/")
    assert (info.key, info.size) == (key, len(whole))
    assert info.modified is not None and abs(info.modified - datetime.now(UTC)) < timedelta(minutes=5)


async def test_a_part_that_does_not_match_its_content_md5(
        store: ObjectStore, request: pytest.FixtureRequest) -> None:
    """The integrity check the default checksum mode relies on: a corrupted body
    fails where the server verifies Content-MD5, and is stored where it does not
    (recorded in ``EXPECTED_CHECKSUMS``)."""
    key = f"k/{uuid.uuid4().hex}"
    upload = await store.create_multipart(key, "application/zstd")
    body = sealed(os.urandom(MiB))
    body[100] ^= 0xFF  # corrupted after its digest was computed
    if verifies_md5(request):
        with pytest.raises(StoreFailure) as info:
            await store.upload_part(key, upload, 1, body)
        assert info.value.status == 400 and "BadDigest" in str(info.value)
        assert not info.value.transient
    else:
        etag = await store.upload_part(key, upload, 1, body)
        assert etag.strip('"') == hashlib.md5(body).hexdigest()  # the corrupted bytes, accepted
    await store.abort_multipart(key, upload)
    await store.abort_multipart(key, upload)  # already gone: fine
    assert await store.list_uploads("k/") == []


async def test_conditional_put_get_and_delete(store: ObjectStore) -> None:
    key = f"lock/{uuid.uuid4().hex}"
    first = await store.put_object(key, b"one", if_none_match=True)
    with pytest.raises(StoreFailure) as info:
        await store.put_object(key, b"two", if_none_match=True)
    assert info.value.status == 412
    assert await store.get_with_etag(key) == (b"one", first)
    with pytest.raises(StoreFailure) as info:
        await store.put_object(key, b"three", if_match='"0123456789abcdef0123456789abcdef"')
    assert info.value.status == 412
    second = await store.put_object(key, b"four", if_match=first)
    assert second != first and await store.get_with_etag(key) == (b"four", second)
    with pytest.raises(StoreFailure) as info:
        await store.get_range(key, 0, 1, if_match=first)
    assert info.value.status == 412
    with pytest.raises(StoreFailure) as info:
        await store.delete_object(key, if_match=first)
    assert info.value.status == 412
    await store.delete_object(key, if_match=second)
    assert await store.get_with_etag(key) is None


async def test_missing_keys(store: ObjectStore) -> None:
    key = f"none/{uuid.uuid4().hex}"
    assert await store.get_with_etag(key) is None
    assert await store.head_object(key) is None
    await store.delete_object(key)  # absent is fine
    assert await store.copy_object(key, key + ".copy") is False
    with pytest.raises(StoreFailure) as info:
        await store.get_range(key, 0, 9)
    assert info.value.status == 404 and not info.value.transient
    assert await store.list_objects("none/") == []


async def test_copy_and_delete_keys(store: ObjectStore) -> None:
    key = f"c/{uuid.uuid4().hex}"
    etag = await store.put_object(key, b"payload", "application/octet-stream")
    assert await store.copy_object(key, key + ".BACKUP") is True
    assert await store.head_object(key + ".BACKUP") == (7, etag)
    await store.delete_keys([key, key + ".BACKUP", key + ".never-there"])
    assert await store.list_objects("c/") == []


async def test_listing_follows_every_page(store: ObjectStore) -> None:
    """Over 1000 keys: the one paginator of each store is exercised."""
    keys = [f"p/{i:05d}" for i in range(1005)]
    limiter = anyio.CapacityLimiter(32)

    async def put(key: str) -> None:
        async with limiter:
            await store.put_object(key, b"x")

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(put, key)
    assert sorted(o.key for o in await store.list_objects("p/")) == keys
    await store.delete_keys(keys)  # two batches
    assert await store.list_objects("p/") == []


async def test_probe_lists_the_bucket_and_the_server_clock(store: ObjectStore) -> None:
    probe = await store.probe()
    assert store.bucket in probe.buckets
    assert probe.server_time is not None
    assert abs(probe.server_time - datetime.now(UTC)) < timedelta(minutes=5)


async def test_integrity_probe_records_what_each_server_verifies(
        store: ObjectStore, request: pytest.FixtureRequest) -> None:
    capabilities = await probe_checksums(store)
    name = request.node.callspec.params["store"]
    assert capabilities.table() == EXPECTED_CHECKSUMS[name]
    assert ("md5" in capabilities.verified("UploadPart")) == verifies_md5(request)
    assert await store.list_objects("streamer-probe/") == []
    assert await store.list_uploads("streamer-probe/") == []


@pytest.fixture(params=["memory", "seaweedfs", "moto"])
async def locked_store(request: pytest.FixtureRequest) -> AsyncIterator[ObjectStore]:
    """A bucket created with Object Lock enabled (``ensure_bucket(object_lock=True)``)."""
    if request.param == "memory":
        memory = MemoryStore(bucket="locked")
        await memory.ensure_bucket(object_lock=True)
        yield memory
        return
    if request.param == "seaweedfs":
        regions: RegionsEnv = request.getfixturevalue("regions")
        region = Region(1, regions.endpoints[0], Secret(regions.env["S3_ACCESS_KEY"]),
                        Secret(regions.env["S3_SECRET_KEY"]))
        name = request.getfixturevalue("bucket")
    else:
        region = Region(1, request.getfixturevalue("moto_endpoint"), Secret("testing"),
                        Secret("testing-secret"))
        name = f"t-{uuid.uuid4().hex[:16]}"
    async with open_store(region, name, "md5", 30, QUICK) as s3:
        await s3.ensure_bucket(object_lock=True)
        yield s3


# Whether a server keeps the retention given at CreateMultipartUpload on the
# object the upload completes, as measured: moto 5.2.5 drops it (its PutObject
# keeps it), so against moto a run's artifacts are not locked.
KEEPS_MULTIPART_RETENTION = {"memory": True, "seaweedfs": True, "moto": False}


async def test_object_lock_is_reported_and_set_on_puts_and_multipart_uploads(
        locked_store: ObjectStore, request: pytest.FixtureRequest) -> None:
    """Retention given at PutObject and at CreateMultipartUpload is what HEAD
    reports afterwards; an object put without it has none (the backup lock)."""
    store = locked_store
    keeps = KEEPS_MULTIPART_RETENTION[request.node.callspec.params["locked_store"]]
    assert (await store.bucket_lock()).enabled
    until = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    retention = Retention("GOVERNANCE", until)
    await store.put_object("r/manifest.json", b"{}", retention=retention)
    upload = await store.create_multipart("r/webroot", "application/zstd", retention)
    etag = await store.upload_part("r/webroot", upload, 1, sealed(b"bytes"))
    await store.complete_multipart("r/webroot", upload, [{"PartNumber": 1, "ETag": etag}])
    await store.put_object("r/lock.json", b"{}", if_none_match=True)
    assert await store.retention_of("r/manifest.json") == retention
    assert await store.retention_of("r/webroot") == (retention if keeps else None)
    assert await store.retention_of("r/lock.json") is None
    assert await store.retention_of("r/absent") is None


async def test_a_bucket_without_object_lock_says_so_and_refuses_retention(
        store: ObjectStore) -> None:
    assert await store.bucket_lock() == BucketLock(False)
    with pytest.raises(StoreFailure) as info:
        await store.put_object("r/x", b"{}", retention=Retention(
            "GOVERNANCE", datetime.now(UTC) + timedelta(days=1)))
    assert info.value.status == 400 and not info.value.transient
