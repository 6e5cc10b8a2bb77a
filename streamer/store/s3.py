"""The object sink: one region's S3 API through aiobotocore.

Everything botocore or aiohttp can raise is translated here into ``StoreFailure``
(transient or not), so the rest of streamer never sees a library exception.
Only the calls streamer needs are exposed.

Checksums: botocore >= 1.36 adds CRC32 checksum headers (and aws-chunked
trailers) to uploads by default, which several S3-compatible providers reject.
streamer asks botocore for checksums only "when_required" and proves each
part's integrity itself (``Config.checksum``), with a digest the chunk
producer computed once and every region and retry reuses:

* ``md5`` (default): ``Content-MD5`` per part, which every S3 implementation
  verifies, and an unsigned payload (no second hash for SigV4).
* ``sha256``: the part's SHA-256 is the signed ``x-amz-content-sha256``
  payload hash; ``PrecomputedPayloadAuth`` lets botocore's signer use it
  instead of hashing the body again.  AWS verifies it; SeaweedFS does not.
* ``crc32``: botocore's own flexible checksums (AWS S3 only, per region).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp.payload
import anyio
import botocore.auth
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from streamer.errors import StoreFailure
from streamer.settings.config import ChecksumMode, Region
from streamer.store.base import ObjectInfo, PartBody, UploadInfo
from streamer.store.retry import RetryPolicy

T = TypeVar("T")


class PrecomputedPayloadAuth(botocore.auth.S3SigV4Auth):  # type: ignore[misc]
    """S3 SigV4 that trusts a body's precomputed ``sha256_hex`` (see buffers.PartBody)."""

    def payload(self, request: Any) -> str:
        digest = getattr(request.body, "sha256_hex", "")
        if digest:
            return str(digest)
        return str(super().payload(request))


# Bodies without a precomputed digest are signed exactly as botocore would.
botocore.auth.AUTH_TYPE_MAPS["s3v4"] = PrecomputedPayloadAuth


