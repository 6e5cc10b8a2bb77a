"""The pipeline: one source stream fanned out to every live region.

    source (subprocess) -> ChunkFiller (thread: read, compress, hash) -> Part
        -> one memory-object stream per live region -> region worker:
           one multipart upload, ``parts_in_flight`` parts at a time, retries

A ``Part`` is held once; every region sends the same buffer.  When the last
region has acknowledged it (or was dropped) the buffer goes back to the
``BufferPool`` for a later part; the producer waits on the pool and the
``ByteBudget`` before it fills the next one: that is the backpressure.
A region that fails a part too often, or makes no progress for the stall
timeout, is dropped: its uploads are aborted (under a shielded cancel scope)
and the others go on.  When fewer regions than the quorum remain, the whole
run is cancelled.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from streamer.errors import RegionError, SourceError, StoreFailure
from streamer.pipeline.budget import ByteBudget
from streamer.pipeline.buffers import BufferPool
from streamer.pipeline.chunker import PRODUCER, ChunkFiller, Part
from streamer.pipeline.sizing import MAX_PARTS, ZSTD_MT_RESERVE, part_size
from streamer.pipeline.upload_state import Decision, UploadState
from streamer.process import ProcessSource
from streamer.settings.config import Config
from streamer.store.base import ObjectStore, PartBody

ABORT_TIMEOUT = 30.0


@dataclass(eq=False)
class RegionRun:
    """A region's live state during one backup."""

    client: ObjectStore
    alive: bool = True
    failure: str | None = None
    outstanding: int = 0  # parts queued or in flight, all artifacts
    in_flight: int = 0
    last_progress: float = field(default_factory=time.monotonic)
    scopes: set[anyio.CancelScope] = field(default_factory=set)
    sending: set[Part] = field(default_factory=set)  # parts this region is sending or retrying

    @property
    def index(self) -> int:
        return self.client.index

    @property
    def label(self) -> str:
        return self.client.label


@dataclass(eq=False)
class ArtifactRun:
    """One artifact (webroot or database) of one backup, across all regions."""

    name: str
    key: str
    source: ProcessSource
    content_type: str = "application/octet-stream"
    states: dict[int, UploadState] = field(default_factory=dict)
    exit_code: int | None = None
    warning: str | None = None
    stderr_tail: str = ""
    source_bytes: int = 0
    stored_bytes: int = 0
    sha256: str = ""
    parts: int = 0
    max_part_size: int = 0
    listed_members: int = 0
    compress_threads: int = 0  # zstd worker threads; 0: in the producer thread
    filler: ChunkFiller | None = None  # live counters while the source streams
    started: float = 0.0
    finished: float = 0.0


