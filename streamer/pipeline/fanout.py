"""The fan-out: one source stream shared by every live region.

    source (subprocess) -> ChunkFiller (thread: read, compress, hash) -> Part
        -> one memory-object stream per live region -> region worker:
           one multipart upload, ``parts_in_flight`` parts at a time, retries

``Fanout`` holds what every artifact of a run shares -- the regions, the
memory budget, the buffer pool, the parts still held -- and decides when a
region is dropped.  The producer (produce.py) and the consumers (consume.py)
do the work.

A ``Part`` is held once; every region sends the same buffer.  When the last
region has acknowledged it (or was dropped) the buffer goes back to the
``BufferPool`` for a later part; the producer waits on the pool and the
``ByteBudget`` before it fills the next one: that is the backpressure.
A region that fails a part too often, makes no progress for the stall
timeout, or keeps the producer waiting on it alone for longer than the lag
limit (``LagMeter``, lag.py), is dropped: its uploads are aborted (under a
shielded cancel scope) and the others go on.  When fewer regions than the quorum remain, the whole
run is cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from streamer.codec import Codec, LevelDial, Levels
from streamer.manifest import PartDigests
from streamer.model import ArtifactResult, Progress, ProgressRow, RegionUpload
from streamer.pipeline.adapt import WINDOW, LevelController, PaceMeter, pace_state
from streamer.pipeline.budget import ByteBudget
from streamer.pipeline.buffers import BufferPool
from streamer.pipeline.chunker import ChunkFiller, Part
from streamer.pipeline.consume import region_worker
from streamer.pipeline.early import EarlySource
from streamer.pipeline.lag import LagMeter, alone_region
from streamer.pipeline.produce import Senders, produce
from streamer.pipeline.sizing import MAX_PARTS, part_size
from streamer.pipeline.upload_state import Decision, UploadState
from streamer.process import ProcessSource
from streamer.settings.config import Config
from streamer.store.base import ObjectStore, PartBody, Retention
from streamer.tarframe import TarMember


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

    def store(self, art: ArtifactRun) -> ObjectStore:
        """Where ``art`` goes in this region: the run's bucket, or the artifact's own."""
        return self.client if art.bucket is None else self.client.sibling(art.bucket)


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
    part_digests: dict[int, tuple[int, str, str]] = field(default_factory=dict)  # size, algo, hex
    listed_members: int = 0
    compress_threads: int = 0  # zstd worker threads; 0: in the producer thread
    reserve: int = 0  # budget bytes its compressor's working memory takes (codec.compressor_reserve)
    # Stored as the one member of a gzip'd tar (the ADT layout's database,
    # tarframe.py); its header is put in front of part 1 when the source ends.
    member: TarMember | None = None
    head: tuple[int, str] | None = None  # that header's stored size and SHA-256
    bucket: str | None = None  # another bucket of the region than the run's (ADT: -db-)
    filler: ChunkFiller | None = None  # live counters while the source streams
    early: EarlySource | None = None  # its source, started before start-up (pipeline/early.py)
    started: float = 0.0
    finished: float = 0.0
    retention: Retention | None = None  # Object Lock of its objects and the manifest's
    levels: Levels | None = None  # the compression levels its frames used

    def result(self) -> ArtifactResult:
        """What this artifact did, as the reports see it."""
        return ArtifactResult(
            self.name, self.key, self.exit_code, self.warning, self.source_bytes,
            self.stored_bytes, self.sha256, self.parts, self.max_part_size, self.listed_members,
            self.started, self.finished,
            {i: RegionUpload(len(s.etags), s.retries) for i, s in self.states.items()},
            self.levels, self.compress_threads)


class Fanout:
    """Shared by every artifact of a run: the regions, the budget, held parts."""

    def __init__(self, config: Config, regions: list[RegionRun], budget: ByteBudget,
                 max_part: int, on_below_quorum: Callable[[], None],
                 codec: Codec | None = None) -> None:
        self.config = config
        self.codec = codec or Codec(config.compression, config.compression_level,
                                    config.compression_auto)
        self.regions = regions
        self.budget = budget
        self.max_part = max_part
        self.held: set[Part] = set()
        self.pool = BufferPool(budget)
        # One thread hashes parts, in order, beside the producer thread: more
        # would only take CPU from the producer, which is the critical path.
        self.sealing = anyio.CapacityLimiter(1)
        self._on_below_quorum = on_below_quorum
        # The lag limit's account (docs/RELIABILITY.md): producers blocked on
        # the budget, parts not yet queued, and whom the producer waits on.
        self.lag = LagMeter(config.lag_limit)
        self.producers_waiting = 0
        self.unqueued = 0
        # The adaptive level (pipeline/adapt.py): whom the producer and the
        # regions wait on, and the dial every zstd stream's next frame follows.
        self.pace = PaceMeter()
        self.queued_any = False  # a part has been queued: the regions could be starved
        auto = self.codec.auto and self.codec.compression == "zstd"
        self.dial = LevelDial(self.codec.level) if auto else None

    @property
    def live(self) -> list[RegionRun]:
        return [r for r in self.regions if r.alive]

    def region_failed(self, region: RegionRun, reason: str) -> None:
        """Drop a region: release its claim on every held part, stop its workers."""
        if not region.alive:
            return
        region.alive = False
        region.failure = reason
        region.client.sever()  # unsent part bytes must not hold their buffers
        # Parts this region is still sending are released by their sender when
        # it stops (it is cancelled below); every other claim goes now.
        for part in list(self.held):
            if part not in region.sending:
                part.release(region.index)
        for scope in list(region.scopes):
            scope.cancel()
        self.lag_changed()
        if len(self.live) < self.config.effective_quorum:
            self._on_below_quorum()

    def lag_changed(self) -> None:
        """Tell the lag meter whom the producer now waits on alone (call after
        any change of a region's outstanding parts or of the producers' waiting)."""
        live, now = self.live, time.monotonic()
        self.lag.observe(now, alone_region(
            self.producers_waiting, self.unqueued, (r.index for r in live if r.outstanding),
            len(live)))
        self.pace.observe(now, pace_state(self.producers_waiting, (r.outstanding for r in live),
                                          self.queued_any))

    async def adapt_levels(self, controller: LevelController) -> None:
        """Turn the dial every window, as the controller decides (runs until cancelled)."""
        assert self.dial is not None
        self.pace.take(time.monotonic())
        while True:
            await anyio.sleep(WINDOW)
            self.dial.level = controller.decide(self.pace.take(time.monotonic()))

    async def take_buffer(self, size: int) -> PartBody:
        """A buffer for the next part from the pool, waiting for the budget (the
        backpressure); the wait is accounted for the lag limit."""
        self.producers_waiting += 1
        self.lag_changed()
        try:
            return await self.pool.take(size)
        finally:
            self.producers_waiting -= 1
            self.lag_changed()

    def part_freed(self, part: Part, body: PartBody | None) -> None:
        """A part's last holder let go: pool its buffer (None: something still references it)."""
        self.held.discard(part)
        if body is not None:
            self.pool.give_back(body, part_size(part.number, self.max_part))
        else:
            self.pool.orphaned(part)

    async def watch_stalls(self) -> None:
        """Drop a region that has work but made no progress for the stall
        timeout, or that is past the lag limit."""
        while True:
            await anyio.sleep(1.0)
            now = time.monotonic()
            for region in self.live:
                idle = now - region.last_progress
                if region.outstanding and idle > self.config.stall_timeout:
                    self.region_failed(region, f"no progress for {idle:.0f} s (stall timeout)")
            self.drop_laggards(now)

    def drop_laggards(self, now: float) -> None:
        """Drop each region the producer has waited on alone past the lag limit,
        as long as the quorum can still be met without it (otherwise the run
        needs it, and waiting is the only way to commit)."""
        regions = {r.index: r for r in self.live}
        for index in self.lag.over(now):
            region = regions.get(index)
            if region is None or len(self.live) <= self.config.effective_quorum:
                continue
            waited = self.lag.waited_on(index, now)
            self.region_failed(region, f"{region.label}: too slow: the others waited "
                                       f"{waited:.0f} s on it alone (STREAMER_LAG_LIMIT="
                                       f"{self.config.lag_limit:g}); left for a later run to heal")

    async def stream(self, art: ArtifactRun) -> None:
        """Run one artifact's source into every live region's multipart upload.

        Returns when the source exited and every live region acknowledged every
        part.  Raises SourceError if the source failed; region failures are
        recorded on the region and in its UploadState."""
        art.started = time.monotonic()
        senders: Senders = {}
        async with anyio.create_task_group() as tg:
            for region in self.live:
                art.states[region.index] = UploadState(policy=region.client.policy)
                send, recv = anyio.create_memory_object_stream[Part](MAX_PARTS)
                senders[region.index] = send
                tg.start_soon(region_worker, self, region, art, recv)
            try:
                await produce(self, art, senders, tg)
            finally:
                for send in senders.values():
                    send.close()
        art.finished = time.monotonic()


