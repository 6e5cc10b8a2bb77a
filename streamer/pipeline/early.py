"""Early start: the webroot's tar and its compression, begun before start-up.

A backup spends most of a second before its first byte: importing the S3
stack, opening the clients, the bucket check, the lock, the cleanup's listing.
``start_early`` runs at the very start of ``streamer backup`` (cli.py, right
after the settings are parsed, before those imports): it spawns the webroot's
tar exactly as the producer would (``spawn_source``), and one worker thread
fills part-size buffers with the same ``ChunkFiller`` into a bounded spool, so
tar and zstd run on the other core while start-up runs on this one.

Nothing is uploaded from here: the spool holds filled buffers, never Parts.
When the run reaches the producer (pipeline/produce.py) it adopts the source
-- the child, the filler with its counters and stream hash, the spooled
buffers as its first parts -- and the Parts are created only then, with their
holders fixed at that moment.  A run that ends before (lock held, quorum,
an error, SIGINT/SIGTERM) closes it: tar killed and reaped, threads joined,
buffers dropped.  docs/ARCHITECTURE.md, "Start-up and tear-down".
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streamer import codec
from streamer.codec import Codec, LevelDial
from streamer.errors import SourceError
from streamer.pipeline.budget import check_budget_fits
from streamer.pipeline.sizing import MAX_PARTS, max_part_size, part_size
from streamer.pipeline.webroot import webroot_source
from streamer.process import Child, ProcessSource
from streamer.settings.config import Config

if TYPE_CHECKING:  # imported once tar runs (start_early): they pull in crc32c, age
    from streamer.pipeline.chunker import ChunkFiller
    from streamer.store.base import PartBody

F_SETPIPE_SZ = 1031  # Linux fcntl: set a pipe's capacity
SPOOL_SHARE = 2  # the spool holds at most 1/SPOOL_SHARE of the budget left for parts


# ---------------------------------------------------------------- pure


@dataclass(frozen=True)
class CompressorPlan:
    """What a run's compressors take, decided once from the settings (and,
    with STREAMER_COMPRESSION_THREADS=auto, the host's free cores)."""

    compression: str  # the run's codec
    threads: int  # the webroot's zstd worker threads (every other artifact: 0)
    high: int  # the adaptive level's ceiling, or the fixed level
    reserves: tuple[int, ...]  # each artifact's compressor working memory, in budget bytes
    max_part: int  # pipeline/sizing.max_part_size of the budget left for parts


def compressor_plan(config: Config, run_codec: Codec, streams: int,
                    threads: int | None = None) -> CompressorPlan:
    """Each artifact's zstd threads and the budget its compressor reserves.

    Worker threads go to the webroot (artifact 0) only: ``threads``, else
    ``STREAMER_COMPRESSION_THREADS``, or with ``auto`` (None) as many as the
    free cores allow (codec.auto_threads: this host's usable CPUs less its
    load).  The adaptive ceiling's contexts beyond level 3's are reserved."""
    budget = config.memory_budget
    if run_codec.compression != "zstd":
        return CompressorPlan(run_codec.compression, 0, run_codec.level, (0,) * streams,
                              max_part_size(budget, streams))
    if threads is None:
        threads = config.compression_threads
    if threads is None:
        threads = codec.auto_threads(len(os.sched_getaffinity(0)), os.getloadavg()[0], budget)
    high = codec.auto_high(budget, threads) if run_codec.auto else 0
    reserves = tuple(codec.compressor_reserve("zstd", threads if i == 0 else 0, high)
                     for i in range(streams))
    return CompressorPlan("zstd", threads, high or run_codec.level, reserves,
                          max_part_size(budget - sum(reserves), streams))


def spool_limit(config: Config, plan: CompressorPlan) -> int:
    """The most bytes the early spool may hold: a share of the budget left for parts."""
    return (config.memory_budget - sum(plan.reserves)) // SPOOL_SHARE


def spool_sizes(limit: int, max_part: int) -> Iterator[int]:
    """The sizes of the parts the spool fills, in order, within ``limit`` bytes:
    the run's own part sizes (pipeline/sizing.part_size)."""
    total = 0
    for number in range(1, MAX_PARTS + 1):
        size = part_size(number, max_part)
        if total + size > limit:
            return
        total += size
        yield size


def run_streams(config: Config) -> int:
    """How many artifacts a backup with these settings streams: the webroot, and the dump."""
    return 1 + (config.database.engine != "none")


# ---------------------------------------------------------------- the source


def spawn_source(source: ProcessSource, name: str) -> tuple[Child, int]:
    """Start the source, its stdout pipe grown; returns it and the read end
    of its listing pipe (or -1)."""
    list_r, list_w = os.pipe() if source.listing else (-1, -1)
    argv = [a.replace("{listing_fd}", str(list_w)) for a in source.argv]
    try:
        child = Child.spawn(argv, env=source.env, cwd=source.cwd,
                            pass_fds=(list_w,) if source.listing else ())
    except OSError as e:
        if list_r >= 0:
            os.close(list_r)
        raise SourceError(f"{name}: cannot start {argv[0]}: {e.strerror}",
                          "check that it is installed and on PATH") from None
    finally:
        if list_w >= 0:
            os.close(list_w)
    assert child.proc.stdout is not None
    # A 1 MiB pipe so the producer reads in large blocks (Linux only).
    with contextlib.suppress(OSError):
        fcntl.fcntl(child.proc.stdout.fileno(), F_SETPIPE_SZ, 1024 * 1024)
    return child, list_r


