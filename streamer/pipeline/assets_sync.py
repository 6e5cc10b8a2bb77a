"""One assets bucket from the source region to every other region, incrementally.

    source listing ─┐
    region 2 listing ├─ merged by key, a page at a time ─▶ decide (assets_plan)
    region n listing │     ─▶ copies (assets_copy), objects_in_flight at a time
    previous index ──┘     ─▶ index lines, in key order (a bounded queue waits on copies)

Unchanged objects cost only their share of the listings.  Memory: one
listing page per region, the copies' bytes (paid from the budget), and at
most ``QUEUE`` index entries waiting for a copy ahead of them
(docs/ARCHITECTURE.md, "The assets buckets").  A region that fails (a
listing, a copy, a delete) is dropped from the rest of the run, as a backup
drops it (docs/RELIABILITY.md); the source failing fails the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream, TaskGroup

from streamer.errors import ListingOrderError, StoreFailure, first_leaf
from streamer.pipeline.assets_copy import CopyOutcome, copy_object
from streamer.pipeline.assets_plan import ORDERS, Frame, IndexEntry, Verdict, copy_matches, decide
from streamer.pipeline.copy import CopyOptions, bounded
from streamer.store.s3_assets import AssetBucket, Listed

QUEUE = 4096
# Copies at once: small objects are bound by each request's round trip and
# CPU, not by bytes, so many run at once; their bytes still come from the
# budget first (docs/ARCHITECTURE.md, "The assets buckets").
OBJECTS_IN_FLIGHT = 64
SAMPLE = 20  # deleted objects named in the report


@dataclass
class AssetsTally:
    """What one run did, over every bucket."""

    objects: int = 0  # at the source
    copies: int = 0  # objects written into a region
    copied_bytes: int = 0
    checked: int = 0  # copies whose metadata was read to compare them
    kept_deleted: int = 0  # deleted at the source, still kept in the other regions
    deleted_sample: list[tuple[str, str, str]] = field(default_factory=list)  # bucket, key, since
    purged: int = 0
    changed_meanwhile: int = 0  # changed at the source during the run: the next run copies them
    dropped: dict[int, str] = field(default_factory=dict)  # region -> why


async def _flat(pages: AsyncIterator[list[Listed]]) -> AsyncIterator[Listed]:
    async for page in pages:
        for item in page:
            yield item


async def _dropping(region: int, items: AsyncIterator[Listed],
                    dropped: dict[int, str]) -> AsyncIterator[Listed]:
    """A target's listing; a failure drops the region instead of the run."""
    try:
        async for item in items:
            yield item
    except StoreFailure as f:
        dropped[region] = str(f)


async def merged(source: AsyncIterator[Listed], targets: Mapping[int, AsyncIterator[Listed]],
                 previous: Iterator[IndexEntry], order: str = "bytes") -> AsyncIterator[
                     tuple[str, Listed | None, dict[int, Listed], IndexEntry | None]]:
    """Every key of any input, in ``order`` (assets_plan.ORDERS), with what each
    input holds for it; an input out of that order raises ``ListingOrderError``
    (``where``: "source", "previous index" or the region's number)."""
    rank = ORDERS[order]
    heads: dict[object, Listed | IndexEntry | None] = {}
    last: dict[object, Any] = {}
    streams: dict[object, AsyncIterator[Listed]] = {"s": source}
    streams.update(dict(targets.items()))

    async def advance(name: object) -> None:
        head = next(previous, None) if name == "p" else await anext(streams[name], None)
        if head is not None:
            r = rank(head.key)
            if name in last and r <= last[name]:
                where = {"s": "source", "p": "previous index"}.get(str(name), str(name))
                raise ListingOrderError(where, head.key)
            last[name] = r
        heads[name] = head

    for name in [*streams, "p"]:
        await advance(name)
    while any(h is not None for h in heads.values()):
        key = min((h.key for h in heads.values() if h is not None), key=rank)
        got = {n: h for n, h in heads.items() if h is not None and h.key == key}
        for name in got:
            await advance(name)
        src = got.get("s")
        prev = got.get("p")
        yield (key, src if isinstance(src, Listed) else None,
               {n: h for n, h in got.items() if isinstance(n, int) and isinstance(h, Listed)},
               prev if isinstance(prev, IndexEntry) else None)


@dataclass
class _Pending:
    verdict: Verdict
    source: Listed | None
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: CopyOutcome | None = None
    checked: dict[int, str] = field(default_factory=dict)  # region -> ETag whose metadata matched


