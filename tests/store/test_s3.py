"""What is particular to ``S3Store``: its boundary (failures translated, secrets
kept out), and its per-client part hooks (no process-wide patches)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import aiohttp.payload
import botocore.auth
import pytest
from s3util import RegionsEnv

from streamer.errors import StoreFailure
from streamer.settings.config import Region, Secret
from streamer.store.base import PartBody
from streamer.store.retry import RetryPolicy
from streamer.store.s3 import open_store
from streamer.store.s3_hooks import PartPayload

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024


async def test_refused_endpoint_is_a_transient_failure_naming_the_region() -> None:
    region = Region(2, "http://127.0.0.1:9", Secret("a"), Secret("very-secret-key"))
    async with open_store(region, "b-x", "md5", 5, RetryPolicy(max_attempts=2, base_delay=0.05)) as c:
        with pytest.raises(StoreFailure) as info:
            await c.ensure_bucket()
    assert info.value.transient
    assert "region 2 (127.0.0.1:9)" in str(info.value)
    assert "very-secret-key" not in str(info.value)


def _spy(events: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def spy(request: Any, **_: Any) -> None:
        seen["payload-hash"] = request.headers.get("X-Amz-Content-SHA256", b"").decode()
        seen["authorization"] = request.headers.get("Authorization", b"").decode()
        seen["body"] = request.body

    events.register_last("before-send.s3.UploadPart", spy)
    return seen


@pytest.mark.parametrize("server", ["seaweedfs", "moto"])
async def test_parts_are_signed_with_their_precomputed_sha256_and_sent_without_a_copy(
        server: str, request: pytest.FixtureRequest, bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """sha256 mode: the signed payload hash is the part's own digest (botocore
    hashes nothing), the server accepts the signature, and the body leaves as a
    PartPayload (a memoryview, no copy).  md5 mode: an unsigned payload."""
    if server == "seaweedfs":
        regions: RegionsEnv = request.getfixturevalue("regions")
        region = Region(1, regions.endpoints[0], Secret(regions.env["S3_ACCESS_KEY"]),
                        Secret(regions.env["S3_SECRET_KEY"]))
    else:
        region = Region(1, request.getfixturevalue("moto_endpoint"), Secret("k"), Secret("s"))
    hashed: list[int] = []
    real = botocore.auth.sha256
    monkeypatch.setattr(botocore.auth, "sha256",
                        lambda data=b"": hashed.append(len(data)) or real(data))
    data = os.urandom(MiB)
    for mode, expected_hash in (("sha256", hashlib.sha256(data).hexdigest()),
                                ("md5", "UNSIGNED-PAYLOAD")):
        async with open_store(region, bucket, mode, 30) as store:  # type: ignore[arg-type]
            seen = _spy(store.client.meta.events)
            await store.ensure_bucket()
            upload = await store.create_multipart("signed", "application/octet-stream")
            body = PartBody(data)
            body.sha256_hex = hashlib.sha256(data).hexdigest()
            etag = await store.upload_part("signed", upload, 1, body)
            assert etag.strip('"') == hashlib.md5(data).hexdigest()
            assert seen["payload-hash"] == expected_hash
            assert seen["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
            assert isinstance(seen["body"], PartPayload)
            await store.abort_multipart("signed", upload)
    assert not [n for n in hashed if n >= MiB], "botocore hashed a part body"
    # Nothing process-wide: botocore's signer and aiohttp's payload registry are untouched.
    assert botocore.auth.AUTH_TYPE_MAPS["s3v4"] is botocore.auth.S3SigV4Auth
    assert type(aiohttp.payload.get_payload(PartBody(b"x"))) is not PartPayload
