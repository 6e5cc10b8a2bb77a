"""Server-side copies: one CopyObject up to the limit, UploadPartCopy parts above it.

The limit is S3's 5 GiB; here it is lowered so that a 12 MiB object takes the
multipart path on a real SeaweedFS region (no test uploads 5 GiB)."""

from __future__ import annotations

import hashlib
import itertools
import os
from datetime import UTC, datetime, timedelta

import pytest
from s3util import RegionsEnv

from streamer.settings.config import Region, Secret
from streamer.store.base import Retention
from streamer.store.s3 import open_store
from streamer.store.s3_copy import COPY_OBJECT_LIMIT, copy_ranges

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024


def test_copy_ranges_cover_the_object_in_at_most_10000_parts() -> None:
    assert copy_ranges(12 * MiB, 5 * MiB) == [(0, 5 * MiB - 1), (5 * MiB, 10 * MiB - 1),
                                              (10 * MiB, 12 * MiB - 1)]
    huge = copy_ranges(5 * 1024 ** 4)  # the largest S3 object
    assert len(huge) <= 10_000 and huge[-1][1] == 5 * 1024 ** 4 - 1
    assert all(b + 1 == c for (_, b), (c, _) in itertools.pairwise(huge))
    assert COPY_OBJECT_LIMIT == 5 * 1024 ** 3


@pytest.mark.parametrize("limit", [6 * MiB, 64 * MiB], ids=["parts", "one-copy"])
async def test_copy_above_the_limit_uses_part_copies_and_keeps_every_byte(
        regions: RegionsEnv, bucket: str, limit: int) -> None:
    region = Region(1, regions.endpoints[0], Secret(regions.env["S3_ACCESS_KEY"]),
                    Secret(regions.env["S3_SECRET_KEY"]))
    data = os.urandom(12 * MiB + 123)
    async with open_store(region, bucket, "md5", 30) as store:
        await store.ensure_bucket()
        store.copy_limit, store.copy_part_size = limit, 5 * MiB
        await store.put_object("big.tar.gz", data, "application/gzip")
        assert await store.copy_object("big.tar.gz", "big.tar.gz.BACKUP")
        assert not await store.copy_object("absent", "absent.BACKUP")
    copied = regions.get(1, bucket, "big.tar.gz.BACKUP")
    assert hashlib.sha256(copied).digest() == hashlib.sha256(data).digest()
    head = regions.client(1).head_object(Bucket=bucket, Key="big.tar.gz.BACKUP")
    # A multipart object's ETag ends with its part count.
    assert head["ETag"].strip('"').endswith("-3") == (limit < len(data))
    assert head["ContentType"] == "application/gzip"
    assert regions.uploads(1, bucket) == []


@pytest.mark.parametrize("limit", [6 * MiB, 64 * MiB], ids=["parts", "one-copy"])
async def test_a_copy_keeps_the_sources_object_lock_retention(
        regions: RegionsEnv, bucket: str, limit: int) -> None:
    """A .BACKUP is as protected as the backup it was (docs/SECURITY.md)."""
    region = Region(1, regions.endpoints[0], Secret(regions.env["S3_ACCESS_KEY"]),
                    Secret(regions.env["S3_SECRET_KEY"]))
    until = (datetime.now(UTC) + timedelta(minutes=30)).replace(microsecond=0)
    async with open_store(region, bucket, "md5", 30) as store:
        await store.ensure_bucket(object_lock=True)
        store.copy_limit, store.copy_part_size = limit, 5 * MiB
        await store.put_object("site.tar.gz", os.urandom(12 * MiB), "application/gzip",
                               retention=Retention("GOVERNANCE", until))
        await store.put_object("plain.json", b"{}")
        assert await store.copy_object("site.tar.gz", "site.tar.gz.BACKUP")
        assert await store.copy_object("plain.json", "plain.json.BACKUP")
    head = regions.client(1).head_object(Bucket=bucket, Key="site.tar.gz.BACKUP")
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockRetainUntilDate"] == until
    assert "ObjectLockMode" not in regions.client(1).head_object(Bucket=bucket, Key="plain.json.BACKUP")
    assert regions.uploads(1, bucket) == []
    c = regions.client(1)  # GOVERNANCE: the test's own keys may bypass it to clean up
    for v in c.list_object_versions(Bucket=bucket).get("Versions", []):
        c.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"], BypassGovernanceRetention=True)