class LineCounter:
    """Counts the lines of a source's listing (tar's members) until EOF, in a
    thread of its own; closes the fd then.  ``fd`` -1: nothing to count."""

    def __init__(self, fd: int) -> None:
        self.count = 0
        self._fd = fd
        self._thread: threading.Thread | None = None
        if fd >= 0:
            self._thread = threading.Thread(target=self._run, name="listing", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            while data := os.read(self._fd, 65536):
                self.count += data.count(b"\n")
        except OSError:
            pass
        finally:
            os.close(self._fd)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


@dataclass
class Adopted:
    """What the producer takes over from an early source."""

    child: Child
    listing: LineCounter
    filler: ChunkFiller
    spool: collections.deque[tuple[PartBody, int]]  # (buffer, bytes filled), parts 1, 2, ...


class EarlySource:
    """The webroot's tar, and a thread filling the spool, until adopted or closed."""

    def __init__(self, source: ProcessSource, child: Child, listing: LineCounter,
                 filler: ChunkFiller, plan: CompressorPlan, dial: LevelDial | None,
                 sizes: list[int]) -> None:
        from streamer.store.base import PartBody  # the S3-free vocabulary: already imported

        self.source = source
        self.child = child
        self.listing = listing
        self.filler = filler
        self.plan = plan
        self.dial = dial
        self.spool: collections.deque[tuple[PartBody, int]] = collections.deque()
        self.error: BaseException | None = None
        self.done = False  # adopted or closed: nothing more to do here
        self._body = PartBody
        self._sizes = sizes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="early-fill", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            for size in self._sizes:
                if self._stop.is_set() or self.filler.exhausted:
                    return
                body = self._body(size)
                self.spool.append((body, self.filler.fill(body)))
        except Exception as e:  # handed to the producer at adoption (a bug or an I/O error)
            self.error = e

    def stop_filling(self) -> None:
        """Let the fill in progress finish and start no other (blocking: run it in a thread)."""
        self._stop.set()
        self._thread.join()

    def spooled(self) -> list[tuple[PartBody, int]]:
        """The filled buffers, once ``stop_filling`` returned (for the budget's account)."""
        assert not self._thread.is_alive()
        return list(self.spool)

    def adopt(self) -> Adopted:
        """Hand everything to the producer (after ``stop_filling``)."""
        assert not self._thread.is_alive() and not self.done
        self.done = True
        if self.error is not None:
            self.close_now()
            raise self.error
        return Adopted(self.child, self.listing, self.filler, self.spool)

    def close(self) -> None:
        """The run ended before adoption: kill and reap tar, join the threads,
        drop the buffers (idempotent; nothing once adopted)."""
        if self.done:
            return
        self.done = True
        self.close_now()

    def close_now(self) -> None:
        self._stop.set()
        self.child.kill()
        self.child.proc.wait()
        self._thread.join()
        self.listing.join()
        self.child.join_tail()
        assert self.child.proc.stdout is not None
        self.child.proc.stdout.close()
        self.spool.clear()


def start_early(config: Config) -> EarlySource | None:
    """Start the webroot's source and its fill now (None where early start
    does not apply: STREAMER_EARLY_START=off, or the ADT layout, whose codec
    the layout chooses).  A webroot that is not a directory is the same
    ConfigError the run itself raises."""
    if not config.early_start or config.layout != "streamer":
        return None
    # The run's own configuration errors first (commands/backup.py), same exit 2.
    source, _ = webroot_source(config.webroot, config.excludes, config.persist_assets)
    check_budget_fits(config.memory_budget)
    child, listing_fd = spawn_source(source, "webroot")
    listing = LineCounter(listing_fd)
    child.start_tail()
    try:
        from streamer.pipeline.chunker import ChunkFiller

        run_codec = Codec(config.compression, config.compression_level, config.compression_auto)
        plan = compressor_plan(config, run_codec, run_streams(config))
        auto = run_codec.auto and run_codec.compression == "zstd"
        dial = LevelDial(run_codec.level) if auto else None
        assert child.proc.stdout is not None
        filler = ChunkFiller(child.proc.stdout.fileno(), run_codec.compression, run_codec.level,
                             plan.threads, config.encryption.recipients, None, dial,
                             whole_sha256=config.checksum != "auto")
        sizes = list(spool_sizes(spool_limit(config, plan), plan.max_part))
    except BaseException:
        child.kill()
        child.proc.wait()
        listing.join()
        child.join_tail()
        assert child.proc.stdout is not None
        child.proc.stdout.close()
        raise
    return EarlySource(source, child, listing, filler, plan, dial, sizes)