class Fanout:
    """Shared by every artifact of a run: the regions, the budget, held parts."""

    def __init__(self, config: Config, regions: list[RegionRun], budget: ByteBudget,
                 max_part: int, on_below_quorum: Callable[[], None]) -> None:
        self.config = config
        self.regions = regions
        self.budget = budget
        self.max_part = max_part
        self.held: set[Part] = set()
        self.pool = BufferPool(budget)
        # One thread hashes parts, in order, beside the producer thread: more
        # would only take CPU from the producer, which is the critical path.
        self.sealing = anyio.CapacityLimiter(1)
        self._on_below_quorum = on_below_quorum

    @property
    def live(self) -> list[RegionRun]:
        return [r for r in self.regions if r.alive]

    def region_failed(self, region: RegionRun, reason: str) -> None:
        """Drop a region: release its claim on every held part, stop its workers."""
        if not region.alive:
            return
        region.alive = False
        region.failure = reason
        # Parts this region is still sending are released by their sender when
        # it stops (it is cancelled below); every other claim goes now.
        for part in list(self.held):
            if part not in region.sending:
                part.release(region.index)
        for scope in list(region.scopes):
            scope.cancel()
        if len(self.live) < self.config.effective_quorum:
            self._on_below_quorum()

    def _done(self, part: Part, body: PartBody | None) -> None:
        self.held.discard(part)
        if body is not None:
            self.pool.give_back(body, part_size(part.number, self.max_part))

    async def watch_stalls(self) -> None:
        """Drop a region that has work but made no progress for the stall timeout."""
        while True:
            await anyio.sleep(1.0)
            now = time.monotonic()
            for region in self.live:
                idle = now - region.last_progress
                if region.outstanding and idle > self.config.stall_timeout:
                    self.region_failed(region, f"no progress for {idle:.0f} s (stall timeout)")

    # ---------------------------------------------------------------- stream

    async def stream(self, art: ArtifactRun) -> None:
        """Run one artifact's source into every live region's multipart upload.

        Returns when the source exited and every live region acknowledged every
        part.  Raises SourceError if the source failed; region failures are
        recorded on the region and in its UploadState."""
        art.started = time.monotonic()
        senders: dict[int, MemoryObjectSendStream[Part]] = {}
        async with anyio.create_task_group() as tg:
            for region in self.live:
                art.states[region.index] = UploadState(policy=region.client.policy)
                send, recv = anyio.create_memory_object_stream[Part](MAX_PARTS)
                senders[region.index] = send
                tg.start_soon(self._region_worker, region, art, recv)
            try:
                await self._produce(art, senders, tg)
            finally:
                for send in senders.values():
                    send.close()
        art.finished = time.monotonic()

    async def _produce(self, art: ArtifactRun, senders: dict[int, MemoryObjectSendStream[Part]],
                       tg: TaskGroup) -> None:
        source = art.source
        list_r, list_w = (os.pipe() if source.listing else (-1, -1))
        argv = [a.replace("{listing_fd}", str(list_w)) for a in source.argv]
        try:
            # fork+exec is quick; the pipes are then read in worker threads.
            proc = subprocess.Popen(  # noqa: ASYNC220
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env={**os.environ, **source.env}, cwd=source.cwd, start_new_session=True,
                pass_fds=(list_w,) if source.listing else (),
            )
        except OSError as e:
            if list_r >= 0:
                os.close(list_r)
            raise SourceError(f"{art.name}: cannot start {argv[0]}: {e.strerror}",
                              "check that it is installed and on PATH") from None
        finally:
            if list_w >= 0:
                os.close(list_w)
        assert proc.stdout is not None and proc.stderr is not None
        _grow_pipe(proc.stdout.fileno())
        filler = ChunkFiller(proc.stdout.fileno(), self.config.compression,
                             self.config.compression_level, art.compress_threads)
        art.filler = filler
        tail: list[bytes] = []
        drained = anyio.Event()
        tg.start_soon(_drain_tail, proc.stderr.fileno(), tail, drained)
        counter: list[int] = [0]
        counted = anyio.Event()
        if source.listing:
            tg.start_soon(_count_lines, list_r, counter, counted)
        else:
            counted.set()
        reserve = ZSTD_MT_RESERVE if self.config.compression == "zstd" and art.compress_threads > 0 else 0
        fill_idle = threading.Event()
        fill_idle.set()

        def fill(body: PartBody) -> int:
            fill_idle.clear()
            try:
                return filler.fill(body)
            finally:
                fill_idle.set()

        try:
            await self.budget.acquire(reserve)  # the compressor's working memory
            async with anyio.create_task_group() as sealers:
                number = 0
                while not filler.exhausted:
                    number += 1
                    if number > MAX_PARTS:
                        raise SourceError(
                            f"{art.name} exceeds {MAX_PARTS} parts of at most "
                            f"{self.max_part} bytes", "raise STREAMER_MEMORY_BUDGET")
                    size = part_size(number, self.max_part)
                    body = await self.pool.take(size)
                    n = await anyio.to_thread.run_sync(fill, body, abandon_on_cancel=True)
                    if n < size:
                        if n == 0 and number > 1:
                            self.pool.give_back(body, size)
                            break  # the stream ended exactly at a part boundary
                        del body[n:]  # the last part: never pooled again
                    part = Part(number, body, (r.index for r in self.live if r.index in senders),
                                self._done)
                    del body
                    self.held.add(part)
                    art.parts = number
                    art.max_part_size = max(art.max_part_size, len(part))
                    sealers.start_soon(self._seal_and_send, art, part, senders)
            code = await anyio.to_thread.run_sync(proc.wait, abandon_on_cancel=True)
        finally:
            self.budget.release(reserve)
            with anyio.CancelScope(shield=True):
                if proc.poll() is None:
                    proc.kill()
                    await anyio.to_thread.run_sync(proc.wait)
                # The source has exited, so its pipes reach EOF and the reader
                # threads finish; only then are the pipes closed.
                with anyio.move_on_after(10):
                    await anyio.to_thread.run_sync(fill_idle.wait, 10.0)
                    await drained.wait()
                    await counted.wait()
                proc.stdout.close()
                proc.stderr.close()
        art.exit_code = code
        art.source_bytes = filler.source_bytes
        art.stored_bytes = filler.stored_bytes
        art.sha256 = filler.sha256.hexdigest()
        art.listed_members = counter[0]
        art.stderr_tail = b"".join(tail).decode(errors="replace")[-2000:]
        lines = [ln for ln in art.stderr_tail.strip().splitlines()
                 if ln and "Exiting with failure status" not in ln]
        last_line = lines[-1] if lines else ""
        if code in source.warn_exit_codes:
            art.warning = f"{source.warn_text} (exit {code}: {last_line})"
        elif code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            for state in art.states.values():
                state.source_finished(False)
            raise SourceError(f"{art.name}: {os.path.basename(argv[0])} {how}: {last_line or 'no message'}")
        for state in art.states.values():
            state.source_finished(True)

    async def _seal_and_send(self, art: ArtifactRun, part: Part,
                             senders: dict[int, MemoryObjectSendStream[Part]]) -> None:
        """Seal the part, queue it to every region that still holds it, and let go.

        A region dropped while the part waited for the sealing thread has
        already released it (``region_failed``), so it is not queued there; the
        producer's own claim keeps the buffer until this returns."""
        try:
            await anyio.to_thread.run_sync(part.seal, self.config.checksum, limiter=self.sealing)
            now = time.monotonic()
            for region in self.live:
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
            part.release(PRODUCER)

    # ---------------------------------------------------------------- regions

    async def _region_worker(self, region: RegionRun, art: ArtifactRun,
                             recv: MemoryObjectReceiveStream[Part]) -> None:
        state = art.states[region.index]
        with anyio.CancelScope() as scope:
            region.scopes.add(scope)
            try:
                upload_id = await region.client.create_multipart(art.key, art.content_type)
                state.created(upload_id)
                slots = anyio.Semaphore(self.config.parts_in_flight)
                async with anyio.create_task_group() as tg, recv:
                    async for part in recv:
                        await slots.acquire()
                        tg.start_soon(self._send_part, region, art, state, part, slots)
            except* (StoreFailure, RegionError) as group:
                reason = str(first_leaf(group))
                state.fail(reason)
                self.region_failed(region, reason)
            finally:
                region.scopes.discard(scope)
        if not region.alive:
            state.fail(region.failure or "region dropped")
            with anyio.CancelScope(shield=True):
                await abort_upload(region.client, art.key, state)

    async def _send_part(self, region: RegionRun, art: ArtifactRun, state: UploadState,
                         part: Part, slots: anyio.Semaphore) -> None:
        region.sending.add(part)
        try:
            assert state.upload_id is not None
            while region.alive:
                state.part_started(part.number)
                region.in_flight += 1
                try:
                    etag = await region.client.upload_part(art.key, state.upload_id, part.number,
                                                           part.body_for(region.index))
                except StoreFailure as f:
                    if f.status in (403, 404):
                        raise RegionError(str(f)) from None
                    delay = state.part_failed(part.number, f.detail)
                    if delay is None:
                        raise RegionError(state.failure or str(f)) from None
                    await anyio.sleep(delay)
                    continue
                finally:
                    region.in_flight -= 1
                state.part_acked(part.number, etag)
                region.outstanding -= 1
                region.last_progress = time.monotonic()
                return
        finally:
            region.sending.discard(part)
            part.release(region.index)
            slots.release()


