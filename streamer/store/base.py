"""What every object store speaks: the ``ObjectStore`` protocol and the values it
returns (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Protocol

from streamer.store.retry import RetryPolicy


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: key, size in bytes, last modification (UTC, if known)."""

    key: str
    size: int
    modified: datetime | None = None


@dataclass(frozen=True)
class UploadInfo:
    """One unfinished multipart upload and when it was initiated (UTC, if known)."""

    key: str
    upload_id: str
    initiated: datetime | None = None


class PartBody(bytearray):
    """A part's bytes.  botocore passes a bytearray through untouched, so the
    signer (store/s3.py) can read the precomputed ``sha256_hex`` instead of
    hashing the body again for every region.  ``crcs``: the part's CRC
    digests by algorithm (base64, as x-amz-checksum-* carries them), set
    when it is sealed; a region sends the one it verifies (``part_checksum``)."""

    sha256_hex: str = ""
    md5_b64: str = ""
    crcs: Mapping[str, str] = MappingProxyType({})

    def header_for(self, algorithm: str) -> dict[str, str]:
        """The checksum a request for this part carries for ``algorithm``
        (``ObjectStore.part_checksum``): its Content-MD5 or CRC, if sealed."""
        value = self.md5_b64 if algorithm == "md5" else self.crcs.get(algorithm, "")
        return {algorithm: value} if value else {}


@dataclass(frozen=True)
class Probe:
    """What a store's cheapest authenticated request tells: the server's clock
    (from its ``Date`` header, if it sent one) and the buckets it lists."""

    server_time: datetime | None
    buckets: frozenset[str]


@dataclass(frozen=True)
class Retention:
    """An S3 Object Lock retain-until date (README, docs/SECURITY.md): until
    ``until`` (UTC) no key can delete or overwrite that version of the object;
    ``mode`` is ``GOVERNANCE`` (a holder of s3:BypassGovernanceRetention may)
    or ``COMPLIANCE`` (nobody may)."""

    mode: str
    until: datetime


@dataclass(frozen=True)
class BucketLock:
    """What a bucket says about Object Lock: ``enabled``, and the default
    retention rule it applies to every new object (``""``: none)."""

    enabled: bool
    default_rule: str = ""


# Digests a caller may attach to a put or a part, by algorithm name, each the
# base64 of the digest's bytes as S3 headers carry it: "md5" (Content-MD5),
# "crc32", "crc32c", "crc64nvme", "sha1", "sha256" (x-amz-checksum-*).
Checksums = Mapping[str, str]
CHECKSUM_ALGORITHMS = ("md5", "crc32", "crc32c", "crc64nvme", "sha1", "sha256")


class ObjectStore(Protocol):
    """One region's bucket, with exactly the operations streamer uses.

    Every failure is a ``StoreFailure`` (``status`` 404 for a missing key,
    412 with code ``PreconditionFailed`` for a failed condition).  Operations
    taking ``policy`` retry transient failures by it (default: the store's
    own ``policy``); ``upload_part`` tries once, since its caller owns the
    buffer and the part's retries.  Implementations: ``S3Store``
    (store/s3.py), ``MemoryStore`` (store/memory.py)."""

    @property
    def index(self) -> int:
        """The region's 1-based number in the configuration."""

    @property
    def label(self) -> str:
        """``region N (host)``: how messages name the region (never a key)."""

    @property
    def endpoint(self) -> str: ...

    @property
    def bucket(self) -> str: ...

    @property
    def policy(self) -> RetryPolicy: ...

    @property
    def request_timeout(self) -> float: ...

    # The digest a part request carries: "md5" (Content-MD5), "crc32c"
    # (x-amz-checksum-crc32c), "" none of these (sha256 and crc32 modes);
    # under STREAMER_CHECKSUM=auto, what the region verifies (store/negotiate.py).
    part_checksum: str

    async def probe(self, policy: RetryPolicy | None = None) -> Probe: ...

    def sever(self) -> None:
        """Abort every open connection at once (the region is being dropped): unsent
        part bytes are discarded, so their buffers go back to the budget."""

    async def ensure_bucket(self, object_lock: bool = False) -> None:
        """Create the bucket unless it exists (idempotent); ``object_lock``:
        a new bucket is created with Object Lock enabled."""

    async def bucket_lock(self, policy: RetryPolicy | None = None) -> BucketLock:
        """Whether the bucket has Object Lock enabled (GetObjectLockConfiguration)."""

    async def create_multipart(self, key: str, content_type: str,
                               retention: Retention | None = None) -> str:
        """A new multipart upload's id; ``retention`` is set on the object it completes."""

    async def upload_part(self, key: str, upload_id: str, number: int, body: PartBody,
                          checksums: Checksums | None = None) -> str:
        """One attempt; the part's ETag.  The body's digest for ``part_checksum``
        and ``checksums`` travel as headers the server may verify."""

    async def complete_multipart(self, key: str, upload_id: str,
                                 parts: list[dict[str, object]]) -> str: ...

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort an upload (an upload already gone is fine)."""

    async def put_object(self, key: str, data: bytes, content_type: str = "application/json",
                         if_none_match: bool = False, if_match: str | None = None,
                         policy: RetryPolicy | None = None,
                         checksums: Checksums | None = None,
                         retention: Retention | None = None) -> str:
        """PutObject, the new ETag; ``if_none_match`` creates only (412 if the
        key exists), ``if_match`` overwrites only that ETag (412 if it changed);
        ``retention``: the object's Object Lock retain-until date."""

    async def get_with_etag(self, key: str,
                            policy: RetryPolicy | None = None) -> tuple[bytes, str] | None:
        """A small object's bytes and ETag, or None if it does not exist."""

    async def get_range(self, key: str, start: int, end: int,
                        if_match: str | None = None) -> bytearray:
        """Bytes ``start..end`` (inclusive); ``if_match`` pins the version (412)."""

    async def head_object(self, key: str,
                          policy: RetryPolicy | None = None) -> tuple[int, str] | None:
        """(size, ETag), or None if the object does not exist."""

    async def retention_of(self, key: str,
                           policy: RetryPolicy | None = None) -> Retention | None:
        """The object's Object Lock retention, or None (none, or no object)."""

    async def delete_object(self, key: str, if_match: str | None = None,
                            policy: RetryPolicy | None = None) -> None:
        """Delete one object (absent is fine); ``if_match``: only that ETag (412)."""

    async def copy_object(self, source_key: str, key: str) -> bool:
        """Server-side copy within the bucket; False if the source does not exist.
        Objects above 5 GiB are copied in parts (UploadPartCopy)."""

    def sibling(self, bucket: str) -> ObjectStore:
        """This region's store for another bucket (same connection and policy)."""

    async def list_objects(self, prefix: str,
                           policy: RetryPolicy | None = None) -> list[ObjectInfo]: ...

    async def list_uploads(self, prefix: str,
                           policy: RetryPolicy | None = None) -> list[UploadInfo]: ...

    async def delete_keys(self, keys: list[str], policy: RetryPolicy | None = None) -> None:
        """Delete many objects (absent ones are fine)."""
