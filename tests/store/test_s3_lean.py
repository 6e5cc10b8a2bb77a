"""The assets copy's lean whole-object requests (store/s3_lean.py) against a
real SeaweedFS region: what they write is what aiobotocore reads back, keys
of every kind sign correctly, and every failure is the StoreFailure the copy
expects (412 changed, 404 gone, 400 bad digest, 403 bad key)."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from s3util import RegionsEnv

from streamer.errors import StoreFailure
from streamer.settings.config import Region, Secret
from streamer.store.base import PartBody
from streamer.store.s3 import open_store
from streamer.store.s3_lean import lean_objects

pytestmark = pytest.mark.anyio
KEYS = ["plain.jpg", "a dir/with space+plus=eq&amp;.png", "ünïcødé/日本語.txt", "odd/%41~!'()*,;:@$.bin",
        "deep/" * 20 + "x"]


def _region(regions: RegionsEnv, secret: str | None = None) -> Region:
    return Region(1, regions.endpoints[0], Secret(regions.env["S3_ACCESS_KEY"]),
                  Secret(secret or regions.env["S3_SECRET_KEY"]))


def _body(data: bytes) -> PartBody:
    body = PartBody(data)
    body.md5_b64 = base64.b64encode(hashlib.md5(data).digest()).decode()
    return body


async def test_lean_put_and_get_round_trip_any_key(regions: RegionsEnv, bucket: str) -> None:
    async with open_store(_region(regions), bucket) as store:
        await store.ensure_bucket()
        async with lean_objects(store, 8) as lean:
            for n, key in enumerate(KEYS):
                data = os.urandom(1000 + n)
                etag = await lean.put(key, _body(data), "image/png", {"owner": "wp", "n": str(n)})
                head = regions.client(1).head_object(Bucket=bucket, Key=key)
                assert head["ETag"].strip('"') == etag == hashlib.md5(data).hexdigest()
                assert head["ContentType"] == "image/png"
                assert head["Metadata"] == {"owner": "wp", "n": str(n)}
                got, got_etag, content_type, meta = await lean.get(key, etag)
                assert (bytes(got), got_etag, content_type) == (data, etag, "image/png")
                assert {k.lower(): v for k, v in meta.items()} == {"owner": "wp", "n": str(n)}
    assert sorted(regions.keys(1, bucket)) == sorted(KEYS)


async def test_lean_failures_are_store_failures(regions: RegionsEnv, bucket: str) -> None:
    async with open_store(_region(regions), bucket) as store:
        await store.ensure_bucket()
        async with lean_objects(store, 8) as lean:
            etag = await lean.put("k", _body(b"one"), "text/plain", {})
            with pytest.raises(StoreFailure) as changed:
                await lean.get("k", "0" * 32)
            assert changed.value.status == 412 and not changed.value.transient
            with pytest.raises(StoreFailure) as gone:
                await lean.get("absent", etag)
            assert gone.value.status == 404
            damaged = _body(b"two")
            damaged.md5_b64 = _body(b"TWO").md5_b64
            with pytest.raises(StoreFailure) as digest:
                await lean.put("k", damaged, "text/plain", {})
            assert digest.value.status == 400 and not digest.value.transient
    assert regions.get(1, bucket, "k") == b"one"  # the damaged body was refused
    async with open_store(_region(regions, "not-the-secret"), bucket) as store, \
            lean_objects(store, 8) as lean:
        with pytest.raises(StoreFailure) as denied:
            await lean.put("k", _body(b"three"), "text/plain", {})
        assert denied.value.status == 403
        assert "not-the-secret" not in str(denied.value)
    assert regions.get(1, bucket, "k") == b"one"
