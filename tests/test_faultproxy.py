"""The fault proxy itself (tests/faultproxy.py), in front of a real SeaweedFS
region, driven by streamer's own S3 store: passthrough, and each action doing
what it says."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator

import pytest
from faultproxy import Fault, FaultProxy, classify
from s3util import RegionsEnv

from streamer.errors import StoreFailure
from streamer.settings.config import Region, Secret
from streamer.store.base import PartBody
from streamer.store.retry import RetryPolicy
from streamer.store.s3 import S3Store, open_store

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024
ONCE = RetryPolicy(max_attempts=1)


@pytest.fixture
def proxy(regions: RegionsEnv) -> FaultProxy:
    with FaultProxy(upstream=regions.endpoints[0], seed=7) as p:
        yield p  # type: ignore[misc]


@pytest.fixture
async def store(proxy: FaultProxy, regions: RegionsEnv, bucket: str) -> AsyncIterator[S3Store]:
    region = Region(1, proxy.endpoint, Secret(regions.env["S3_ACCESS_KEY"]),
                    Secret(regions.env["S3_SECRET_KEY"]))
    async with open_store(region, bucket, "md5", 5.0, ONCE) as s:
        await s.ensure_bucket()
        yield s


def test_operations_are_recognised_from_method_path_and_query() -> None:
    assert classify("GET", "/", {}) == "ListBuckets"
    assert classify("HEAD", "/b", {}) == "HeadBucket"
    assert classify("PUT", "/b", {}) == "CreateBucket"
    assert classify("GET", "/b?list-type=2&prefix=x", {}) == "ListObjectsV2"
    assert classify("GET", "/b?uploads&prefix=x", {}) == "ListMultipartUploads"
    assert classify("POST", "/b?delete", {}) == "DeleteObjects"
    assert classify("POST", "/b/k/x.tar?uploads", {}) == "CreateMultipartUpload"
    assert classify("PUT", "/b/k?partNumber=3&uploadId=u", {}) == "UploadPart"
    assert classify("POST", "/b/k?uploadId=u", {}) == "CompleteMultipartUpload"
    assert classify("DELETE", "/b/k?uploadId=u", {}) == "AbortMultipartUpload"
    assert classify("PUT", "/b/k", {}) == "PutObject"
    assert classify("PUT", "/b/k", {"x-amz-copy-source": "b/j"}) == "CopyObject"
    assert classify("GET", "/b/k", {}) == "GetObject"
    assert classify("HEAD", "/b/k", {}) == "HeadObject"
    assert classify("DELETE", "/b/k", {}) == "DeleteObject"


async def test_passthrough_carries_every_operation_streamer_uses(proxy: FaultProxy, store: S3Store,
                                                                 regions: RegionsEnv, bucket: str) -> None:
    data = os.urandom(6 * MiB + 123)
    upload = await store.create_multipart("run/x.bin", "application/octet-stream")
    etags = [await store.upload_part("run/x.bin", upload, n, PartBody(chunk))
             for n, chunk in enumerate((data[:5 * MiB], data[5 * MiB:]), start=1)]
    assert [u.key for u in await store.list_uploads("run/")] == ["run/x.bin"]
    await store.complete_multipart("run/x.bin", upload,
                                   [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)])
    await store.put_object("run/m.json", b"{}", if_none_match=True)
    assert await store.get_range("run/x.bin", 0, len(data) - 1) == data
    assert await store.get_range("run/x.bin", 5 * MiB - 10, 5 * MiB + 9) == data[5 * MiB - 10:5 * MiB + 10]
    assert (await store.get_with_etag("run/m.json") or (b"",))[0] == b"{}"
    assert await store.head_object("run/x.bin") is not None
    assert {o.key for o in await store.list_objects("run/")} == {"run/x.bin", "run/m.json"}
    await store.delete_keys(["run/m.json"])
    assert regions.keys(1, bucket) == ["run/x.bin"]  # the region itself, not through the proxy
    for op, n in {"HeadBucket": 1, "CreateMultipartUpload": 1, "UploadPart": 2, "CompleteMultipartUpload": 1,
                  "PutObject": 1, "GetObject": 3, "HeadObject": 1, "ListObjectsV2": 1,
                  "ListMultipartUploads": 1, "DeleteObjects": 1}.items():
        assert proxy.seen[op] == n, op
    assert not proxy.fired


async def test_status_answers_an_s3_error_then_clear_lets_requests_through(proxy: FaultProxy,
                                                                          store: S3Store) -> None:
    proxy.add(Fault(op="PutObject", action="status", status=503, code="SlowDown"))
    with pytest.raises(StoreFailure) as info:
        await store.put_object("k", b"x")
    assert (info.value.status, info.value.code, info.value.transient) == (503, "SlowDown", True)
    assert await store.head_object("k") is None  # other operations pass
    proxy.clear()
    await store.put_object("k", b"x")
    assert await store.head_object("k") == (1, await _etag(store, "k"))
    assert proxy.fired["status"] == 1  # one request per call: streamer does the retrying itself


async def _etag(store: S3Store, key: str) -> str:
    got = await store.get_with_etag(key)
    assert got is not None
    return got[1]


async def test_after_counts_requests_of_its_op_since_it_was_added(proxy: FaultProxy, store: S3Store) -> None:
    proxy.add(Fault(op="*", action="status", status=403, code="AccessDenied", after=3))
    for _ in range(3):
        assert await store.head_object("nothing") is None
    with pytest.raises(StoreFailure) as info:
        await store.head_object("nothing")
    assert (info.value.status, info.value.transient) == (403, False)
    with pytest.raises(StoreFailure):
        await store.put_object("k", b"x")


async def test_probability_draws_from_the_seeded_rng(regions: RegionsEnv, bucket: str) -> None:
    patterns = []
    for _ in range(2):
        with FaultProxy(upstream=regions.endpoints[0], seed=11) as p:
            p.add(Fault(op="HeadObject", action="status", status=500, code="InternalError",
                        probability=0.3))
            region = Region(1, p.endpoint, Secret(regions.env["S3_ACCESS_KEY"]),
                            Secret(regions.env["S3_SECRET_KEY"]))
            async with open_store(region, bucket, "md5", 5.0, ONCE) as s:
                await s.ensure_bucket()
                pattern = []
                for _ in range(30):
                    try:
                        await s.head_object("nothing")
                        pattern.append(False)
                    except StoreFailure:
                        pattern.append(True)
            patterns.append(pattern)
    assert patterns[0] == patterns[1]
    assert 2 <= sum(patterns[0]) <= 20


async def test_blackhole_never_answers(proxy: FaultProxy, store: S3Store) -> None:
    proxy.add(Fault(op="PutObject", action="blackhole", after=1))
    await store.put_object("first", b"x")
    start = time.monotonic()
    with pytest.raises(StoreFailure) as info:
        await store.put_object("second", b"y")
    assert time.monotonic() - start >= 4  # the store's 5 s request timeout, not an answer
    assert info.value.transient
    assert await store.head_object("second") is None


async def test_reset_breaks_the_connection_mid_request(proxy: FaultProxy, store: S3Store) -> None:
    upload = await store.create_multipart("p", "application/octet-stream")
    proxy.add(Fault(op="UploadPart", action="reset"))
    with pytest.raises(StoreFailure) as info:
        await store.upload_part("p", upload, 1, PartBody(os.urandom(MiB)))
    assert info.value.transient
    # aiohttp resends an idempotent request once when a reused connection breaks
    assert proxy.fired["reset"] in (1, 2)
    proxy.clear()
    await store.upload_part("p", upload, 1, PartBody(os.urandom(MiB)))


async def test_times_limits_how_often_a_fault_fires(proxy: FaultProxy, store: S3Store) -> None:
    proxy.add(Fault(op="HeadObject", action="status", status=500, code="InternalError", times=2))
    outcomes = []
    for _ in range(6):
        try:
            await store.head_object("nothing")
            outcomes.append("ok")
        except StoreFailure as f:
            outcomes.append(str(f.status))
    assert outcomes == ["500", "500", "ok", "ok", "ok", "ok"]


async def test_throttle_limits_the_rate(proxy: FaultProxy, store: S3Store) -> None:
    proxy.add(Fault(op="PutObject", action="throttle", rate=1_000_000))
    start = time.monotonic()
    await store.put_object("slow", os.urandom(2 * MiB))
    assert time.monotonic() - start >= 1.5  # 2 MiB at 1 MB/s
    assert (await store.head_object("slow") or (0,))[0] == 2 * MiB


async def test_cut_stops_the_body_at_an_object_offset(proxy: FaultProxy, store: S3Store) -> None:
    data = os.urandom(MiB)
    await store.put_object("obj", data)
    proxy.add(Fault(op="GetObject", action="cut", at=600_000))
    assert await store.get_range("obj", 0, 499_999) == data[:500_000]
    with pytest.raises(StoreFailure) as info:
        await store.get_range("obj", 500_000, MiB - 1)
    assert info.value.transient
    with pytest.raises(StoreFailure):
        await store.get_range("obj", 0, MiB - 1)


async def test_flip_inverts_one_byte_at_an_object_offset(proxy: FaultProxy, store: S3Store) -> None:
    data = os.urandom(MiB)
    await store.put_object("obj", data)
    proxy.add(Fault(op="GetObject", action="flip", at=700_000))
    whole = await store.get_range("obj", 0, MiB - 1)
    tail = await store.get_range("obj", 500_000, MiB - 1)
    assert [i for i in range(MiB) if whole[i] != data[i]] == [700_000]
    assert whole[700_000] == data[700_000] ^ 0xFF
    assert tail == whole[500_000:]


def _http(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return head


def test_chunked_requests_keep_alive_on_one_connection(proxy: FaultProxy) -> None:
    """Two chunked requests and a plain one on one connection, each answered
    (unsigned, so SeaweedFS refuses them: the framing is what is tested)."""
    port = int(proxy.endpoint.rsplit(":", 1)[1])
    chunked = (b"PUT /some-bucket/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        heads = [_http(sock, chunked), _http(sock, chunked),
                 _http(sock, b"GET /some-bucket/k HTTP/1.1\r\nHost: x\r\n\r\n")]
    assert all(h.startswith(b"HTTP/1.1 4") for h in heads)
    assert proxy.seen["PutObject"] == 2 and proxy.seen["GetObject"] == 1