def recorded_parts(art: ArtifactRun) -> PartDigests | None:
    """The artifact's per-part digests for its manifest (None if any is missing)."""
    numbers = range(1, art.parts + 1)
    if art.parts == 0 or any(n not in art.part_digests for n in numbers):
        return None
    entries = [art.part_digests[n] for n in numbers]
    algorithms = {algo for _, algo, _ in entries}
    if len(algorithms) != 1:
        return None
    return PartDigests(algorithms.pop(), tuple(size for size, _, _ in entries),
                       tuple(hexdigest for _, _, hexdigest in entries))


def ready_regions(artifacts: list[ArtifactRun], regions: list[RegionRun]) -> list[RegionRun]:
    """Regions alive with every artifact's upload ready to complete."""
    return [r for r in regions if r.alive and all(
        r.index in a.states and a.states[r.index].decision() is Decision.READY
        for a in artifacts)]


def progress(fanout: Fanout, artifacts: list[ArtifactRun], now: float | None = None) -> Progress:
    """A snapshot of the run's counters for the progress display (no I/O)."""
    now = time.monotonic() if now is None else now
    started = min((a.started for a in artifacts if a.started), default=now)
    rows: list[ProgressRow] = []
    regions = {r.index: r for r in fanout.regions}
    for art in artifacts:
        secs = max(now - art.started, 1e-6) if art.started else 1e-6
        for index, state in sorted(art.states.items()):
            region = regions[index]
            decision = state.decision()
            if not region.alive or decision is Decision.ABORT:
                status = "failed"
            elif decision is Decision.READY:
                status = "ready"
            elif state.upload_id is None:
                status = "waiting"
            else:
                status = "uploading"
            acked = state.acked_bytes
            rows.append(ProgressRow(art.name, index, region.client.endpoint, status, acked,
                                    acked / secs, state.outstanding, region.in_flight,
                                    state.retries))
    read = {a.name: (a.filler.source_bytes if a.filler is not None else a.source_bytes)
            for a in artifacts}
    return Progress(now - started, rows, read, fanout.budget.used, fanout.budget.peak,
                    fanout.budget.limit)
