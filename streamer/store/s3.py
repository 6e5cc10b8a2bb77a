"""``S3Store``: one region's bucket through aiobotocore.

Everything botocore or aiohttp can raise is translated here into ``StoreFailure``
(transient or not), so the rest of streamer never sees a library exception.
Checksums and the client configuration: store/s3_client.py.  The part hooks
(store/s3_hooks.py) are registered on each client's own event system, never
process-wide; ``sever`` aborts a dropped region's connections."""

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

from streamer.errors import StoreFailure
from streamer.settings.config import ChecksumMode, Config, Region
from streamer.store import s3_copy
from streamer.store.base import (
    BucketLock,
    Checksums,
    ObjectInfo,
    ObjectStore,
    PartBody,
    Probe,
    Retention,
    UploadInfo,
)
from streamer.store.retry import RetryPolicy, retrying
from streamer.store.s3_client import (
    client_config,
    md5_b64,
    shared_session,
    tls_verify,
    with_checksums,
    with_retention,
)
from streamer.store.s3_errors import translate
from streamer.store.s3_hooks import abort_connections, install_part_hooks
from streamer.store.throttle import Throttle
from streamer.store.timeouts import RequestTimeouts

T = TypeVar("T")

def _utc(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def _missing(failure: StoreFailure) -> bool:
    return failure.status == 404 or failure.code in ("NoSuchKey", "NotFound", "NoSuchUpload")


@dataclass(eq=False)
class S3Store:
    """One region's bucket (an ``ObjectStore``).  Create with ``open_stores``."""

    region: Region
    bucket: str
    client: Any = field(repr=False)
    checksum: ChecksumMode
    timeouts: RequestTimeouts
    policy: RetryPolicy
    part_checksum: str = ""  # ObjectStore.part_checksum; set by store/negotiate.py under auto
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

    @property
    def request_timeout(self) -> float:
        """Seconds for one control request (a data request gets more: store/timeouts.py)."""
        return self.timeouts.control

    def sever(self) -> None:
        abort_connections(self.client)

    async def _once(self, operation: str, call: Callable[[], Awaitable[T]],
                    limit: float | None = None) -> T:
        """One request, timed out (default: as control); library exceptions become StoreFailure."""
        try:
            with anyio.fail_after(limit or self.timeouts.control):
                return await call()
        except StoreFailure:
            raise
        except Exception as exc:  # botocore, aiohttp and friends: translated at this boundary
            raise translate(self.label, operation, exc) from None

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]],
                    policy: RetryPolicy | None = None, limit: float | None = None) -> T:
        """One S3 call with a timeout per request, retried by the policy."""
        return await retrying(policy or self.policy, lambda: self._once(operation, call, limit))

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

    async def probe(self, policy: RetryPolicy | None = None) -> Probe:
        response = await self._call("ListBuckets", lambda: self.client.list_buckets(), policy)
        date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        server = email.utils.parsedate_to_datetime(date) if date else None
        names = frozenset(str(b.get("Name")) for b in response.get("Buckets", []) or [])
        return Probe(server, names)

    async def ensure_bucket(self, object_lock: bool = False) -> None:
        try:
            await self._call("HeadBucket", lambda: self.client.head_bucket(Bucket=self.bucket),
                             self.policy.tries(3))
            return
        except StoreFailure as f:
            if f.status != 404 and f.code not in ("404", "NoSuchBucket", "NotFound"):
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if object_lock:
            kwargs["ObjectLockEnabledForBucket"] = True  # versioning comes with it
        if self.region.location != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region.location}
        try:
            await self._call("CreateBucket", lambda: self.client.create_bucket(**kwargs))
        except StoreFailure as f:
            if f.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def bucket_lock(self, policy: RetryPolicy | None = None) -> BucketLock:
        """Object Lock of the bucket; a bucket without any is ``enabled=False``."""
        try:
            response = await self._call("GetObjectLockConfiguration", lambda:
                                        self.client.get_object_lock_configuration(
                                            Bucket=self.bucket), policy)
        except StoreFailure as f:
            if f.code == "ObjectLockConfigurationNotFoundError" or f.status == 404:
                return BucketLock(False)
            raise
        conf = response.get("ObjectLockConfiguration") or {}
        rule = (conf.get("Rule") or {}).get("DefaultRetention") or {}
        default = " ".join(str(rule[k]) for k in ("Mode", "Days", "Years") if rule.get(k))
        return BucketLock(conf.get("ObjectLockEnabled") == "Enabled", default)

    # ------------------------------------------------------------ multipart

    async def create_multipart(self, key: str, content_type: str,
                               retention: Retention | None = None) -> str:
        kwargs = with_retention({"Bucket": self.bucket, "Key": key, "ContentType": content_type},
                                retention)
        response = await self._call(
            "CreateMultipartUpload", lambda: self.client.create_multipart_upload(**kwargs))
        return str(response["UploadId"])

    async def upload_part(self, key: str, upload_id: str, number: int, body: PartBody,
                          checksums: Checksums | None = None) -> str:
        """One attempt (the caller owns retries, since it owns the buffer)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id,
                                  "PartNumber": number, "Body": body}
        with_checksums(kwargs, {**body.header_for(self.part_checksum), **(checksums or {})})
        response = await self._once("UploadPart", lambda: self.client.upload_part(**kwargs),
                                    self.timeouts.data(len(body)))
        return str(response["ETag"])

    async def complete_multipart(self, key: str, upload_id: str,
                                 parts: list[dict[str, object]]) -> str:
        response = await self._call(
            "CompleteMultipartUpload",
            lambda: self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": parts}),
            limit=self.timeouts.complete(len(parts)),
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
                         checksums: Checksums | None = None,
                         retention: Retention | None = None) -> str:
        """PutObject; ``if_none_match`` creates only (412 if the key exists),
        ``if_match`` overwrites only that ETag (412 if it changed)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": data,
                                  "ContentType": content_type}
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        if retention is not None and not (checksums and "md5" in checksums):
            checksums = {**(checksums or {}), "md5": md5_b64(data)}  # S3 requires one with a lock
        with_retention(with_checksums(kwargs, checksums), retention)
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
        return await self._call("GetObject", go, limit=self.timeouts.data(expected))

    async def _head(self, key: str, policy: RetryPolicy | None) -> dict[str, Any] | None:
        """HeadObject's response, or None if the object does not exist."""
        try:
            return dict(await self._call(
                "HeadObject", lambda: self.client.head_object(Bucket=self.bucket, Key=key), policy))
        except StoreFailure as f:
            if f.status == 404:
                return None
            raise

    async def head_object(self, key: str,
                          policy: RetryPolicy | None = None) -> tuple[int, str] | None:
        """(size, ETag) of an object, or None if it does not exist."""
        response = await self._head(key, policy)
        if response is None:
            return None
        return int(response.get("ContentLength", 0)), str(response.get("ETag", ""))

    async def retention_of(self, key: str,
                           policy: RetryPolicy | None = None) -> Retention | None:
        """The object's Object Lock retention (from HEAD), or None."""
        response = await self._head(key, policy)
        if response is None:
            return None
        until, mode = _utc(response.get("ObjectLockRetainUntilDate")), response.get("ObjectLockMode")
        return Retention(str(mode), until) if until and mode else None

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


