"""Everything about compression, in one place: names, media types, the
compressing reader the chunk producer fills parts from, and the decompressing
view the restore path reads through.

    kind   extension  stored as
    zstd   .zst       application/zstd   (the default; level ``auto``, starting at 3)
    gzip   .gz        application/gzip   (the ADT layout: ADT's scripts expect .tar.gz)
    none   (none)     application/x-tar or application/sql

zstd compresses straight into the caller's buffer (no copy between
compressor and part); gzip has no such reader, so ``_GzipReader`` copies.

With ``STREAMER_COMPRESSION_LEVEL=auto`` (zstd) the level follows a
``LevelDial`` the pipeline turns (pipeline/adapt.py): each level is a zstd
frame of its own (``AdaptiveZstdReader``), and concatenated frames are one
valid zstd stream (docs/ARCHITECTURE.md, "Compression").
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from typing import IO, Any, Literal, Protocol, cast

import zstandard

from streamer.errors import IntegrityError

Compression = Literal["zstd", "gzip", "none"]
KINDS: tuple[Compression, ...] = ("zstd", "gzip", "none")

MiB = 1024 * 1024
READ_SIZE = MiB  # bytes read from the source per call
ZSTD_JOB_SIZE = MiB  # per zstd worker job (multi-threaded compression only)
DECOMPRESS_BLOCK = 128 * 1024

# A multi-threaded zstd stream (STREAMER_COMPRESSION_THREADS > 0, 1 MiB jobs)
# holds about 27 MiB of working memory under incompressible input (measured:
# 39 MiB process peak vs 12 MiB without it); it is reserved from the budget.
# Single-threaded zstd (about 8 MiB) and gzip (256 KiB) are allocated in full
# at first use and so belong to the baseline.
ZSTD_MT_RESERVE = 32 * MiB

# What a damaged compressed stream raises while it is read.
DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (zstandard.ZstdError, EOFError, OSError)


@dataclass(frozen=True)
class Codec:
    """The compression a run's artifacts are stored with, and its level
    (chosen by the layout: the ADT layout always stores gzip).  ``auto``
    (zstd only): ``level`` is where the adaptive level starts."""

    compression: Compression
    level: int
    auto: bool = False


# The adaptive level's range: never below 1 (zstd's fast negative levels
# trade away most of the ratio), and no higher than the level whose working
# memory (per compressing thread) fits in a sixteenth of the budget, at most 19.
AUTO_LOW = 1
AUTO_START = 3


def context_size(level: int) -> int:
    """zstd's estimate of one compressing context's memory at ``level``."""
    params = zstandard.ZstdCompressionParameters.from_level(level)
    return int(params.estimated_compression_context_size())


def auto_high(budget: int, threads: int) -> int:
    """The highest adaptive level whose contexts fit in ``budget / 16``."""
    share = budget // 16 // max(1, threads)
    high = AUTO_START
    while high < 19 and context_size(high + 1) <= share:
        high += 1
    return high


def auto_threads(cpus: int, load: float, budget: int) -> int:
    """zstd worker threads for ``STREAMER_COMPRESSION_THREADS=auto``: none
    unless more than 2 cores are free (``cpus`` usable, minus the 1-minute
    load), then one per free core beyond the producer's own, at most 4; and
    none under a budget that cannot spare their reserve (96 MiB)."""
    free = cpus - load
    if free <= 2 or budget < 96 * MiB:
        return 0
    return min(int(free) - 1, 4)


def extension(kind: Compression) -> str:
    """The suffix after ``.tar`` / ``.sql`` in an object's name."""
    return {"zstd": ".zst", "gzip": ".gz", "none": ""}[kind]


def content_type(kind: Compression, artifact: str) -> str:
    """The Content-Type an artifact is stored with (``artifact``: webroot or database)."""
    if kind == "zstd":
        return "application/zstd"
    if kind == "gzip":
        return "application/gzip"
    return "application/x-tar" if artifact == "webroot" else "application/sql"


def compressor_reserve(kind: Compression, threads: int, high: int = 0) -> int:
    """Bytes of the memory budget a compressor's working memory takes;
    ``high``: the adaptive level's ceiling (its contexts are reserved, one per thread)."""
    if kind != "zstd":
        return 0
    reserve = ZSTD_MT_RESERVE if threads > 0 else 0
    if high > AUTO_START:
        reserve += (context_size(high) - context_size(AUTO_START)) * max(1, threads)
    return reserve


# ---------------------------------------------------------------- compressing


class Reader(Protocol):
    def readinto(self, buffer: memoryview) -> int: ...


class Source(Reader, Protocol):
    """What a compressing reader reads from: a ``CountingSource``, or one
    framed as a tar member (pipeline/chunker.py)."""

    def read(self, size: int = -1, /) -> bytes: ...