class PartPayload(aiohttp.payload.Payload):
    """Sends a PartBody through a memoryview: aiohttp's BytesPayload slices a
    bytearray body (a full copy per request), which would put one extra part
    per request in flight outside the memory budget."""

    def __init__(self, value: PartBody, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("content_type", "application/octet-stream")
        super().__init__(value, *args, **kwargs)
        self._size = len(value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value).decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return bytes(self._value)

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        # An empty write first flushes the buffered headers on their own:
        # otherwise aiohttp joins headers and body into one new bytes object
        # (on Python < 3.12.9), a copy of the whole part per request.
        await writer.write(b"")
        view = memoryview(self._value)
        await writer.write(view if content_length is None else view[:content_length])


aiohttp.payload.register_payload(PartPayload, PartBody, order=aiohttp.payload.Order.try_first)


def _utc(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return None


_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                    "Throttling", "ThrottlingException", "RequestTimeTooSkewed"}


def translate(region: str, operation: str, exc: BaseException) -> StoreFailure:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        code = str(err.get("Code", ""))
        message = str(err.get("Message", "")) or code
        transient = status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES
        return StoreFailure(region, operation, f"{code or status}: {message}", transient, status, code)
    if isinstance(exc, TimeoutError):
        return StoreFailure(region, operation, "timed out", True)
    if isinstance(exc, BotoCoreError | OSError):
        # Connection refused, DNS, read timeouts: the message names the endpoint, never a key.
        return StoreFailure(region, operation, type(exc).__name__ + ": " + str(exc), True)
    text = f"{type(exc).__name__}: {exc}"
    return StoreFailure(region, operation, text, True)


class RegionClient:
    """One region's bucket.  Create with ``open_region`` (an async context)."""

    def __init__(self, region: Region, bucket: str, client: Any, checksum: ChecksumMode,
                 request_timeout: float, policy: RetryPolicy) -> None:
        self.region = region
        self.bucket = bucket
        self._client = client
        self.checksum = checksum
        self.request_timeout = request_timeout
        self.policy = policy

    @property
    def label(self) -> str:
        return self.region.label

    async def _once(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            with anyio.fail_after(self.request_timeout):
                return await call()
        except StoreFailure:
            raise
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            raise translate(self.label, operation, exc) from None
        except Exception as exc:  # aiohttp and friends: translated at this boundary
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                raise
            raise translate(self.label, operation, exc) from None

    async def call(self, operation: str, call: Callable[[], Awaitable[T]],
                   attempts: int | None = None) -> T:
        """One S3 call with a timeout per request and retries with backoff."""
        tries = attempts or self.policy.max_attempts
        for attempt in range(1, tries + 1):
            try:
                return await self._once(operation, call)
            except StoreFailure as failure:
                if not failure.transient or attempt == tries:
                    raise
                await anyio.sleep(self.policy.delay(attempt))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ buckets

    async def ensure_bucket(self) -> None:
        try:
            await self.call("HeadBucket", lambda: self._client.head_bucket(Bucket=self.bucket),
                            attempts=3)
            return
        except StoreFailure as f:
            if f.status != 404 and f.code not in ("404", "NoSuchBucket", "NotFound"):
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region.location != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region.location}
        try:
            await self.call("CreateBucket", lambda: self._client.create_bucket(**kwargs))
        except StoreFailure as f:
            if f.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    # ------------------------------------------------------------ multipart

    async def create_multipart(self, key: str, content_type: str) -> str:
        response = await self.call(
            "CreateMultipartUpload",
            lambda: self._client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type),
        )
        return str(response["UploadId"])

    async def upload_part(self, key: str, upload_id: str, number: int, body: Any) -> str:
        """One attempt (the caller owns retries, since it owns the buffer)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id,
                                  "PartNumber": number, "Body": body}
        if self.checksum == "md5" and body.md5_b64:
            kwargs["ContentMD5"] = body.md5_b64
        response = await self._once("UploadPart", lambda: self._client.upload_part(**kwargs))
        return str(response["ETag"])

    async def complete_multipart(self, key: str, upload_id: str,
                                 parts: list[dict[str, object]]) -> str:
        response = await self.call(
            "CompleteMultipartUpload",
            lambda: self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": parts}),
        )
        return str(response.get("ETag", ""))

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            await self.call("AbortMultipartUpload",
                            lambda: self._client.abort_multipart_upload(
                                Bucket=self.bucket, Key=key, UploadId=upload_id),
                            attempts=3)
        except StoreFailure as f:
            if f.status != 404:
                raise

    async def list_multipart_uploads(self, prefix: str) -> list[tuple[str, str]]:
        """(key, upload id) of every unfinished multipart upload under prefix."""
        out: list[tuple[str, str]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            page = await self.call("ListMultipartUploads",
                                   lambda: self._client.list_multipart_uploads(**kwargs))
            for upload in page.get("Uploads", []) or []:
                out.append((str(upload["Key"]), str(upload["UploadId"])))
            if not page.get("IsTruncated"):
                return out
            kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    # ------------------------------------------------------------ objects

    async def put_object(self, key: str, data: bytes, content_type: str = "application/json",
                         if_none_match: bool = False, if_match: str | None = None,
                         attempts: int | None = None) -> str:
        """PutObject; ``if_none_match`` creates only (412 if the key exists),
        ``if_match`` overwrites only that ETag (412 if it changed)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": data,
                                  "ContentType": content_type}
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        response = await self.call("PutObject", lambda: self._client.put_object(**kwargs),
                                   attempts=attempts)
        return str(response.get("ETag", ""))

    async def get_with_etag(self, key: str, attempts: int | None = None) -> tuple[bytes, str] | None:
        """A small object's bytes and ETag, or None if it does not exist."""
        async def go() -> tuple[bytes, str]:
            response = await self._client.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as stream:
                return bytes(await stream.read()), str(response.get("ETag", ""))
        try:
            return await self.call("GetObject", go, attempts=attempts)
        except StoreFailure as f:
            if f.status == 404:
                return None
            raise

    async def get_range(self, key: str, start: int, end: int,
                        if_match: str | None = None) -> bytearray:
        """Bytes ``start..end`` (inclusive) of an object, retried as a whole on a
        transient failure; ``if_match`` pins the object version (412 if it changed).

        The body is read into one buffer of the range's size as it arrives (not
        collected and then joined, which would hold it twice)."""
        expected = end - start + 1

        async def go() -> bytearray:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key,
                                      "Range": f"bytes={start}-{end}"}
            if if_match:
                kwargs["IfMatch"] = if_match
            response = await self._client.get_object(**kwargs)
            data = bytearray(expected)
            pos = 0
            async with response["Body"] as stream:
                while pos < expected:
                    chunk = await stream.read(min(256 * 1024, expected - pos))
                    if not chunk:
                        break
                    data[pos:pos + len(chunk)] = chunk
                    pos += len(chunk)
                extra = await stream.read(1) if pos == expected else b""
            if pos != expected or extra:
                raise StoreFailure(self.label, "GetObject",
                                f"short read of {key} bytes {start}-{end}: {pos} bytes", True)
            return data
        return await self.call("GetObject", go)

    async def head_object(self, key: str, attempts: int | None = None) -> tuple[int, str] | None:
        """(size, ETag) of an object, or None if it does not exist."""
        try:
            response = await self.call(
                "HeadObject", lambda: self._client.head_object(Bucket=self.bucket, Key=key),
                attempts=attempts)
        except StoreFailure as f:
            if f.status == 404:
                return None
            raise
        return int(response.get("ContentLength", 0)), str(response.get("ETag", ""))

    async def delete_object(self, key: str, if_match: str | None = None,
                            attempts: int | None = None) -> None:
        """Delete one object (absent is fine); ``if_match``: only that ETag (412 otherwise)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        try:
            await self.call("DeleteObject", lambda: self._client.delete_object(**kwargs),
                            attempts=attempts)
        except StoreFailure as f:
            if f.status != 404:
                raise

    async def copy_object(self, source_key: str, key: str) -> bool:
        """Server-side copy within the bucket; False if the source does not exist.
        (A single CopyObject: sources up to 5 GiB.)"""
        try:
            await self.call("CopyObject", lambda: self._client.copy_object(
                Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": source_key}))
        except StoreFailure as f:
            if f.status == 404 or f.code in ("NoSuchKey", "NotFound"):
                return False
            raise
        return True

    async def list_objects(self, prefix: str, attempts: int | None = None) -> list[ObjectInfo]:
        """Every object under prefix with its size and modification time."""
        out: list[ObjectInfo] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            page = await self.call("ListObjectsV2",
                                   lambda: self._client.list_objects_v2(**kwargs), attempts=attempts)
            for obj in page.get("Contents", []) or []:
                out.append(ObjectInfo(str(obj["Key"]), int(obj.get("Size", 0)),
                                      _utc(obj.get("LastModified"))))
            if not page.get("IsTruncated"):
                return out
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    async def list_uploads(self, prefix: str, attempts: int | None = None) -> list[UploadInfo]:
        """Every unfinished multipart upload under prefix, with when it was started."""
        out: list[UploadInfo] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            page = await self.call("ListMultipartUploads",
                                   lambda: self._client.list_multipart_uploads(**kwargs),
                                   attempts=attempts)
            for upload in page.get("Uploads", []) or []:
                out.append(UploadInfo(str(upload["Key"]), str(upload["UploadId"]),
                                      _utc(upload.get("Initiated"))))
            if not page.get("IsTruncated"):
                return out
            kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    async def get_bytes(self, key: str, byte_range: str | None = None) -> bytes:
        async def go() -> bytes:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
            if byte_range:
                kwargs["Range"] = byte_range
            response = await self._client.get_object(**kwargs)
            async with response["Body"] as stream:
                return bytes(await stream.read())
        return await self.call("GetObject", go)

    async def head(self, key: str) -> dict[str, Any]:
        response = await self.call("HeadObject",
                                   lambda: self._client.head_object(Bucket=self.bucket, Key=key))
        return dict(response)

    async def list_keys(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object under prefix."""
        out: list[tuple[str, int]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            page = await self.call("ListObjectsV2",
                                   lambda: self._client.list_objects_v2(**kwargs))
            for obj in page.get("Contents", []) or []:
                out.append((str(obj["Key"]), int(obj.get("Size", 0))))
            if not page.get("IsTruncated"):
                return out
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    async def delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i:i + 1000]]
            response = await self.call(
                "DeleteObjects",
                lambda batch=batch: self._client.delete_objects(  # type: ignore[misc]
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}),
            )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise StoreFailure(self.label, "DeleteObjects",
                                f"{first.get('Key')}: {first.get('Code')}", False)


