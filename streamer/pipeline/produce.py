"""The producer: one source subprocess cut into parts, each sealed once and queued to every region.

    source (a Child) -> ChunkFiller (worker thread: read, compress, hash the
    stream) -> Part (held once) -> seal (one sealing thread: the part's digest)
    -> one queue per live region

The producer takes a pooled buffer (``BufferPool.take`` waits on the memory
budget: the backpressure), fills it in a worker thread, and creates the
``Part`` with its holders fixed at that moment: itself and every live region.
Sealing and queueing run beside the next fill, on one thread (more would take
CPU from the producer, the critical path).  See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from streamer import tarframe
from streamer.errors import SourceError
from streamer.pipeline.chunker import PRODUCER, ChunkFiller, Part
from streamer.pipeline.early import LineCounter, spawn_source
from streamer.pipeline.sizing import MAX_PARTS, part_size
from streamer.process import Child, exit_text
from streamer.store.base import PartBody
from streamer.tarframe import HEAD_RESERVE

if TYPE_CHECKING:  # the fan-out owns the producer; imported for annotations only
    from streamer.pipeline.fanout import ArtifactRun, Fanout

Senders = dict[int, MemoryObjectSendStream[Part]]


async def produce(fanout: Fanout, art: ArtifactRun, senders: Senders, tg: TaskGroup) -> None:
    """Run ``art``'s source to its end, every part queued to the regions; then
    judge its exit (a warning exit is recorded, a failure raises SourceError).
    A source started early (``art.early``, pipeline/early.py) is adopted: its
    child, its filler, and its spooled buffers as the first parts."""
    spool: deque[tuple[PartBody, int]] = deque()
    if art.early is not None:
        adopted = art.early.adopt()
        child, listing, filler, spool = adopted.child, adopted.listing, adopted.filler, adopted.spool
    else:
        child, listing_fd = spawn_source(art.source, art.name)
        listing = LineCounter(listing_fd)
        assert child.proc.stdout is not None
        filler = ChunkFiller(child.proc.stdout.fileno(), fanout.codec.compression,
                             fanout.codec.level, art.compress_threads,
                             fanout.config.encryption.recipients, art.member, fanout.dial,
                             whole_sha256=fanout.config.checksum != "auto")
        child.start_tail()
    assert child.proc.stdout is not None
    art.filler = filler
    idle = threading.Event()  # set while no fill is running in a worker thread
    idle.set()
    reserve = art.reserve  # the compressor's working memory (pipeline/run._compressors)
    try:
        await fanout.budget.acquire(reserve)  # the compressor's working memory
        await _cut_parts(fanout, art, filler, senders, idle, spool)
        code = await child.wait()
    finally:
        spool.clear()
        fanout.budget.release(reserve)
        await child.reap()
        # The source has exited, so its pipes reach EOF and the reader
        # threads finish; only then is stdout closed.
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await anyio.to_thread.run_sync(idle.wait, 10.0)
            await child.tail_done()
            await anyio.to_thread.run_sync(listing.join, 10.0)
        child.proc.stdout.close()
    art.source_bytes = filler.source_bytes
    art.stored_bytes = filler.stored_bytes
    art.sha256 = filler.sha256.hexdigest() if filler.sha256 is not None else ""
    art.levels = filler.levels()
    art.listed_members = listing.count
    _judge_exit(art, child, code)


async def _cut_parts(fanout: Fanout, art: ArtifactRun, filler: ChunkFiller, senders: Senders,
                     idle: threading.Event, spool: deque[tuple[PartBody, int]]) -> None:
    """Fill parts until the source's EOF; each is sealed and queued beside the next fill.

    A tar-framed artifact (``art.member``) keeps its first part back, with
    room at its front, until the source ended: then the member's size is
    known, its tar header goes in front of the part (``_finish_head``), and
    part 1 is queued last (docs/ARCHITECTURE.md, "A tar member of unknown size").
    The ``spool``'s buffers, filled before start-up ended (pipeline/early.py:
    never a tar-framed artifact), are the first parts, in order."""

    def fill(body: PartBody, start: int) -> int:
        idle.clear()
        try:
            return filler.fill(body, start)
        finally:
            idle.set()

    reserve = HEAD_RESERVE if art.member is not None else 0
    held: tuple[PartBody, int] | None = None
    async with anyio.create_task_group() as sealers:
        number = 0
        while spool or not filler.exhausted:
            number += 1
            if number > MAX_PARTS:
                raise SourceError(f"{art.name} exceeds {MAX_PARTS} parts of at most "
                                  f"{fanout.max_part} bytes", "raise STREAMER_MEMORY_BUDGET")
            size = part_size(number, fanout.max_part)
            start = reserve if number == 1 else 0
            if spool:
                body, n = spool.popleft()
                assert len(body) == size and not start, "spooled for another part size"
            else:
                body = await fanout.take_buffer(size)
                n = await anyio.to_thread.run_sync(fill, body, start, abandon_on_cancel=True)
            if start:
                held, art.parts = (body, n), 1
                del body
                continue
            if n < size:
                if n == 0 and number > 1:
                    fanout.pool.give_back(body, size)
                    break  # the stream ended exactly at a part boundary
                del body[n:]  # the last part: never pooled again
            art.parts = number
            _queue(fanout, art, number, body, senders, sealers)
            del body
        if held is not None:
            _queue(fanout, art, 1, _finish_head(fanout, art, filler, *held), senders, sealers)


def _queue(fanout: Fanout, art: ArtifactRun, number: int, body: PartBody, senders: Senders,
           sealers: TaskGroup) -> None:
    """Make ``body`` part ``number``, held by the producer and every live region, and seal it."""
    holders = (r.index for r in fanout.live if r.index in senders)
    part = Part(number, body, holders, fanout.part_freed)
    fanout.held.add(part)
    fanout.unqueued += 1  # every region has work coming: nobody is alone
    art.max_part_size = max(art.max_part_size, len(part))
    sealers.start_soon(_seal_and_queue, fanout, art, part, senders)


def _finish_head(fanout: Fanout, art: ArtifactRun, filler: ChunkFiller, body: PartBody,
                 n: int) -> PartBody:
    """Part 1 of a tar-framed artifact, once its source ended: the tar header's
    gzip member put in front of the first data, in the room kept for it."""
    assert art.member is not None and filler.framed is not None
    size = filler.framed.member_size
    assert size is not None, "the source has ended"
    head = tarframe.head(art.member, size, fanout.codec.level)
    at = HEAD_RESERVE - len(head)
    body[at:HEAD_RESERVE] = head
    del body[HEAD_RESERVE + n:]
    del body[:at]  # bytearray: dropping a prefix moves no bytes
    filler.stored_bytes += len(head)
    art.head = (len(head), hashlib.sha256(head).hexdigest())
    return body


async def _seal_and_queue(fanout: Fanout, art: ArtifactRun, part: Part, senders: Senders) -> None:
    """Seal the part, queue it to every region that still holds it, and let go.

    A region dropped while the part waited for the sealing thread has already
    released it (``Fanout.region_failed``), so it is not queued there; the
    producer's own claim keeps the buffer until this returns."""
    try:
        needed = {r.client.part_checksum for r in fanout.live} - {""}  # store/negotiate.py
        await anyio.to_thread.run_sync(part.seal, fanout.config.checksum, needed,
                                       limiter=fanout.sealing)
        art.part_digests[part.number] = (len(part), *part.digest)
        now = time.monotonic()
        for region in fanout.live:
            if not part.holds(region.index):
                continue
            art.states[region.index].part_queued(part.number, len(part))
            if region.outstanding == 0:
                region.last_progress = now  # idle time waiting for the producer is no stall
            region.outstanding += 1
            try:
                senders[region.index].send_nowait(part)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                part.release(region.index)  # the worker is gone: it is being dropped
    finally:
        fanout.unqueued -= 1
        fanout.queued_any = True
        fanout.lag_changed()
        part.release(PRODUCER)


def _judge_exit(art: ArtifactRun, child: Child, code: int) -> None:
    """Record the source's verdict on the artifact and on every region's upload."""
    art.exit_code = code
    art.stderr_tail = child.tail[-2000:]
    last_line = child.last_line(ignore="Exiting with failure status")
    source = art.source
    if code in source.warn_exit_codes:
        art.warning = f"{source.warn_text} (exit {code}: {last_line})"
    elif code != 0:
        for state in art.states.values():
            state.source_finished(False)
        raise SourceError(f"{art.name}: {os.path.basename(source.argv[0])} {exit_text(code)}: "
                          f"{last_line or 'no message'}")
    for state in art.states.values():
        state.source_finished(True)
