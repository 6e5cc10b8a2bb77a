"""Server-side copies: one CopyObject up to the limit, UploadPartCopy parts above it.

The limit is S3's 5 GiB; here it is lowered so that a 12 MiB object takes the
multipart path on a real SeaweedFS region (no test uploads 5 GiB)."""

from __future__ import annotations

import hashlib
import itertools
import os

import pytest
from s3util import RegionsEnv

from streamer.settings.config import Region, Secret
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
