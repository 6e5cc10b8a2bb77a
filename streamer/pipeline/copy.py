"""Region to region: one committed run copied, streamed through the memory budget.

    source --GET part n (k in flight, If-Match: etag)--> part digest checked
           --> target: UploadPart n (same boundaries as the manifest's parts)
           --> whole-stream SHA-256, in part order --> complete --> manifest last

Nothing is staged on disk.  Each part is paid for from the ``ByteBudget``
before it is fetched (twice its size until its bytes sit in the part buffer,
once after), so ``parts_in_flight`` parts at most are held and the copy never
holds more than the budget.  A part whose bytes do not match the manifest's
part digest, or a stream whose SHA-256 does not match, fails the copy: its
upload is aborted and nothing is committed (docs/RELIABILITY.md, "A region
that missed a run").  Manifests older than per-part digests are cut into parts
of their recorded part size and checked end to end only.  Every request is
bounded by the stall timeout.  The manifest written is the source's, byte for
byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio

from streamer import codec, digests
from streamer.errors import IntegrityError, StoreFailure, StreamerError, first_leaf
from streamer.layout.catalog import StoredArtifact, StoredManifest
from streamer.manifest import end_to_end
from streamer.pipeline.budget import ByteBudget
from streamer.settings.config import ChecksumMode
from streamer.store.base import ObjectStore, PartBody, Retention
from streamer.store.retry import RetryPolicy

T = TypeVar("T")
MiB = 1024 * 1024


@dataclass(frozen=True)
class Span:
    """One part: its number, where it lies in the object, and its recorded digest."""

    number: int
    offset: int
    size: int
    digest: tuple[str, str] | None  # (algorithm, hex); None: an older manifest


def part_spans(art: StoredArtifact, raw: Mapping[str, Any]) -> list[Span]:
    """The parts to copy an artifact in (pure): the manifest's own part
    boundaries, or (older manifests) its recorded part size."""
    if art.parts is not None:
        return [Span(i, offset, size, (art.parts.algorithm, digest))
                for i, (offset, size, digest) in enumerate(art.parts.spans(), 1)]
    part_size = max(5 * MiB, int(raw.get("part_size") or 8 * MiB))
    spans = [Span(i, offset, min(part_size, art.stored_size - offset), None)
             for i, offset in enumerate(range(0, art.stored_size, part_size), 1)]
    return spans or [Span(1, 0, 0, None)]


@dataclass(frozen=True)
class CopyOptions:
    budget: ByteBudget
    parts_in_flight: int
    stall_timeout: float
    checksum: ChecksumMode  # what the target's part requests carry (STREAMER_CHECKSUM)
    part_policy: RetryPolicy  # retries of one part upload


async def bounded(client: ObjectStore, what: str, limit: float, call: Awaitable[T]) -> T:
    """``call``, or a transient ``StoreFailure`` of ``client`` after ``limit`` seconds."""
    try:
        with anyio.fail_after(limit):
            return await call
    except TimeoutError:
        raise StoreFailure(client.label, what, f"no progress for {limit:.0f} s (stall timeout)",
                           True) from None


def _content_type(art: StoredArtifact) -> str:
    kind = art.compression if art.compression in ("zstd", "gzip") else "none"
    return codec.content_type(kind, art.name)  # type: ignore[arg-type]


def _prepare(body: PartBody, span: Span, checksum: ChecksumMode, where: str, key: str,
             needed: str = "") -> None:
    """Check a part against its recorded digest and give it the digest its
    upload carries (worker thread: hashlib and crc32c release the GIL):
    ``needed``, the target's ``part_checksum`` (STREAMER_CHECKSUM=auto), is
    computed only if it is not the recorded one."""
    known: dict[str, bytes] = {}
    if span.digest is not None:
        algorithm, expected = span.digest
        actual = digests.hexdigest(algorithm, [body])
        if actual != expected:
            raise IntegrityError(f"{where}: {key}: part {span.number} does not match the "
                                 f"manifest's {algorithm} ({actual[:12]}... != {expected[:12]}...)",
                                 "the source copy is damaged; another region is tried")
        known[algorithm] = bytes.fromhex(actual)
    want = {"md5"} if checksum == "md5" else {needed} - {""} if checksum == "auto" else set()
    known.update(digests.part_digests(body, want - known.keys()))
    if "md5" in want:
        body.md5_b64 = digests.b64(known["md5"])
    body.crcs = {a: digests.b64(d) for a, d in known.items() if a in digests.CRCS}
    if checksum == "sha256":
        body.sha256_hex = hashlib.sha256(body).hexdigest()


PartSink = Callable[[Span, PartBody], Awaitable[None]]


async def stream_parts(source: ObjectStore, key: str, art: StoredArtifact, spans: list[Span],
                       opts: CopyOptions, sink: PartSink | None, needed: str = "") -> None:
    """Read every part of ``key`` from ``source`` (pinned to one ETag), check
    it, hand it to ``sink`` (an upload, or nothing: a verifying read), and
    check the whole stream's size and SHA-256 (or, for an auto-mode manifest,
    the composite of its part digests: manifest.end_to_end) in part order;
    ``needed``: the checksum the sink's parts carry (``_prepare``)."""
    head = await bounded(source, "HeadObject", opts.stall_timeout, source.head_object(key))
    if head is None:
        raise IntegrityError(f"{source.label}: {key} is missing", "another region is tried")
    if head[0] != art.stored_size:
        raise IntegrityError(f"{source.label}: {key} holds {head[0]} bytes, the manifest says "
                             f"{art.stored_size}", "another region is tried")
    whole = end_to_end(art.parts, art.composite)
    turns = [anyio.Event() for _ in range(len(spans) + 1)]
    turns[0].set()
    slots = anyio.Semaphore(opts.parts_in_flight)
    budget = opts.budget

    async def one(i: int, span: Span, reserved: int) -> None:
        try:
            data = bytearray()
            if span.size:
                data = await bounded(source, "GetObject", opts.stall_timeout, source.get_range(
                    key, span.offset, span.offset + span.size - 1, head[1] or None))
            body = PartBody(data)
            del data
            budget.release(reserved - span.size)
            reserved = span.size
            await anyio.to_thread.run_sync(_prepare, body, span, opts.checksum, source.label, key,
                                           needed)
            if sink is not None:
                await sink(span, body)
            await turns[i].wait()
            await anyio.to_thread.run_sync(whole.update, body)
            turns[i + 1].set()
        finally:
            budget.release(reserved)
            slots.release()

    try:
        async with anyio.create_task_group() as tg:
            for i, span in enumerate(spans):
                await slots.acquire()
                reserved = min(2 * span.size, budget.limit)
                if span.size > budget.limit:
                    raise StreamerError(f"{key}: a part of {span.size / MiB:.0f} MiB does not fit "
                                        "the memory budget", "raise STREAMER_MEMORY_BUDGET")
                await budget.acquire(reserved)
                tg.start_soon(one, i, span, reserved)
    except BaseExceptionGroup as group:
        leaf = first_leaf(group)
        raise (leaf if isinstance(leaf, Exception) else group) from None
    digest = whole.hexdigest()
    if digest != art.sha256:
        what = "parts' SHA-256" if art.composite else "SHA-256"
        raise IntegrityError(f"{source.label}: {key}: {what} {digest[:16]}... does not match the "
                             f"manifest's {art.sha256[:16]}...", "the source copy is damaged")