@dataclass
class BucketSync:
    source: AssetBucket
    targets: dict[int, AssetBucket]
    opts: CopyOptions
    now: datetime
    keep_deleted: float
    tally: AssetsTally
    objects_in_flight: int = OBJECTS_IN_FLIGHT

    def live(self) -> tuple[int, ...]:
        return tuple(i for i in self.targets if i not in self.tally.dropped)

    def drop(self, region: int, why: str) -> None:
        self.tally.dropped.setdefault(region, why)
        self.targets[region].store.sever()

    async def run(self, previous: Iterator[IndexEntry], writer: Frame, order: str) -> None:
        """The merge loop, its copies, its purges and the ordered index writer.
        Purges wait for the whole merge: a listing found out of order mid-way
        (``ListingOrderError``) has then deleted nothing."""
        for i in self.live():
            try:
                await bounded(self.targets[i].store, "CreateBucket", self.opts.stall_timeout,
                              self.targets[i].store.ensure_bucket())
            except StoreFailure as f:
                self.drop(i, str(f))
        send, receive = anyio.create_memory_object_stream[_Pending](QUEUE)
        slots = anyio.Semaphore(self.objects_in_flight)
        purges: dict[int, list[str]] = {}
        listings = {i: _dropping(i, _flat(self.targets[i].pages()), self.tally.dropped)
                    for i in self.live()}
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write, receive, writer)
                await self._feed(tg, send, slots, listings, previous, order, purges)
        except BaseExceptionGroup as group:
            leaf = first_leaf(group)
            raise (leaf if isinstance(leaf, Exception) else group) from None
        for r, keys in purges.items():
            for i in range(0, len(keys), 1000):
                await self._purge(r, keys[i:i + 1000])

    async def _feed(self, tg: TaskGroup, send: ObjectSendStream[_Pending], slots: anyio.Semaphore,
                    listings: dict[int, AsyncIterator[Listed]], previous: Iterator[IndexEntry],
                    order: str, purges: dict[int, list[str]]) -> None:
        """Every key's verdict: its copies started, its index line queued in order."""
        async with send:
            async for key, src, held, prev in merged(_flat(self.source.pages()), listings,
                                                     previous, order):
                verdict = decide(1, self.source.bucket, key, src, held, self.live(), prev,
                                 self.now, self.keep_deleted)
                for r in verdict.purge:
                    purges.setdefault(r, []).append(key)
                if verdict.entry is None:
                    continue
                pending = _Pending(verdict, src)
                if src is not None and (verdict.copy_to or verdict.check):
                    await slots.acquire()
                    tg.start_soon(self._work, pending, slots)
                else:
                    pending.done.set()
                await send.send(pending)

    async def _purge(self, region: int, keys: list[str]) -> None:
        if region in self.tally.dropped:
            return
        store = self.targets[region].store
        try:
            await bounded(store, "DeleteObjects", self.opts.stall_timeout, store.delete_keys(keys))
            self.tally.purged += len(keys)
        except StoreFailure as f:
            self.drop(region, str(f))

    async def _work(self, pending: _Pending, slots: anyio.Semaphore) -> None:
        try:
            src = pending.source
            assert src is not None
            copy_to = list(pending.verdict.copy_to)
            for r in pending.verdict.check:
                if await self._check(r, src, pending):
                    continue
                copy_to.append(r)
            targets = [self.targets[r] for r in copy_to if r not in self.tally.dropped]
            if targets:
                pending.outcome = await copy_object(self.source, src, targets, self.opts)
        finally:
            pending.done.set()
            slots.release()

    async def _check(self, region: int, src: Listed, pending: _Pending) -> bool:
        """Whether a region's copy carries the source's ETag in its metadata."""
        target = self.targets[region]
        self.tally.checked += 1
        try:
            head = await bounded(target.store, "HeadObject", self.opts.stall_timeout,
                                 target.head(src.key))
        except StoreFailure as f:
            self.drop(region, str(f))
            return True
        if head is not None and copy_matches(head.metadata, src):
            pending.checked[region] = head.etag
            return True
        return False

    async def _write(self, receive: ObjectReceiveStream[_Pending], writer: Frame) -> None:
        """Index lines in key order, each once its copies are done."""
        async with receive:
            async for pending in receive:
                await pending.done.wait()
                entry = pending.verdict.entry
                assert entry is not None
                regions = {**entry.regions, **pending.checked}
                out = pending.outcome
                if out is not None:
                    self.tally.changed_meanwhile += int(out.source_gone)
                    self.tally.copies += len(out.etags)
                    self.tally.copied_bytes += entry.size * len(out.etags)
                    regions.update(out.etags)
                    for r, f in out.failed.items():
                        self.drop(r, str(f))
                if entry.deleted_since:
                    self.tally.kept_deleted += 1
                    if len(self.tally.deleted_sample) < SAMPLE:
                        self.tally.deleted_sample.append((entry.bucket, entry.key,
                                                          entry.deleted_since))
                else:
                    self.tally.objects += 1
                regions = {r: e for r, e in regions.items() if r == 1 or r not in self.tally.dropped}
                writer.add(IndexEntry(entry.bucket, entry.key, entry.size, entry.etag, regions,
                                      entry.deleted_since))
