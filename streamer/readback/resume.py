"""Read an artifact part by part, each part checked, resuming in the next region.

    parts (manifest) --> ranges (<= range size, a large part split) --> one
    region's ranged GETs, several parts in flight --> a part whole? its MD5 or
    SHA-256 against the manifest (worker thread) --> parts handed downstream in
    order, a part only once it matched

A region that fails a request (after its retries), times out, or returns a
part whose digest does not match is given up: its other requests in flight
are cancelled, and every part not yet handed downstream is fetched from the
next region holding the same run (``NextSource``), from the first part not yet
delivered.  Parts already checked are kept, whichever region they came from;
nothing already handed downstream is fetched or sent again, so ``tar`` or the
database client read one unbroken stream (docs/ARCHITECTURE.md, "A byte's way
back").  The consumer still checks the SHA-256 of every byte end to end
(``download.HashingReader``).

Memory: the ranges fetched or held at once are bounded by ``slots_for``:
``in_flight`` ranges, or the largest part's ranges if that is more (a part is
held whole until its digest is checked).  ``Tally`` records what was read:
every range that arrived counts in ``downloaded``, kept or not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from streamer.errors import IntegrityError, RegionError, StoreFailure, first_leaf
from streamer.manifest import PartDigests
from streamer.readback.download import Chunk, HashingReader, ObjectRef, stream_with
from streamer.readback.parts import PartSpan, check_part, plan_parts, slots_for
from streamer.store.base import ObjectStore

T = TypeVar("T")
REGION_FAILURES = (StoreFailure, IntegrityError, RegionError)


@dataclass(eq=False)
class Source:
    """One region's copy of the artifact (its own ETag in ``ref``)."""

    client: ObjectStore
    ref: ObjectRef
    given_up: bool = False
    scopes: set[anyio.CancelScope] = field(default_factory=set)

    @property
    def label(self) -> str:
        return self.client.label


StreamerErrorLike = StoreFailure | IntegrityError | RegionError


@dataclass(frozen=True)
class Stop:
    """A region given up mid-read: ``at`` is the first byte not yet delivered."""

    region: str
    at: int
    error: StreamerErrorLike

NextSource = Callable[[], Awaitable[Source | None]]  # the next region's copy; None: no region left
OnStop = Callable[[Stop], None]


@dataclass
class Tally:
    """What one read did: bytes that arrived vs bytes handed downstream."""

    downloaded: int = 0  # every range that arrived, kept or discarded
    delivered: int = 0  # handed downstream, in order
    regions: list[str] = field(default_factory=list)  # regions that delivered parts, in order
    stops: list[Stop] = field(default_factory=list)

    def count(self, size: int) -> None:
        self.downloaded += size


class PartFetcher:
    """Fetch every part of one artifact, checked, into ``send`` in order."""

    def __init__(self, first: Source, next_source: NextSource, parts: PartDigests,
                 range_size: int, in_flight: int, tally: Tally, on_stop: OnStop | None) -> None:
        self.plan = plan_parts(parts, range_size)
        self.algorithm = parts.algorithm
        self.current = first
        self.next_source = next_source
        self.tally = tally
        self.on_stop = on_stop
        self.slots = anyio.Semaphore(slots_for(self.plan, in_flight))
        self.held: dict[int, tuple[str, list[Chunk]]] = {}  # part -> (its region, its bytes)
        self.ready = [anyio.Event() for _ in self.plan]
        self.switching = anyio.Lock()
        self.exhausted = False

    async def run(self, send: MemoryObjectSendStream[Chunk]) -> None:
        """Hand the parts downstream in order, each once it matched its digest."""
        async with send, anyio.create_task_group() as tg:
            tg.start_soon(self._schedule, tg)
            for i, span in enumerate(self.plan):
                await self.ready[i].wait()
                region, chunks = self.held.pop(i)
                if region not in self.tally.regions[-1:]:
                    self.tally.regions.append(region)
                while chunks:
                    chunk = chunks.pop(0)
                    await send.send(chunk)  # a rendezvous: returns once the consumer took it
                    del chunk
                    self.slots.release()
                self.tally.delivered = span.end

    async def _schedule(self, tg: anyio.abc.TaskGroup) -> None:
        for i, span in enumerate(self.plan):
            for _ in span.ranges:
                await self.slots.acquire()  # released as each range is handed over
            tg.start_soon(self._fetch_part, i, span)

    async def _fetch_part(self, i: int, span: PartSpan) -> None:
        """Fetch and check one part, from the current region; again from the next
        one if that region is given up meanwhile or fails on this part."""
        while True:
            source = self.current
            failure: StreamerErrorLike | None = None
            chunks: list[Chunk] | None = None
            with anyio.CancelScope() as scope:
                source.scopes.add(scope)
                try:
                    chunks = await self._get_ranges(source, span)
                    await anyio.to_thread.run_sync(check_part, span, self.algorithm, chunks,
                                                   source.label, source.ref.key)
                except REGION_FAILURES as e:
                    failure, chunks = e, None
                finally:
                    source.scopes.discard(scope)
            if failure is not None:
                await self._give_up(source, failure)
            elif chunks is not None and not scope.cancelled_caught:
                self.held[i] = (source.label, chunks)
                self.ready[i].set()
                return
            # else: the region was given up while this part was in flight: refetch

    async def _get_ranges(self, source: Source, span: PartSpan) -> list[Chunk]:
        """The part's ranges from one region, concurrently, in order."""
        got: list[Chunk | None] = [None] * len(span.ranges)
        errors: list[BaseException] = []

        async def one(k: int, start: int, end: int) -> None:
            try:
                got[k] = data = await source.client.get_range(source.ref.key, start, end,
                                                             source.ref.etag or None)
                self.tally.count(len(data))
            except Exception as e:  # raised below, unwrapped
                errors.append(e)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for k, (start, end) in enumerate(span.ranges):
                tg.start_soon(one, k, start, end)
        if errors:
            raise first_leaf(errors[0])
        return [c for c in got if c is not None]

    async def _give_up(self, source: Source, error: StreamerErrorLike) -> None:
        """Stop reading ``source`` and move on to the next region (once, however
        many of its parts failed); raise ``error`` when no region is left."""
        async with self.switching:
            if not source.given_up:
                source.given_up = True
                stop = Stop(source.label, self.tally.delivered, error)
                self.tally.stops.append(stop)
                if self.on_stop is not None:
                    self.on_stop(stop)
                for scope in list(source.scopes):
                    scope.cancel()
            if self.current.given_up:
                following = None if self.exhausted else await self.next_source()
                if following is None:
                    self.exhausted = True
                    raise error
                self.current = following


async def stream_parts(first: Source, next_source: NextSource, parts: PartDigests,
                       consume: Callable[[HashingReader], T], *, range_size: int, in_flight: int,
                       tally: Tally, on_stop: OnStop | None = None) -> T:
    """Read an artifact with per-part digests into ``consume`` (a worker thread),
    resuming in the regions ``next_source`` yields; verified end to end too."""
    fetcher = PartFetcher(first, next_source, parts, range_size, in_flight, tally, on_stop)
    return await stream_with(fetcher.run, first.ref, first.label, consume)
