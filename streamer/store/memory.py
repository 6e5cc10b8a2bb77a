"""``MemoryStore``: an ``ObjectStore`` in a dict, for fast tests without servers.

It answers as S3 does where streamer depends on it: ETags are the MD5 of the
body (quoted), a multipart object's is the MD5 of its parts' MD5s with ``-N``;
a failed condition is ``StoreFailure(status=412, code="PreconditionFailed")``,
a missing key or upload ``status=404``; a part whose ``Content-MD5`` (or an
``x-amz-checksum-*`` value) does not match its body is rejected with 400
``BadDigest``.  With ``object_lock`` it keeps each object's retention; deleting a
key hides it, as the delete marker of a bucket with Object Lock does (the
locked version a real server keeps is not modelled).

Fault injection: ``fail(operation, nth=..., failure=...)`` makes the nth
request of an operation (counted from now) fail, and ``hooks[operation]`` is
awaited before every request of that operation (it may raise, sleep or
record).  ``calls`` counts the requests of each operation.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from streamer.errors import StoreFailure
from streamer.store.base import BucketLock, Checksums, ObjectInfo, PartBody, Probe, Retention, UploadInfo
from streamer.store.integrity import checksum
from streamer.store.retry import RetryPolicy, retrying

Hook = Callable[[str], Awaitable[None]]  # called with the key (or prefix) of the request


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


@dataclass
class _Object:
    data: bytes
    etag: str
    modified: datetime
    retention: Retention | None = None


@dataclass
class _Upload:
    key: str
    initiated: datetime
    parts: dict[int, bytes] = field(default_factory=dict)
    retention: Retention | None = None


@dataclass(eq=False)
class MemoryStore:
    """One region's bucket in memory (an ``ObjectStore``)."""

    index: int = 1
    bucket: str = "memory"
    policy: RetryPolicy = field(default_factory=lambda: RetryPolicy(base_delay=0.0, max_delay=0.0))
    request_timeout: float = 30.0
    endpoint: str = "memory://"
    part_checksum: str = ""  # ObjectStore.part_checksum (it verifies every digest it is given)
    bucket_exists: bool = False
    object_lock: bool = False  # the bucket has Object Lock enabled
    objects: dict[str, _Object] = field(default_factory=dict)
    uploads: dict[str, _Upload] = field(default_factory=dict)
    hooks: dict[str, Hook] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    siblings: dict[str, MemoryStore] = field(default_factory=dict, repr=False)
    _faults: dict[str, list[tuple[int, StoreFailure]]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def label(self) -> str:
        return f"region {self.index} (memory)"

    # ------------------------------------------------------------ faults

    def fail(self, operation: str, nth: int = 1, failure: StoreFailure | None = None,
             transient: bool = True, status: int = 503) -> None:
        """Make the ``nth`` request of ``operation`` from now fail (by default
        with a transient 503 ``ServiceUnavailable``)."""
        failure = failure or StoreFailure(self.label, operation, f"{status}: injected", transient,
                                          status, "ServiceUnavailable" if status == 503 else "")
        self._faults.setdefault(operation, []).append((self.calls[operation] + nth, failure))

    async def _request(self, operation: str, key: str) -> None:
        self.calls[operation] += 1
        hook = self.hooks.get(operation)
        if hook is not None:
            await hook(key)
        for entry in self._faults.get(operation, []):
            if entry[0] == self.calls[operation]:
                self._faults[operation].remove(entry)
                raise entry[1]

    def _failure(self, operation: str, status: int, code: str, detail: str = "") -> StoreFailure:
        return StoreFailure(self.label, operation, f"{code}: {detail or code}", False, status, code)

    def _need_bucket(self, operation: str) -> None:
        if not self.bucket_exists:
            raise self._failure(operation, 404, "NoSuchBucket")

    def _verify(self, operation: str, data: bytes, checksums: Checksums) -> None:
        for algorithm, value in checksums.items():
            if checksum(algorithm, data) != value:
                raise self._failure(operation, 400, "BadDigest", f"{algorithm} mismatch")

    def sever(self) -> None:
        self.calls["sever"] += 1  # no connections to abort; counted for the tests

    # ------------------------------------------------------------ buckets

    async def probe(self, policy: RetryPolicy | None = None) -> Probe:
        await retrying(policy or self.policy, lambda: self._request("ListBuckets", ""))
        return Probe(datetime.now(UTC), frozenset([self.bucket] if self.bucket_exists else []))

    async def ensure_bucket(self, object_lock: bool = False) -> None:
        await retrying(self.policy.tries(3), lambda: self._request("HeadBucket", ""))
        if not self.bucket_exists:
            self.object_lock = object_lock
        self.bucket_exists = True

    async def bucket_lock(self, policy: RetryPolicy | None = None) -> BucketLock:
        await retrying(policy or self.policy,
                       lambda: self._request("GetObjectLockConfiguration", ""))
        self._need_bucket("GetObjectLockConfiguration")
        return BucketLock(self.object_lock)

    def _lockable(self, operation: str, retention: Retention | None) -> None:
        if retention is not None and not self.object_lock:
            raise self._failure(operation, 400, "InvalidRequest",
                                "Bucket is missing Object Lock Configuration")

    # ------------------------------------------------------------ multipart

    async def create_multipart(self, key: str, content_type: str,
                               retention: Retention | None = None) -> str:
        await retrying(self.policy, lambda: self._request("CreateMultipartUpload", key))
        self._need_bucket("CreateMultipartUpload")
        self._lockable("CreateMultipartUpload", retention)
        upload_id = f"upload-{next(self._ids)}"
        self.uploads[upload_id] = _Upload(key, datetime.now(UTC), retention=retention)
        return upload_id

    async def upload_part(self, key: str, upload_id: str, number: int, body: PartBody,
                          checksums: Checksums | None = None) -> str:
        await self._request("UploadPart", key)
        upload = self.uploads.get(upload_id)
        if upload is None or upload.key != key:
            raise self._failure("UploadPart", 404, "NoSuchUpload")
        data = bytes(body)
        given = {**body.header_for(self.part_checksum), **(checksums or {})}
        if getattr(body, "md5_b64", ""):
            given.setdefault("md5", body.md5_b64)
        self._verify("UploadPart", data, given)
        upload.parts[number] = data
        return _etag(data)

    async def complete_multipart(self, key: str, upload_id: str,
                                 parts: list[dict[str, object]]) -> str:
        await retrying(self.policy, lambda: self._request("CompleteMultipartUpload", key))
        upload = self.uploads.get(upload_id)
        if upload is None or upload.key != key:
            raise self._failure("CompleteMultipartUpload", 404, "NoSuchUpload")
        chosen: list[bytes] = []
        for p in parts:
            data = upload.parts.get(int(str(p["PartNumber"])))
            if data is None or _etag(data) != f'"{str(p["ETag"]).strip(chr(34))}"':
                raise self._failure("CompleteMultipartUpload", 400, "InvalidPart")
            chosen.append(data)
        md5s = b"".join(hashlib.md5(d).digest() for d in chosen)
        etag = f'"{hashlib.md5(md5s).hexdigest()}-{len(chosen)}"'
        self.objects[key] = _Object(b"".join(chosen), etag, datetime.now(UTC), upload.retention)
        del self.uploads[upload_id]
        return etag

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await retrying(self.policy.tries(3), lambda: self._request("AbortMultipartUpload", key))
        self.uploads.pop(upload_id, None)

    # ------------------------------------------------------------ objects

    async def put_object(self, key: str, data: bytes, content_type: str = "application/json",
                         if_none_match: bool = False, if_match: str | None = None,
                         policy: RetryPolicy | None = None,
                         checksums: Checksums | None = None,
                         retention: Retention | None = None) -> str:
        await retrying(policy or self.policy, lambda: self._request("PutObject", key))
        self._need_bucket("PutObject")
        self._lockable("PutObject", retention)
        self._verify("PutObject", bytes(data), checksums or {})
        current = self.objects.get(key)
        if if_none_match and current is not None:
            raise self._failure("PutObject", 412, "PreconditionFailed")
        if if_match is not None and (current is None or current.etag != if_match):
            raise self._failure("PutObject", 412 if current else 404,
                                "PreconditionFailed" if current else "NoSuchKey")
        etag = _etag(bytes(data))
        self.objects[key] = _Object(bytes(data), etag, datetime.now(UTC), retention)
        return etag

    async def get_with_etag(self, key: str,
                            policy: RetryPolicy | None = None) -> tuple[bytes, str] | None:
        await retrying(policy or self.policy, lambda: self._request("GetObject", key))
        found = self.objects.get(key)
        return None if found is None else (found.data, found.etag)

    async def get_range(self, key: str, start: int, end: int,
                        if_match: str | None = None) -> bytearray:
        await retrying(self.policy, lambda: self._request("GetObject", key))
        found = self.objects.get(key)
        if found is None:
            raise self._failure("GetObject", 404, "NoSuchKey")
        if if_match and found.etag != if_match:
            raise self._failure("GetObject", 412, "PreconditionFailed")
        if start >= len(found.data):
            raise self._failure("GetObject", 416, "InvalidRange")
        return bytearray(found.data[start:end + 1])

    async def head_object(self, key: str,
                          policy: RetryPolicy | None = None) -> tuple[int, str] | None:
        await retrying(policy or self.policy, lambda: self._request("HeadObject", key))
        found = self.objects.get(key)
        return None if found is None else (len(found.data), found.etag)

    async def retention_of(self, key: str,
                           policy: RetryPolicy | None = None) -> Retention | None:
        await retrying(policy or self.policy, lambda: self._request("HeadObject", key))
        found = self.objects.get(key)
        return None if found is None else found.retention

    async def delete_object(self, key: str, if_match: str | None = None,
                            policy: RetryPolicy | None = None) -> None:
        await retrying(policy or self.policy, lambda: self._request("DeleteObject", key))
        found = self.objects.get(key)
        if found is not None and if_match is not None and found.etag != if_match:
            raise self._failure("DeleteObject", 412, "PreconditionFailed")
        self.objects.pop(key, None)

    async def copy_object(self, source_key: str, key: str) -> bool:
        await retrying(self.policy, lambda: self._request("CopyObject", key))
        found = self.objects.get(source_key)
        if found is None:
            return False
        self.objects[key] = _Object(found.data, _etag(found.data), datetime.now(UTC))
        return True

    def sibling(self, bucket: str) -> MemoryStore:
        """This region's store for another bucket; every sibling shares one
        table of buckets, so asking twice gives the same store."""
        if not self.siblings:
            self.siblings[self.bucket] = self
        if bucket not in self.siblings:
            self.siblings[bucket] = MemoryStore(self.index, bucket, self.policy,
                                                self.request_timeout, self.endpoint,
                                                self.part_checksum, siblings=self.siblings)
        return self.siblings[bucket]

    async def list_objects(self, prefix: str,
                           policy: RetryPolicy | None = None) -> list[ObjectInfo]:
        await retrying(policy or self.policy, lambda: self._request("ListObjectsV2", prefix))
        self._need_bucket("ListObjectsV2")
        return [ObjectInfo(k, len(o.data), o.modified)
                for k, o in sorted(self.objects.items()) if k.startswith(prefix)]

    async def list_uploads(self, prefix: str,
                           policy: RetryPolicy | None = None) -> list[UploadInfo]:
        await retrying(policy or self.policy, lambda: self._request("ListMultipartUploads", prefix))
        self._need_bucket("ListMultipartUploads")
        return sorted((UploadInfo(u.key, i, u.initiated) for i, u in self.uploads.items()
                       if u.key.startswith(prefix)), key=lambda u: (u.key, u.upload_id))

    async def delete_keys(self, keys: list[str], policy: RetryPolicy | None = None) -> None:
        for i in range(0, len(keys), 1000):
            await retrying(policy or self.policy, lambda: self._request("DeleteObjects", ""))
            for key in keys[i:i + 1000]:
                self.objects.pop(key, None)

