"""Region-to-region copies (pipeline/copy.py) and heal's choice of sources
(commands/heal.py) over in-memory stores: only matching bytes are ever committed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import anyio
import pytest

from streamer import digests
from streamer.commands.heal import HealRequest, heal_clients
from streamer.errors import EXIT_FAILED, EXIT_OK, IntegrityError
from streamer.housekeeping.heal_plan import multipart_etag
from streamer.layout.catalog import parse_manifest
from streamer.layout.choice import layout_for
from streamer.manifest import ArtifactRecord, PartDigests, build_manifest, encode
from streamer.model import Periodicity, Series
from streamer.pipeline.budget import ByteBudget
from streamer.pipeline.copy import CopyOptions, copy_run, part_spans
from streamer.settings.config import Config, parse_config
from streamer.store.base import ObjectStore, PartBody
from streamer.store.memory import MemoryStore
from streamer.store.retry import RetryPolicy

pytestmark = pytest.mark.anyio
NO_WAIT = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0)
MiB = 1024 * 1024
STAMP = "20261203T100000Z"
PREFIX = f"site/hourly/{STAMP}/"
KEY, MKEY = PREFIX + "webroot.tar", PREFIX + "manifest.json"
SERIES = Series("site", Periodicity.HOURLY)


class CorruptingStore(MemoryStore):
    """A region that answers every ranged GET with one byte flipped."""

    async def get_range(self, key: str, start: int, end: int,
                        if_match: str | None = None) -> bytearray:
        data = await super().get_range(key, start, end, if_match)
        data[len(data) // 2] ^= 0xFF
        return data


def _config(budget: str = "32MiB") -> Config:
    return parse_config({"S3_HOST_BASE": "http://a|http://b|http://c", "S3_ACCESS_KEY": "k",
                         "S3_SECRET_KEY": "s", "STREAMER_BUCKET": "memory",
                         "STREAMER_COMPRESSION": "none", "STREAMER_MEMORY_BUDGET": budget,
                         "STREAMER_STALL_TIMEOUT": "30"})


async def _store_run(store: MemoryStore, data: bytes, part: int, with_digests: bool = True,
                     auto: bool = False) -> bytes:
    """A committed run as a backup leaves it: multipart object, then its manifest
    (``auto``: as STREAMER_CHECKSUM=auto does, CRC32C parts and no stream SHA-256)."""
    store.bucket_exists = True
    upload = await store.create_multipart(KEY, "application/x-tar")
    chunks = [data[i:i + part] for i in range(0, len(data), part)]
    etags = [await store.upload_part(KEY, upload, n, PartBody(c)) for n, c in enumerate(chunks, 1)]
    await store.complete_multipart(KEY, upload, [{"PartNumber": n, "ETag": e}
                                                 for n, e in enumerate(etags, 1)])
    algorithm = "crc32c" if auto else "md5"
    parts = PartDigests(algorithm, tuple(len(c) for c in chunks),
                        tuple(digests.hexdigest(algorithm, [c]) for c in chunks)) if with_digests else None
    record = ArtifactRecord("webroot", KEY, len(data), "" if auto else hashlib.sha256(data).hexdigest(),
                            "none", 0, part, len(chunks), len(data), parts)
    body = encode(build_manifest(build="site", periodicity="hourly", stamp=STAMP, started="s",
                                 ended="e", host="h", version="v", artifacts=[record], webroot={},
                                 database=None, warnings=[]))
    await store.put_object(MKEY, body)
    return body


def _opts(budget: ByteBudget) -> CopyOptions:
    return CopyOptions(budget, 4, 30.0, "md5", NO_WAIT)


async def test_a_copy_keeps_the_parts_the_bytes_and_the_manifest() -> None:
    source, target = MemoryStore(index=1, policy=NO_WAIT), MemoryStore(index=2, policy=NO_WAIT)
    target.bucket_exists = True
    data = os.urandom(5 * MiB + 12345)
    body = await _store_run(source, data, MiB)
    manifest = parse_manifest(body, "test")
    budget = ByteBudget(4 * MiB)
    with anyio.fail_after(30):
        copied = await copy_run(source, target, manifest, MKEY, body, _opts(budget))
    assert copied == len(data)
    assert target.objects[KEY].data == data
    assert target.objects[MKEY].data == body  # the source's manifest, byte for byte
    parts = manifest.artifacts["webroot"].parts
    assert parts is not None and target.objects[KEY].etag.strip('"') == multipart_etag(parts.digests)
    assert 0 < budget.peak <= budget.limit and budget.used == 0
    assert not target.uploads


async def test_bytes_that_do_not_match_are_never_committed() -> None:
    source = CorruptingStore(index=1, policy=NO_WAIT)
    target = MemoryStore(index=2, policy=NO_WAIT)
    target.bucket_exists = True
    for with_digests in (True, False):  # a part digest, or (older manifests) the whole stream
        body = await _store_run(source, os.urandom(3 * MiB), MiB, with_digests)
        with anyio.fail_after(30), pytest.raises(IntegrityError) as caught:
            await copy_run(source, target, parse_manifest(body, "t"), MKEY, body,
                           _opts(ByteBudget(8 * MiB)))
        assert ("part" if with_digests else "SHA-256") in str(caught.value)
        assert KEY not in target.objects and MKEY not in target.objects
        assert not target.uploads  # the upload was aborted


def test_older_manifests_are_cut_at_their_recorded_part_size() -> None:
    body = encode(build_manifest(
        build="site", periodicity="hourly", stamp=STAMP, started="s", ended="e", host="h",
        version="v", artifacts=[ArtifactRecord("webroot", KEY, 20 * MiB + 1, "a" * 64, "none", 0,
                                               8 * MiB, 3, 1)], webroot={}, database=None,
        warnings=[]))
    m = parse_manifest(body, "t")
    spans = part_spans(m.artifacts["webroot"], m.raw["artifacts"]["webroot"])
    assert [(s.number, s.offset, s.size, s.digest) for s in spans] == \
        [(1, 0, 8 * MiB, None), (2, 8 * MiB, 8 * MiB, None), (3, 16 * MiB, 4 * MiB + 1, None)]


async def test_heal_refuses_a_bad_source_and_copies_from_the_next(tmp_path: Path) -> None:
    bad = CorruptingStore(index=1, policy=NO_WAIT)
    good, empty = MemoryStore(index=2, policy=NO_WAIT), MemoryStore(index=3, policy=NO_WAIT)
    data = os.urandom(2 * MiB + 7)
    body = await _store_run(bad, data, MiB)
    await _store_run(good, data, MiB)
    empty.bucket_exists = True
    config = _config()
    clients: list[ObjectStore] = [bad, good, empty]
    with anyio.fail_after(60):
        result = await heal_clients(config, layout_for(config), clients, [SERIES], HealRequest())
    [copy] = result.copies
    assert copy.ok and copy.source == 2 and copy.copy.target == 3
    assert len(copy.failures) == 1 and "does not match" in copy.failures[0]
    assert empty.objects[KEY].data == data and empty.objects[MKEY].data == body
    assert result.exit_code == EXIT_OK and result.budget_peak <= result.budget_limit


async def test_heal_with_no_good_source_commits_nothing(tmp_path: Path) -> None:
    bad, empty = CorruptingStore(index=1, policy=NO_WAIT), MemoryStore(index=2, policy=NO_WAIT)
    await _store_run(bad, os.urandom(MiB + 3), MiB)
    empty.bucket_exists = True
    config = parse_config({"S3_HOST_BASE": "http://a|http://b", "S3_ACCESS_KEY": "k",
                           "S3_SECRET_KEY": "s", "STREAMER_BUCKET": "memory"})
    with anyio.fail_after(60):
        result = await heal_clients(config, layout_for(config), [bad, empty], [SERIES],
                                    HealRequest())
    assert [c.ok for c in result.copies] == [False]
    assert result.exit_code == EXIT_FAILED
    assert not empty.objects and not empty.uploads


async def test_heal_verify_replaces_a_copy_whose_bytes_rotted() -> None:
    stores = [MemoryStore(index=i, policy=NO_WAIT) for i in (1, 2)]
    data = os.urandom(MiB + 5)
    for s in stores:
        await _store_run(s, data, MiB)
    rotten = bytearray(data)
    rotten[10] ^= 1
    stores[1].objects[KEY].data = bytes(rotten)  # same size, same ETag: only a read tells
    config = parse_config({"S3_HOST_BASE": "http://a|http://b", "S3_ACCESS_KEY": "k",
                           "S3_SECRET_KEY": "s", "STREAMER_BUCKET": "memory"})
    clients: list[ObjectStore] = list(stores)
    with anyio.fail_after(60):
        quick = await heal_clients(config, layout_for(config), clients, [SERIES], HealRequest())
        assert quick.copies == [] and quick.exit_code == EXIT_OK  # sizes and ETags look right
        result = await heal_clients(config, layout_for(config), clients, [SERIES],
                                    HealRequest(verify=True))
    [copy] = result.copies
    assert copy.ok and copy.copy.target == 2 and "part 1 does not match" in copy.copy.reason
    assert stores[1].objects[KEY].data == data


class HeaderRecordingStore(MemoryStore):
    """A target that records the checksum header every part carried (and, as
    MemoryStore does, refuses a wrong one)."""

    headers: list[dict[str, str]]

    async def upload_part(self, key: str, upload_id: str, number: int, body: PartBody,
                          checksums: dict[str, str] | None = None) -> str:  # type: ignore[override]
        self.headers.append(body.header_for(self.part_checksum))
        return await super().upload_part(key, upload_id, number, body, checksums)


@pytest.mark.parametrize("target_checksum", ["crc32c", "md5"])
async def test_an_auto_manifest_is_copied_with_the_targets_own_checksum(target_checksum: str) -> None:
    source = MemoryStore(index=1, policy=NO_WAIT)
    target = HeaderRecordingStore(index=2, policy=NO_WAIT, part_checksum=target_checksum)
    target.headers = []
    target.bucket_exists = True
    data = os.urandom(3 * MiB + 777)
    body = await _store_run(source, data, MiB, auto=True)
    manifest = parse_manifest(body, "test")
    assert manifest.artifacts["webroot"].composite
    opts = CopyOptions(ByteBudget(8 * MiB), 4, 30.0, "auto", NO_WAIT)
    with anyio.fail_after(30):
        assert await copy_run(source, target, manifest, MKEY, body, opts) == len(data)
    assert target.objects[KEY].data == data and target.objects[MKEY].data == body
    chunks = [data[i:i + MiB] for i in range(0, len(data), MiB)]
    assert sorted(h[target_checksum] for h in target.headers) == sorted(
        digests.b64(digests.part_digests(c, [target_checksum])[target_checksum]) for c in chunks)

    bad = CorruptingStore(index=3, policy=NO_WAIT)
    body = await _store_run(bad, data, MiB, auto=True)
    fresh = HeaderRecordingStore(index=4, policy=NO_WAIT, part_checksum=target_checksum)
    fresh.headers, fresh.bucket_exists = [], True
    with anyio.fail_after(30), pytest.raises(IntegrityError, match="does not match the manifest's crc32c"):
        await copy_run(bad, fresh, parse_manifest(body, "t"), MKEY, body, opts)
    assert KEY not in fresh.objects and not fresh.uploads
