"""One assets object from one region to the regions that need it, read once.

    small (<= SMALL): GET (If-Match the listed ETag) -> MD5 once -> PutObject per target
    large:            HEAD -> per target CreateMultipartUpload -> ranged GETs (If-Match),
                      parts_in_flight at a time -> UploadPart per target -> complete

Nothing is staged on disk: every byte held is paid for from the ``ByteBudget``
first (docs/ARCHITECTURE.md, "The assets buckets").  A copy becomes visible
only whole -- a PutObject, or a completed multipart upload; a failed upload
is aborted (under a shielded scope), and what a kill leaves is aborted by the
next run (docs/RELIABILITY.md).  Each copy carries the source's ETag and size
as ``x-amz-meta-`` metadata, since a multipart ETag differs between regions.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

import anyio

from streamer.errors import StoreFailure
from streamer.pipeline.assets_plan import META_ETAG, META_SIZE
from streamer.pipeline.copy import CopyOptions, Span, bounded, upload_part_retried
from streamer.store.base import PartBody
from streamer.store.s3_assets import AssetBucket, Listed, plain_etag

MiB = 1024 * 1024
SMALL = 16 * MiB
INLINE_MD5 = 256 * 1024  # hashed on the event loop: cheaper than a worker thread's hand-off


@dataclass
class CopyOutcome:
    """Per target region: the new copy's ETag, or why it failed; ``source_gone``:
    the object changed or vanished at the source meanwhile (the next run copies it)."""

    etags: dict[int, str] = field(default_factory=dict)
    failed: dict[int, StoreFailure] = field(default_factory=dict)
    source_gone: bool = False


def part_size(size: int) -> int:
    """Parts of 16 MiB or more, whole MiB, at most 10,000 of them."""
    need = max(SMALL, -(-size // 10_000))
    return -(-need // MiB) * MiB


def _md5(body: PartBody) -> None:
    body.md5_b64 = base64.b64encode(hashlib.md5(body).digest()).decode()


async def _digest(body: PartBody) -> None:
    if len(body) <= INLINE_MD5:
        _md5(body)
    else:
        await anyio.to_thread.run_sync(_md5, body)


def _gone(f: StoreFailure) -> bool:
    return f.status in (404, 412) or f.code in ("NoSuchKey", "PreconditionFailed")


async def copy_object(source: AssetBucket, item: Listed, targets: list[AssetBucket],
                      opts: CopyOptions) -> CopyOutcome:
    """Copy ``item`` (as listed at the source) into every target."""
    out = CopyOutcome()
    try:
        if item.size <= SMALL:
            await _copy_small(source, item, targets, opts, out)
        else:
            await _copy_large(source, item, targets, opts, out)
    except StoreFailure as f:
        if not _gone(f):
            raise
        out.source_gone = True
    return out


async def _put_all(targets: list[AssetBucket], key: str, body: PartBody, content_type: str,
                   meta: dict[str, str], opts: CopyOptions, out: CopyOutcome) -> None:
    async def one(t: AssetBucket) -> None:
        try:
            out.etags[t.index] = await bounded(t.store, "PutObject", opts.stall_timeout,
                                               t.put(key, body, content_type, meta))
        except StoreFailure as f:
            out.failed[t.index] = f
    async with anyio.create_task_group() as tg:
        for t in targets:
            tg.start_soon(one, t)


async def _copy_small(source: AssetBucket, item: Listed, targets: list[AssetBucket],
                      opts: CopyOptions, out: CopyOutcome) -> None:
    await opts.budget.acquire(item.size)
    try:
        got = await bounded(source.store, "GetObject", opts.stall_timeout,
                            source.fetch(item.key, item.etag, item.size))
        await _digest(got.body)
        meta = {**got.metadata, META_ETAG: item.etag, META_SIZE: str(item.size)}
        await _put_all(targets, item.key, got.body, got.content_type, meta, opts, out)
    finally:
        opts.budget.release(item.size)


async def _copy_large(source: AssetBucket, item: Listed, targets: list[AssetBucket],
                      opts: CopyOptions, out: CopyOutcome) -> None:
    """Long: one source read fanned out to a multipart upload per target."""
    limit = opts.stall_timeout
    head = await bounded(source.store, "HeadObject", limit, source.head(item.key))
    if head is None or head.etag != item.etag:
        out.source_gone = True
        return
    meta = {**head.metadata, META_ETAG: item.etag, META_SIZE: str(item.size)}
    uploads: dict[int, str] = {}
    for t in targets:
        try:
            uploads[t.index] = await bounded(t.store, "CreateMultipartUpload", limit,
                                             t.create_upload(item.key, head.content_type, meta))
        except StoreFailure as f:
            out.failed[t.index] = f
    live = {t.index: t for t in targets if t.index in uploads}
    etags: dict[int, dict[int, str]] = {i: {} for i in live}
    size = part_size(item.size)
    spans = [Span(n, off, min(size, item.size - off), None)
             for n, off in enumerate(range(0, item.size, size), 1)]
    slots = anyio.Semaphore(opts.parts_in_flight)

    async def part(span: Span) -> None:
        try:
            body = PartBody(await bounded(source.store, "GetObject", limit, source.store.get_range(
                item.key, span.offset, span.offset + span.size - 1, f'"{item.etag}"')))
            await anyio.to_thread.run_sync(_md5, body)
            async with anyio.create_task_group() as tg:
                for i in list(live):
                    tg.start_soon(one_target, i, span, body)
        finally:
            opts.budget.release(span.size)
            slots.release()

    async def one_target(i: int, span: Span, body: PartBody) -> None:
        try:
            etags[i][span.number] = await upload_part_retried(live[i].store, item.key, uploads[i],
                                                              span, body, opts)
        except StoreFailure as f:
            out.failed[i] = f
            live.pop(i, None)

    try:
        async with anyio.create_task_group() as tg:
            for span in spans:
                await slots.acquire()
                await opts.budget.acquire(span.size)
                tg.start_soon(part, span)
        for i, t in list(live.items()):
            parts: list[dict[str, object]] = [{"PartNumber": n, "ETag": e}
                                              for n, e in sorted(etags[i].items())]
            try:
                out.etags[i] = plain_etag(await bounded(
                    t.store, "CompleteMultipartUpload", limit,
                    t.store.complete_multipart(item.key, uploads[i], parts)))
                uploads.pop(i)
            except StoreFailure as f:
                out.failed[i] = f
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(limit):
            for i, upload_id in uploads.items():
                try:
                    await next(t for t in targets if t.index == i).store.abort_multipart(
                        item.key, upload_id)
                except StoreFailure:
                    pass  # left for the next run's cleanup