@contextlib.asynccontextmanager
async def open_store(region: Region, bucket: str, checksum: ChecksumMode = "md5",
                     request_timeout: float = 30.0, policy: RetryPolicy | None = None,
                     pool: int = 16, min_part_rate: float = 128 * 1024,
                     throttle: Throttle | None = None) -> AsyncIterator[S3Store]:
    """One region's store (``open_stores``: every region); timeouts: store/timeouts.py;
    ``throttle``: STREAMER_BWLIMIT's bucket, shared by every region (store/throttle.py)."""
    timeouts = RequestTimeouts(request_timeout, min_part_rate)
    async with shared_session().create_client(
        "s3",
        endpoint_url=region.endpoint,
        region_name=region.location,
        aws_access_key_id=str(region.access_key),
        aws_secret_access_key=str(region.secret_key),
        config=client_config(checksum, timeouts, pool),
        verify=tls_verify(region),  # plain http: none; else the region's CAs (s3_client.py)
    ) as client:
        install_part_hooks(client.meta.events, region, checksum == "sha256",
                           throttle.meter(region.index) if throttle else None)
        yield S3Store(region, bucket, client, checksum, timeouts, policy or RetryPolicy(),
                      "md5" if checksum in ("md5", "auto") else "")


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
    throttle = Throttle(config.bwlimit) if config.bwlimit else None
    async with contextlib.AsyncExitStack() as stack:
        stores: list[ObjectStore] = [await stack.enter_async_context(
            open_store(r, bucket or config.bucket, config.checksum, config.request_timeout,
                       policy or run_policy(config), size, config.min_part_rate, throttle))
            for r in config.regions]
        yield stores