async def abort_upload(client: ObjectStore, key: str, state: UploadState) -> None:
    """Abort one region's multipart upload, best effort, bounded in time."""
    if state.upload_id is None or state.completed:
        return
    with anyio.move_on_after(min(ABORT_TIMEOUT, 2 * client.request_timeout)):
        try:
            await client.abort_multipart(key, state.upload_id)
        except StoreFailure:
            pass  # left for `streamer cleanup`, which lists unfinished uploads


def ready_regions(artifacts: list[ArtifactRun], regions: list[RegionRun]) -> list[RegionRun]:
    """Regions alive with every artifact's upload ready to complete."""
    return [r for r in regions if r.alive and all(
        r.index in a.states and a.states[r.index].decision() is Decision.READY
        for a in artifacts)]


def first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _grow_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe so the producer reads in large blocks (Linux only)."""
    try:
        import fcntl
        fcntl.fcntl(fd, 1031, 1024 * 1024)  # F_SETPIPE_SZ
    except (OSError, ImportError):
        pass


async def _drain_tail(fd: int, tail: list[bytes], done: anyio.Event, keep: int = 8192) -> None:
    def run() -> None:
        held = b""
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            held = (held + data)[-keep:]
        tail.append(held)
    await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
    done.set()


async def _count_lines(fd: int, counter: list[int], done: anyio.Event) -> None:
    def run() -> None:
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    break
                counter[0] += data.count(b"\n")
        finally:
            os.close(fd)
    await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
    done.set()