class CountingSource(io.RawIOBase):
    """A source's stdout, counting the uncompressed bytes that pass."""

    def __init__(self, fd: int) -> None:
        self._file = io.FileIO(fd, "rb", closefd=False)
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._file.readinto(buffer) or 0
        self.count += n
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size) or b""
        self.count += len(data)
        return data


class _GzipReader:
    """gzip has no reader that writes into a caller's buffer; this one copies."""

    def __init__(self, source: Source, level: int) -> None:
        self._source = source
        self._z = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        self._pending = memoryview(b"")
        self._eof = False

    def readinto(self, buffer: memoryview) -> int:
        while not self._pending and not self._eof:
            data = self._source.read(READ_SIZE)
            if data:
                self._pending = memoryview(self._z.compress(data))
            else:
                self._eof = True
                self._pending = memoryview(self._z.flush())
        n = min(len(self._pending), len(buffer))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _zstd_reader(source: Source | _FrameGate, level: int, threads: int) -> Reader:
    params = zstandard.ZstdCompressionParameters.from_level(
        level, threads=threads, job_size=ZSTD_JOB_SIZE if threads else 0)
    cctx = zstandard.ZstdCompressor(compression_params=params)
    reader: Reader = cctx.stream_reader(cast(IO[bytes], source), read_size=READ_SIZE,
                                        closefd=False)
    return reader


def compressing_reader(source: Source, kind: Compression, level: int,
                       threads: int = 0, dial: LevelDial | None = None) -> Reader:
    """A reader of the compressed stream that writes into the caller's buffer.

    ``threads`` > 0 adds zstd worker threads with 1 MiB jobs (at the default
    job size zstd holds about 180 MiB of incompressible input in flight).  On
    two cores the single-threaded reader measured fastest: the other core
    hashes and sends.  ``dial`` (zstd): the level follows it, frame by frame."""
    if kind == "zstd":
        if dial is not None:
            return AdaptiveZstdReader(source, dial, threads)
        return _zstd_reader(source, level, threads)
    if kind == "gzip":
        return _GzipReader(source, level)
    return source


# ---------------------------------------------------------------- the adaptive level


@dataclass(frozen=True)
class Levels:
    """The levels an artifact's stream was compressed at (for the manifest and summary)."""

    low: int
    high: int
    final: int
    frames: int
    auto: bool

    def to_json(self) -> dict[str, object]:
        return {"auto": self.auto, "min": self.low, "max": self.high, "final": self.final,
                "frames": self.frames}


class LevelDial:
    """The level the next zstd frame starts at: turned by the pipeline's
    controller (in the event loop), read by the producer thread between
    reads (an int attribute: one atomic load)."""

    def __init__(self, level: int) -> None:
        self.level = level


class _FrameGate:
    """The source as the current frame's compressor sees it: an early EOF
    when the dial asks for another level, which ends that frame cleanly
    (every byte it read is in it); real EOF otherwise."""

    def __init__(self, source: Source, dial: LevelDial) -> None:
        self._source = source
        self._dial = dial
        self.level = dial.level
        self.ending = False  # this frame was cut for a new level

    def read(self, size: int = -1, /) -> bytes:
        if self._dial.level != self.level:
            self.ending = True
            return b""
        return self._source.read(size)


class AdaptiveZstdReader:
    """zstd whose level changes mid-stream: one frame per level, each new
    frame started at a frame boundary of the stream (python-zstandard fixes
    a compressor's level for its whole frame)."""

    def __init__(self, source: Source, dial: LevelDial, threads: int = 0) -> None:
        self._source = source
        self._dial = dial
        self._threads = threads
        self._used: list[int] = []
        self._gate, self._frame = self._start()

    def _start(self) -> tuple[_FrameGate, Reader]:
        gate = _FrameGate(self._source, self._dial)
        self._used.append(gate.level)
        return gate, _zstd_reader(gate, gate.level, self._threads)

    def readinto(self, buffer: memoryview) -> int:
        while True:
            n = self._frame.readinto(buffer)
            if n or not self._gate.ending:
                return n
            self._gate, self._frame = self._start()  # the old frame is whole: a new level

    def levels(self) -> Levels:
        return Levels(min(self._used), max(self._used), self._used[-1], len(self._used), True)


# ---------------------------------------------------------------- decompressing


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def decompressed(raw: Readable, kind: str) -> Readable:
    """The uncompressed view of a stored stream (``kind`` as the manifest records it)."""
    if kind == "zstd":
        reader: Readable = zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], raw), read_size=DECOMPRESS_BLOCK, read_across_frames=True)
        return reader
    if kind == "gzip":
        return gzip.GzipFile(fileobj=cast(IO[bytes], raw), mode="rb")
    if kind == "none":
        return raw
    raise IntegrityError(f"unknown compression {kind!r} in the manifest",
                         "restore with a newer streamer")
