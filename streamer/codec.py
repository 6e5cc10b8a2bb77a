"""Everything about compression, in one place: names, media types, the
compressing reader the chunk producer fills parts from, and the decompressing
view the restore path reads through.

    kind   extension  stored as
    zstd   .zst       application/zstd   (the default; level 3)
    gzip   .gz        application/gzip   (the ADT layout: ADT's scripts expect .tar.gz)
    none   (none)     application/x-tar or application/sql

zstd compresses straight into the caller's buffer (no copy between
compressor and part); gzip has no such reader, so ``_GzipReader`` copies.
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
    (chosen by the layout: the ADT layout always stores gzip)."""

    compression: Compression
    level: int


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


def compressor_reserve(kind: Compression, threads: int) -> int:
    """Bytes of the memory budget a compressor's working memory takes."""
    return ZSTD_MT_RESERVE if kind == "zstd" and threads > 0 else 0


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


def compressing_reader(source: Source, kind: Compression, level: int,
                       threads: int = 0) -> Reader:
    """A reader of the compressed stream that writes into the caller's buffer.

    ``threads`` > 0 adds zstd worker threads with 1 MiB jobs (at the default
    job size zstd holds about 180 MiB of incompressible input in flight).  On
    two cores the single-threaded reader measured fastest: the other core
    hashes and sends."""
    if kind == "zstd":
        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=threads, job_size=ZSTD_JOB_SIZE if threads else 0)
        cctx = zstandard.ZstdCompressor(compression_params=params)
        reader: Reader = cctx.stream_reader(cast(IO[bytes], source), read_size=READ_SIZE,
                                            closefd=False)
        return reader
    if kind == "gzip":
        return _GzipReader(source, level)
    return source


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
