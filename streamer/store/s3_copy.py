"""Server-side copies within a region: one CopyObject up to 5 GiB, multipart above.

S3's CopyObject copies at most 5 GiB; a larger object (the ADT layout's
``.BACKUP`` of a large webroot, docs/restore.md) is copied with a multipart
upload whose parts are ``UploadPartCopy`` ranges of the source, each pinned to
the source's ETag (``x-amz-copy-source-if-match``), so a source replaced
mid-copy fails instead of splicing two versions.  A failed multipart copy is
aborted.  The copy keeps the source's Object Lock retention (mode and
retain-until date, docs/SECURITY.md): a ``.BACKUP`` is as protected as the
backup it was.  ``copy_ranges`` is the pure plan.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio

from streamer.errors import StoreFailure

if TYPE_CHECKING:  # the store calls in here; imported for annotations only
    from streamer.store.s3 import S3Store

GiB = 1024 ** 3
MiB = 1024 ** 2
COPY_OBJECT_LIMIT = 5 * GiB  # the most one CopyObject copies
COPY_PART_SIZE = 512 * MiB  # bytes per UploadPartCopy (server-side: no local memory)
MAX_PARTS = 10_000


def copy_ranges(size: int, part_size: int = COPY_PART_SIZE) -> list[tuple[int, int]]:
    """Inclusive byte ranges of the parts copying ``size`` bytes (pure): parts
    of ``part_size``, larger if 10,000 of them would not cover the object."""
    part = max(part_size, -(-size // MAX_PARTS))
    return [(start, min(size, start + part) - 1) for start in range(0, size, part)]


def _missing(failure: StoreFailure) -> bool:
    return failure.status == 404 or failure.code in ("NoSuchKey", "NotFound")


async def copy_object(store: S3Store, source_key: str, key: str) -> bool:
    """Copy ``source_key`` to ``key`` in the store's bucket; False if the source is missing."""
    try:
        head = await store._call("HeadObject", lambda: store.client.head_object(
            Bucket=store.bucket, Key=source_key))
    except StoreFailure as f:
        if _missing(f):
            return False
        raise
    size, etag = int(head.get("ContentLength", 0)), str(head.get("ETag", ""))
    source = {"Bucket": store.bucket, "Key": source_key}
    lock = source_retention(head)
    try:
        if size <= store.copy_limit:
            await store._call("CopyObject", lambda: store.client.copy_object(
                Bucket=store.bucket, Key=key, CopySource=source, CopySourceIfMatch=etag, **lock),
                limit=store.timeouts.copy())
        else:
            await _multipart_copy(store, source, key, (size, etag), lock,
                                  str(head.get("ContentType") or "application/octet-stream"))
    except StoreFailure as f:
        if _missing(f):
            return False
        raise
    return True


def source_retention(head: dict[str, Any]) -> dict[str, Any]:
    """The Object Lock parameters that give a copy the source's retention (pure)."""
    mode, until = head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
    return {"ObjectLockMode": mode, "ObjectLockRetainUntilDate": until} if mode and until else {}


async def _multipart_copy(store: S3Store, source: dict[str, str], key: str, sized: tuple[int, str],
                          lock: dict[str, Any], content_type: str) -> None:
    """One multipart upload of ``UploadPartCopy`` ranges; aborted if any part fails."""
    size, etag = sized
    created = await store._call("CreateMultipartUpload", lambda: store.client.create_multipart_upload(
        Bucket=store.bucket, Key=key, ContentType=content_type, **lock))
    upload_id = str(created["UploadId"])
    parts: list[dict[str, Any]] = []
    try:
        for number, (start, end) in enumerate(copy_ranges(size, store.copy_part_size), 1):
            answer = await store._call("UploadPartCopy", functools.partial(
                store.client.upload_part_copy, Bucket=store.bucket, Key=key, UploadId=upload_id,
                PartNumber=number, CopySource=source, CopySourceRange=f"bytes={start}-{end}",
                CopySourceIfMatch=etag), limit=store.timeouts.copy())
            parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
        await store._call("CompleteMultipartUpload", lambda: store.client.complete_multipart_upload(
            Bucket=store.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}),
            limit=store.timeouts.complete(len(parts)))
    except BaseException:
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            try:
                await store._once("AbortMultipartUpload", lambda: store.client.abort_multipart_upload(
                    Bucket=store.bucket, Key=key, UploadId=upload_id))
            except StoreFailure:
                pass  # left for `streamer cleanup`, which lists unfinished uploads
        raise
