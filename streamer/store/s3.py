"""``S3Store``: one region's bucket through aiobotocore.

Everything botocore or aiohttp can raise is translated here into ``StoreFailure``
(transient or not), so the rest of streamer never sees a library exception.

Checksums: botocore >= 1.36 adds CRC32 checksum headers (and aws-chunked
trailers) to uploads by default, which several S3-compatible providers reject.
streamer asks botocore for checksums only "when_required" and proves each
part's integrity itself (``Config.checksum``), with a digest the chunk
producer computed once and every region and retry reuses:

* ``md5`` (default): ``Content-MD5`` per part, which AWS and SeaweedFS
  verify (moto does not: tests/store/test_conformance.py records what each
  server verifies), and an unsigned payload (no second hash for SigV4).
* ``sha256``: the part's SHA-256 is the signed ``x-amz-content-sha256``
  payload hash; the store signs its parts with ``PrecomputedPayloadAuth``,
  which uses it instead of hashing the body again.  AWS verifies it;
  SeaweedFS does not.
* ``crc32``: botocore's own flexible checksums (AWS S3 only, per region).

The part hooks (store/s3_hooks.py) are registered on each client's own event
system, never process-wide.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from streamer.errors import StoreFailure
from streamer.settings.config import ChecksumMode, Config, Region
from streamer.store import s3_copy
from streamer.store.base import Checksums, ObjectInfo, ObjectStore, PartBody, Probe, UploadInfo
from streamer.store.retry import RetryPolicy, retrying
from streamer.store.s3_errors import translate
from streamer.store.s3_hooks import install_part_hooks

T = TypeVar("T")

# botocore parameter of each digest a caller may attach (see store/base.py).
_CHECKSUM_PARAMS = {"md5": "ContentMD5", "crc32": "ChecksumCRC32", "crc32c": "ChecksumCRC32C",
                    "crc64nvme": "ChecksumCRC64NVME", "sha1": "ChecksumSHA1",
                    "sha256": "ChecksumSHA256"}


def _utc(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def _missing(failure: StoreFailure) -> bool:
    return failure.status == 404 or failure.code in ("NoSuchKey", "NotFound", "NoSuchUpload")


def _with_checksums(kwargs: dict[str, Any], checksums: Checksums | None) -> dict[str, Any]:
    for name, value in (checksums or {}).items():
        kwargs[_CHECKSUM_PARAMS[name]] = value
    return kwargs


@dataclass(eq=False)
class S3Store:
    """One region's bucket (an ``ObjectStore``).  Create with ``open_stores``."""

    region: Region
    bucket: str
    client: Any = field(repr=False)
    checksum: ChecksumMode
    request_timeout: float
    policy: RetryPolicy
    copy_limit: int = s3_copy.COPY_OBJECT_LIMIT  # larger objects are copied in parts
    copy_part_size: int = s3_copy.COPY_PART_SIZE

    @property
    def index(self) -> int:
        return self.region.index

    @property
    def label(self) -> str:
        return self.region.label

    @property
    def endpoint(self) -> str:
        return self.region.endpoint

    async def _once(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """One request with a timeout; every library exception becomes a StoreFailure."""
        try:
            with anyio.fail_after(self.request_timeout):
                return await call()
        except StoreFailure:
            raise
        except Exception as exc:  # botocore, aiohttp and friends: translated at this boundary
            raise translate(self.label, operation, exc) from None

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]],
                    policy: RetryPolicy | None = None) -> T:
        """One S3 call with a timeout per request, retried by the policy."""
        return await retrying(policy or self.policy, lambda: self._once(operation, call))

    async def _pages(self, operation: str, method: Callable[..., Awaitable[Any]],
                     kwargs: dict[str, Any], markers: dict[str, str],
                     policy: RetryPolicy | None) -> AsyncIterator[dict[str, Any]]:
        """Every page of a listing; ``markers`` maps a request parameter to the
        response field that continues it."""
        while True:
            page: dict[str, Any] = await self._call(operation, functools.partial(method, **kwargs),
                                                    policy)
            yield page
            if not page.get("IsTruncated"):
                return
            for param, answer in markers.items():
                kwargs[param] = page.get(answer, "")

    # ------------------------------------------------------------ buckets

    async def probe(self, policy: RetryPolicy | None = None) -> Probe:
        response = await self._call("ListBuckets", lambda: self.client.list_buckets(), policy)
        date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        server = email.utils.parsedate_to_datetime(date) if date else None
        names = frozenset(str(b.get("Name")) for b in response.get("Buckets", []) or [])
        return Probe(server, names)

    async def ensure_bucket(self) -> None:
        try:
            await self._call("HeadBucket", lambda: self.client.head_bucket(Bucket=self.bucket),
                             self.policy.tries(3))
            return
        except StoreFailure as f:
            if f.status != 404 and f.code not in ("404", "NoSuchBucket", "NotFound"):
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region.location != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region.location}
        try:
            await self._call("CreateBucket", lambda: self.client.create_bucket(**kwargs))
        except StoreFailure as f:
            if f.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    # ------------------------------------------------------------ multipart

    async def create_multipart(self, key: str, content_type: str) -> str:
        response = await self._call(
            "CreateMultipartUpload",
            lambda: self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type),
        )
        return str(response["UploadId"])

    async def upload_part(self, key: str, upload_id: str, number: int, body: PartBody,
                          checksums: Checksums | None = None) -> str:
        """One attempt (the caller owns retries, since it owns the buffer)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id,
                                  "PartNumber": number, "Body": body}
        if self.checksum == "md5" and body.md5_b64:
            kwargs["ContentMD5"] = body.md5_b64
        _with_checksums(kwargs, checksums)
        response = await self._once("UploadPart", lambda: self.client.upload_part(**kwargs))
        return str(response["ETag"])

    async def complete_multipart(self, key: str, upload_id: str,
                                 parts: list[dict[str, object]]) -> str:
        response = await self._call(
            "CompleteMultipartUpload",
            lambda: self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": parts}),
        )
        return str(response.get("ETag", ""))

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            await self._call("AbortMultipartUpload",
                             lambda: self.client.abort_multipart_upload(
                                 Bucket=self.bucket, Key=key, UploadId=upload_id),
                             self.policy.tries(3))
        except StoreFailure as f:
            if f.status != 404:
                raise

    # ------------------------------------------------------------ objects

    async def put_object(self, key: str, data: bytes, content_type: str = "application/json",
                         if_none_match: bool = False, if_match: str | None = None,
                         policy: RetryPolicy | None = None,
                         checksums: Checksums | None = None) -> str:
        """PutObject; ``if_none_match`` creates only (412 if the key exists),
        ``if_match`` overwrites only that ETag (412 if it changed)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": data,
                                  "ContentType": content_type}
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        _with_checksums(kwargs, checksums)
        response = await self._call("PutObject", lambda: self.client.put_object(**kwargs), policy)
        return str(response.get("ETag", ""))

    async def get_with_etag(self, key: str,
                            policy: RetryPolicy | None = None) -> tuple[bytes, str] | None:
        """A small object's bytes and ETag, or None if it does not exist."""
        async def go() -> tuple[bytes, str]:
            response = await self.client.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as stream:
                return bytes(await stream.read()), str(response.get("ETag", ""))
        try:
            return await self._call("GetObject", go, policy)
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
            response = await self.client.get_object(**kwargs)
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
        return await self._call("GetObject", go)

    async def head_object(self, key: str,
                          policy: RetryPolicy | None = None) -> tuple[int, str] | None:
        """(size, ETag) of an object, or None if it does not exist."""
        try:
            response = await self._call(
                "HeadObject", lambda: self.client.head_object(Bucket=self.bucket, Key=key), policy)
        except StoreFailure as f:
            if f.status == 404:
                return None
            raise
        return int(response.get("ContentLength", 0)), str(response.get("ETag", ""))

    async def delete_object(self, key: str, if_match: str | None = None,
                            policy: RetryPolicy | None = None) -> None:
        """Delete one object (absent is fine); ``if_match``: only that ETag (412 otherwise)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        try:
            await self._call("DeleteObject", lambda: self.client.delete_object(**kwargs), policy)
        except StoreFailure as f:
            if f.status != 404:
                raise

    async def copy_object(self, source_key: str, key: str) -> bool:
        """Server-side copy within the bucket; False if the source does not exist.
        CopyObject up to ``copy_limit``, UploadPartCopy parts above (s3_copy.py)."""
        return await s3_copy.copy_object(self, source_key, key)

    def sibling(self, bucket: str) -> S3Store:
        """The same region and connection, another bucket."""
        return dataclasses.replace(self, bucket=bucket)

    async def list_objects(self, prefix: str,
                           policy: RetryPolicy | None = None) -> list[ObjectInfo]:
        """Every object under prefix with its size and modification time."""
        pages = self._pages("ListObjectsV2", self.client.list_objects_v2,
                            {"Bucket": self.bucket, "Prefix": prefix},
                            {"ContinuationToken": "NextContinuationToken"}, policy)
        return [ObjectInfo(str(obj["Key"]), int(obj.get("Size", 0)), _utc(obj.get("LastModified")))
                async for page in pages for obj in page.get("Contents", []) or []]

    async def list_uploads(self, prefix: str,
                           policy: RetryPolicy | None = None) -> list[UploadInfo]:
        """Every unfinished multipart upload under prefix, with when it was started."""
        pages = self._pages("ListMultipartUploads", self.client.list_multipart_uploads,
                            {"Bucket": self.bucket, "Prefix": prefix},
                            {"KeyMarker": "NextKeyMarker", "UploadIdMarker": "NextUploadIdMarker"},
                            policy)
        return [UploadInfo(str(u["Key"]), str(u["UploadId"]), _utc(u.get("Initiated")))
                async for page in pages for u in page.get("Uploads", []) or []]

    async def delete_keys(self, keys: list[str], policy: RetryPolicy | None = None) -> None:
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i:i + 1000]]
            response = await self._call(
                "DeleteObjects",
                lambda batch=batch: self.client.delete_objects(  # type: ignore[misc]
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}),
                policy)
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
        # One attempt per call: streamer retries itself (store/retry.py).  botocore's
        # "max_attempts" counts retries, so it would add one more; "total_max_attempts" does not.
        retries={"total_max_attempts": 1, "mode": "standard"},
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
async def open_store(region: Region, bucket: str, checksum: ChecksumMode = "md5",
                     request_timeout: float = 30.0, policy: RetryPolicy | None = None,
                     pool: int = 16) -> AsyncIterator[S3Store]:
    """One region's store (``open_stores`` opens every configured region)."""
    async with shared_session().create_client(
        "s3",
        endpoint_url=region.endpoint,
        region_name=region.location,
        aws_access_key_id=str(region.access_key),
        aws_secret_access_key=str(region.secret_key),
        config=client_config(checksum, request_timeout, pool),
        # Plain http has no certificate to check: skip loading the CA bundle.
        verify=False if region.endpoint.startswith("http://") else None,
    ) as client:
        install_part_hooks(client.meta.events, region, sign_parts=checksum == "sha256")
        yield S3Store(region, bucket, client, checksum, request_timeout, policy or RetryPolicy())


def run_policy(config: Config) -> RetryPolicy:
    """A store's default policy: the part retries of the configuration."""
    return RetryPolicy(max_attempts=config.part_retries)


@contextlib.asynccontextmanager
async def open_stores(config: Config, policy: RetryPolicy | None = None,
                      pool: int | None = None,
                      bucket: str | None = None) -> AsyncIterator[list[ObjectStore]]:
    """A store per configured region, in configuration order, on ``bucket``
    (default: the configured one; the layout says which, see Layout.bucket).

    ``policy`` is every request's default (``run_policy``); ``pool``, the
    connections per region (default: enough for the parts in flight)."""
    size = pool or max(16, config.parts_in_flight * 2 + 4)
    async with contextlib.AsyncExitStack() as stack:
        stores: list[ObjectStore] = [await stack.enter_async_context(
            open_store(r, bucket or config.bucket, config.checksum, config.request_timeout,
                       policy or run_policy(config), size))
            for r in config.regions]
        yield stores

