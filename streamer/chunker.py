"""The chunk producer: compressed bytes cut into parts, each hashed once.

``ChunkFiller.fill`` runs in a worker thread (every call in it -- ``os.read``,
zstd, hashlib -- releases the GIL).  It reads the source's stdout, compresses,
and writes straight into a preallocated part buffer, so a part's bytes are
copied exactly once from the compressor.  The whole stream's SHA-256 (for the
manifest) is updated as the bytes pass; each part's own digest (the signed
payload hash of SigV4, or its Content-MD5) is computed once by ``Part.seal``
and reused by every region and every retry.
"""

from __future__ import annotations

import base64
import hashlib
import os
import weakref
import zlib
from collections.abc import Callable
from typing import Protocol

import zstandard

from .config import ChecksumMode, Compression

READ_SIZE = 1024 * 1024


class PartBody(bytearray):
    """A part's bytes.  botocore passes a bytearray through untouched, so the
    signer (see s3.py) can read the precomputed ``sha256_hex`` instead of
    hashing the body again for every region."""

    sha256_hex: str = ""
    md5_b64: str = ""


class Part:
    """One part of one artifact, held once and shared by every region.

    ``pending`` is the set of region indices that still need it.  When it
    empties, the part drops its buffer and ``on_done`` is called; the budget
    is given back by ``on_free`` only when the buffer is really deallocated
    (a weakref finalizer), so a request that still holds it keeps it counted."""

    def __init__(self, number: int, body: PartBody, reserved: int,
                 on_done: Callable[[Part], None], on_free: Callable[[int], None]) -> None:
        self.number = number
        self.body = body
        self.size = len(body)
        self.reserved = reserved
        self.pending: set[int] = set()
        self._on_done = on_done
        self.freed = False
        weakref.finalize(body, on_free, reserved)

    def __len__(self) -> int:
        return self.size

    def seal(self, checksum: ChecksumMode) -> None:
        """Compute the part's digest once (in a worker thread)."""
        if checksum == "sha256":
            self.body.sha256_hex = hashlib.sha256(self.body).hexdigest()
        elif checksum == "md5":
            self.body.md5_b64 = base64.b64encode(hashlib.md5(self.body).digest()).decode()

    def done(self, region: int) -> None:
        """Region ``region`` has this part acknowledged (or was dropped)."""
        self.pending.discard(region)
        if not self.pending and not self.freed:
            self.freed = True
            self.body = PartBody()  # drop our reference; the finalizer frees the budget
            self._on_done(self)


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


ZSTD_JOB_SIZE = 1024 * 1024


def make_compressor(kind: Compression, level: int, threads: int = -1) -> Compressor:
    """zstd (multi-threaded: ``threads=-1`` uses every core), gzip, or none.

    zstd's multi-threaded jobs are kept at 1 MiB: with its default job size it
    holds about 180 MiB of incompressible input in flight (measured), with
    1 MiB jobs about 20 MiB, at the same speed on two cores."""
    if kind == "zstd":
        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=threads, job_size=ZSTD_JOB_SIZE if threads else 0)
        obj: Compressor = zstandard.ZstdCompressor(compression_params=params).compressobj()
        return obj
    if kind == "gzip":
        return zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return _Identity()


class ChunkFiller:
    """Reads a file descriptor to EOF, yielding compressed parts of given sizes."""

    def __init__(self, fd: int, compressor: Compressor) -> None:
        self.fd = fd
        self.compressor = compressor
        self.sha256 = hashlib.sha256()
        self.source_bytes = 0
        self.stored_bytes = 0
        self.parts = 0
        self._pending = memoryview(b"")  # compressed bytes not yet placed in a part
        self._eof = False

    @property
    def exhausted(self) -> bool:
        return self._eof and not self._pending

    def _more(self) -> bool:
        """Produce more compressed bytes into ``_pending``; False at the end."""
        while not self._eof:
            data = os.read(self.fd, READ_SIZE)
            if not data:
                self._eof = True
                out = self.compressor.flush()
            else:
                self.source_bytes += len(data)
                out = self.compressor.compress(data)
            if out:
                self.sha256.update(out)
                self._pending = memoryview(out)
                return True
        return False

    def fill(self, size: int) -> PartBody | None:
        """The next part of at most ``size`` bytes (only the last is shorter),
        or None when the stream is exhausted and no bytes remain."""
        body = PartBody(size)
        pos = 0
        while pos < size:
            if not self._pending and not self._more():
                break
            n = min(len(self._pending), size - pos)
            body[pos:pos + n] = self._pending[:n]
            self._pending = self._pending[n:]
            pos += n
        if pos == 0 and self.parts > 0:
            return None  # an empty stream still yields one (empty) part
        if pos < size:
            del body[pos:]
        self.stored_bytes += pos
        self.parts += 1
        return body
