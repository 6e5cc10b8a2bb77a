"""What the assets copy needs of an S3 bucket beyond ``ObjectStore``: listings
page by page with ETags, objects with their content type and user metadata.

``AssetBucket`` wraps one region's ``S3Store`` (its client, retries and
timeouts) on one assets bucket; docs/ARCHITECTURE.md, "The assets buckets".
Every library exception is translated by the store's own ``_call``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from streamer.errors import StoreFailure
from streamer.store.base import PartBody
from streamer.store.s3 import S3Store
from streamer.store.s3_lean import LeanObjects, ascii_only


def plain_etag(etag: str) -> str:
    """An ETag without its quotes."""
    return etag.strip().strip('"')


@dataclass(frozen=True)
class Listed:
    """One object of a listing: key, size and (unquoted) ETag."""

    key: str
    size: int
    etag: str


@dataclass(frozen=True)
class Fetched:
    """A whole small object: its bytes, ETag, content type and user metadata."""

    body: PartBody
    etag: str
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class AssetBucket:
    """One region's assets bucket."""

    store: S3Store
    lean: LeanObjects | None = None  # whole objects without aiobotocore (store/s3_lean.py)

    @property
    def index(self) -> int:
        return self.store.index

    @property
    def label(self) -> str:
        return self.store.label

    @property
    def bucket(self) -> str:
        return self.store.bucket

    async def pages(self, page_size: int = 1000) -> AsyncIterator[list[Listed]]:
        """The bucket's objects in key order, one page at a time (nothing held
        beyond the page)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "MaxKeys": page_size}
        client = self.store.client
        while True:
            page = await self.store._call("ListObjectsV2",
                                          functools.partial(client.list_objects_v2, **kwargs))
            yield [Listed(str(o["Key"]), int(o.get("Size", 0)), plain_etag(str(o.get("ETag", ""))))
                   for o in page.get("Contents", []) or []]
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page.get("NextContinuationToken", "")

    async def exists(self) -> bool:
        try:
            await self.store._call("HeadBucket", lambda: self.store.client.head_bucket(
                Bucket=self.bucket), self.store.policy.tries(2))
        except StoreFailure as f:
            if f.status == 404 or f.code in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise
        return True

    async def fetch(self, key: str, if_match: str, size: int) -> Fetched:
        """A whole object, pinned to ``if_match`` (412 if it changed)."""
        if self.lean is not None:
            lean = self.lean

            async def quick() -> Fetched:
                return Fetched(*await lean.get(key, if_match))
            return await self.store._call("GetObject", quick, limit=self.store.timeouts.data(size))

        async def go() -> Fetched:
            response = await self.store.client.get_object(Bucket=self.bucket, Key=key,
                                                          IfMatch=f'"{if_match}"')
            async with response["Body"] as stream:
                body = PartBody(await stream.read())
            return Fetched(body, plain_etag(str(response.get("ETag", ""))),
                           str(response.get("ContentType") or "binary/octet-stream"),
                           dict(response.get("Metadata") or {}))
        return await self.store._call("GetObject", go, limit=self.store.timeouts.data(size))

    async def head(self, key: str) -> Fetched | None:
        """An object's ETag, content type and metadata (no body), or None."""
        try:
            r = await self.store._call("HeadObject", lambda: self.store.client.head_object(
                Bucket=self.bucket, Key=key))
        except StoreFailure as f:
            if f.status == 404:
                return None
            raise
        return Fetched(PartBody(), plain_etag(str(r.get("ETag", ""))),
                       str(r.get("ContentType") or "binary/octet-stream"), dict(r.get("Metadata") or {}))

    async def put(self, key: str, body: PartBody, content_type: str,
                  metadata: Mapping[str, str]) -> str:
        """One PutObject with Content-MD5 (``body.md5_b64``) and user metadata."""
        if self.lean is not None and ascii_only(metadata):
            lean = self.lean
            return await self.store._call("PutObject", lambda: lean.put(key, body, content_type,
                                                                        metadata),
                                          limit=self.store.timeouts.data(len(body)))
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": body,
                                  "ContentType": content_type, "Metadata": dict(metadata)}
        if body.md5_b64:
            kwargs["ContentMD5"] = body.md5_b64
        r = await self.store._call("PutObject", lambda: self.store.client.put_object(**kwargs),
                                   limit=self.store.timeouts.data(len(body)))
        return plain_etag(str(r.get("ETag", "")))

    async def create_upload(self, key: str, content_type: str, metadata: Mapping[str, str]) -> str:
        r = await self.store._call("CreateMultipartUpload", lambda: (
            self.store.client.create_multipart_upload(Bucket=self.bucket, Key=key,
                                                      ContentType=content_type,
                                                      Metadata=dict(metadata))))
        return str(r["UploadId"])