def client_config(checksum: ChecksumMode, request_timeout: float, pool: int) -> AioConfig:
    return AioConfig(
        signature_version="s3v4",
        connect_timeout=min(10.0, request_timeout),
        read_timeout=request_timeout,
        retries={"max_attempts": 1, "mode": "standard"},  # streamer retries itself
        max_pool_connections=pool,
        request_checksum_calculation="when_supported" if checksum == "crc32" else "when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path",
            **({"payload_signing_enabled": False} if checksum == "md5" else {})},
        tcp_keepalive=True,
    )


_SESSION: list[Any] = []


def shared_session() -> Any:
    """One botocore session for every region: the S3 service model (tens of
    MiB of parsed JSON) is then loaded once, not once per region."""
    if not _SESSION:
        _SESSION.append(get_session())
    return _SESSION[0]


@contextlib.asynccontextmanager
async def open_region(region: Region, bucket: str, checksum: ChecksumMode,
                      request_timeout: float, policy: RetryPolicy,
                      pool: int = 16) -> AsyncIterator[RegionClient]:
    session = shared_session()
    async with session.create_client(
        "s3",
        endpoint_url=region.endpoint,
        region_name=region.location,
        aws_access_key_id=str(region.access_key),
        aws_secret_access_key=str(region.secret_key),
        config=client_config(checksum, request_timeout, pool),
        # Plain http has no certificate to check: skip loading the CA bundle.
        verify=False if region.endpoint.startswith("http://") else None,
    ) as client:
        yield RegionClient(region, bucket, client, checksum, request_timeout, policy)
