"""The chunk producer: compressed bytes cut into parts, each hashed once.

``ChunkFiller.fill`` runs in a worker thread (every call in it -- the pipe
read, zstd, hashlib -- releases the GIL).  zstd compresses the source's stdout
straight into a (pooled) part buffer: no copy between compressor and part.
The whole stream's SHA-256 (for the manifest) is taken over each filled part;
each part's own digest (its Content-MD5, or the signed SigV4 payload hash) is
computed once by ``Part.seal`` and reused by every region and every retry.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import zlib
from collections.abc import Callable, Iterable
from typing import IO, Any, Protocol, cast

import zstandard

from streamer.settings.config import ChecksumMode, Compression
from streamer.store.base import PartBody

READ_SIZE = 1024 * 1024


class PartReleased(Exception):
    """A holder asked for the bytes of a part it no longer holds (a bug)."""


PRODUCER = 0  # the holder that seals and queues a part; regions count from 1


class Part:
    """One part of one artifact, held once and shared by every region.

    Who holds a part is decided when it is created: the producer (until the
    part is sealed and queued) and every region live at that moment.  Each
    holder lets go exactly once, with ``release``: a region after its upload of
    the part is acknowledged, or when it is dropped and no longer sending it;
    the producer once the part is sealed and queued.  Only when the last
    holder lets go is the buffer handed to ``on_free`` for reuse -- or None if
    something else (a request still writing it) still references it.  After
    that the part has no bytes at all: ``body_for`` raises, so a freed buffer
    (refilled with a later part) can never be hashed or sent under this
    part's number.  The part's digests are computed into its own buffer by
    ``seal``; no shared placeholder ever carries one."""

    def __init__(self, number: int, body: PartBody, holders: Iterable[int],
                 on_free: Callable[[Part, PartBody | None], None]) -> None:
        self.number = number
        self.size = len(body)
        self.holders: set[int] = {PRODUCER, *holders}
        self._body: PartBody | None = body
        self._on_free = on_free

    def __len__(self) -> int:
        return self.size

    @property
    def freed(self) -> bool:
        return self._body is None

    def holds(self, holder: int) -> bool:
        return holder in self.holders

    def body_for(self, holder: int) -> PartBody:
        """The bytes, for a holder that has not let go yet."""
        if holder not in self.holders or self._body is None:
            raise PartReleased(f"part {self.number} is no longer held by {holder}")
        return self._body

    def seal(self, checksum: ChecksumMode) -> None:
        """Compute the part's digest once (in a worker thread, by the producer)."""
        body = self.body_for(PRODUCER)
        if checksum == "sha256":
            body.sha256_hex = hashlib.sha256(body).hexdigest()
        elif checksum == "md5":
            body.md5_b64 = base64.b64encode(hashlib.md5(body).digest()).decode()

    def release(self, holder: int) -> None:
        """``holder`` is done with this part (idempotent)."""
        if holder not in self.holders:
            return
        self.holders.discard(holder)
        if self.holders or self._body is None:
            return
        body, self._body = self._body, None
        # Only this variable and getrefcount's argument: no request,
        # payload or memoryview still holds the bytes, so they may be reused.
        self._on_free(self, body if sys.getrefcount(body) <= 2 else None)


class Reader(Protocol):
    def readinto(self, buffer: memoryview) -> int: ...


class CountingSource(io.RawIOBase):
    """The source's stdout, counting the uncompressed bytes that pass."""

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

    def __init__(self, source: CountingSource, level: int) -> None:
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


ZSTD_JOB_SIZE = 1024 * 1024


def make_reader(source: CountingSource, kind: Compression, level: int, threads: int = 0) -> Reader:
    """A reader of the compressed stream that writes into the caller's buffer.

    zstd compresses straight into the part buffer (no copy); ``threads`` > 0
    adds zstd worker threads with 1 MiB jobs (at the default job size zstd
    holds about 180 MiB of incompressible input in flight).  On two cores the
    single-threaded reader measured fastest: the other core hashes and sends."""
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


class ChunkFiller:
    """Reads a source to EOF, yielding compressed parts of given sizes."""

    def __init__(self, fd: int, kind: Compression, level: int, threads: int = 0) -> None:
        self.source = CountingSource(fd)
        self.reader = make_reader(self.source, kind, level, threads)
        self.sha256 = hashlib.sha256()
        self.stored_bytes = 0
        self.exhausted = False

    @property
    def source_bytes(self) -> int:
        return self.source.count

    def fill(self, body: PartBody) -> int:
        """Fill ``body`` with the next compressed bytes; returns how many.  Only
        the last part is short; then ``exhausted`` is set.  Runs in a worker
        thread: every call here releases the GIL."""
        view = memoryview(body)
        pos = 0
        try:
            while pos < len(body):
                n = self.reader.readinto(view[pos:])
                if not n:
                    self.exhausted = True
                    break
                pos += n
            self.sha256.update(view[:pos])
        finally:
            view.release()
        self.stored_bytes += pos
        return pos