async def upload_part_retried(target: ObjectStore, key: str, upload_id: str, span: Span, body: PartBody,
                       opts: CopyOptions) -> str:
    """One part into the target, retried from the same buffer by the part policy."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await bounded(target, "UploadPart", opts.stall_timeout,
                                 target.upload_part(key, upload_id, span.number, body))
        except StoreFailure as f:
            if not f.transient or f.status in (403, 404) or attempt >= opts.part_policy.max_attempts:
                raise
        await anyio.sleep(opts.part_policy.delay(attempt))


async def copy_artifact(source: ObjectStore, target: ObjectStore, key: str, art: StoredArtifact,
                        spans: list[Span], opts: CopyOptions,
                        retention: Retention | None = None) -> None:
    """Copy one artifact; its upload in the target is completed only if every
    part and the whole stream matched, and aborted otherwise."""
    limit = opts.stall_timeout
    upload_id = await bounded(target, "CreateMultipartUpload", limit,
                              target.create_multipart(key, _content_type(art), retention))
    etags: dict[int, str] = {}

    async def sink(span: Span, body: PartBody) -> None:
        etags[span.number] = await upload_part_retried(target, key, upload_id, span, body, opts)

    try:
        await stream_parts(source, key, art, spans, opts, sink, target.part_checksum)
        parts: list[dict[str, object]] = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
        await bounded(target, "CompleteMultipartUpload", limit,
                      target.complete_multipart(key, upload_id, parts))
    except BaseException:
        with anyio.CancelScope(shield=True), anyio.move_on_after(limit):
            try:
                await target.abort_multipart(key, upload_id)
            except StoreFailure:
                pass  # left for `streamer cleanup`
        raise


async def copy_run(source: ObjectStore, target: ObjectStore, manifest: StoredManifest,
                   manifest_key: str, manifest_bytes: bytes, opts: CopyOptions) -> int:
    """Every artifact of a run from ``source`` to ``target``, then the
    manifest (the source's bytes) last; returns the bytes copied.  A run under
    Object Lock in the source is copied under the same retention (mode and
    retain-until date) while that date is still ahead (docs/SECURITY.md)."""
    retention = await bounded(source, "HeadObject", opts.stall_timeout,
                              source.retention_of(manifest_key))
    if retention is not None and retention.until <= datetime.now(UTC):
        retention = None
    copied = 0
    for art in manifest.artifacts.values():
        key = manifest.key_of(art)
        raw = dict(manifest.raw.get("artifacts", {})).get(art.name, {})
        await copy_artifact(source, target, key, art, part_spans(art, raw), opts, retention)
        copied += art.stored_size
    await bounded(target, "PutObject", opts.stall_timeout,
                  target.put_object(manifest_key, manifest_bytes, retention=retention))
    return copied


async def read_run(source: ObjectStore, manifest: StoredManifest, opts: CopyOptions) -> int:
    """Read every artifact of a run and check every part and hash (``heal --verify``)."""
    read = 0
    for art in manifest.artifacts.values():
        raw = dict(manifest.raw.get("artifacts", {})).get(art.name, {})
        await stream_parts(source, manifest.key_of(art), art, part_spans(art, raw), opts, None)
        read += art.stored_size
    return read
