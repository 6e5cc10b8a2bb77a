"""Part digests: every algorithm a part may be checked with, and the composite.

One place computes a part's digests (``part_digests``), whoever asks: the
sealing thread of a backup (pipeline/chunker.Part.seal), heal's copy
(pipeline/copy), restore's and verify's part checks (readback/parts).  CRC32C
comes from the ``crc32c`` package: hardware-accelerated (SSE4.2), and it
releases the GIL.  Measured on the development machine, in CPU-seconds per GB
(bench/integrity.py): CRC32C 0.06, zlib's CRC32 0.28, SHA-256 0.65, MD5 1.5
(docs/ARCHITECTURE.md, "Integrity", says why not awscrt's CRC64/NVME).

A manifest of ``STREAMER_CHECKSUM=auto`` has no whole-stream hash: its end to
end check is ``composite``, the SHA-256 of the list of part sizes and digests,
so the stream itself is hashed in a single pass (docs/SECURITY.md, "Integrity").
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol

import crc32c as _crc32c  # type: ignore[import-not-found,unused-ignore]

Chunk = bytes | bytearray | memoryview

CRCS = ("crc32c",)  # the CRCs a part may carry, cheapest first (bench/integrity.py)
MANIFEST_CRC = CRCS[0]  # what an auto-mode manifest records per part
HEX_WIDTH = {"md5": 32, "sha256": 64, "crc32c": 8}
PART_ALGORITHMS = tuple(HEX_WIDTH)  # algorithms a manifest's per-part digests may use


class CrcHash:
    """CRC32C with hashlib's ``update``/``digest``/``hexdigest``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._value = 0

    def update(self, data: Chunk) -> None:
        self._value = _crc32c.crc32c(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")

    def hexdigest(self) -> str:
        return self.digest().hex()


class Hash(Protocol):
    """hashlib's incremental interface, as a reader feeding a stream uses it."""

    def update(self, data: Chunk, /) -> None: ...

    def hexdigest(self) -> str: ...


def new(algorithm: str) -> CrcHash | hashlib._Hash:
    """An incremental hash of ``algorithm`` (any of ``PART_ALGORITHMS``)."""
    if algorithm in CRCS:
        return CrcHash(algorithm)
    return hashlib.new(algorithm)


def hexdigest(algorithm: str, chunks: Iterable[Chunk]) -> str:
    """The hex digest of the concatenated ``chunks`` (call it from a worker
    thread: every algorithm here releases the GIL on large buffers)."""
    h = new(algorithm)
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def part_digests(data: Chunk, algorithms: Iterable[str]) -> dict[str, bytes]:
    """``data``'s digest by each algorithm, each computed once."""
    out = {}
    for algorithm in dict.fromkeys(algorithms):
        h = new(algorithm)
        h.update(data)
        out[algorithm] = h.digest()
    return out


def b64(digest: bytes) -> str:
    """A digest as S3 headers carry it (Content-MD5, x-amz-checksum-*)."""
    return base64.b64encode(digest).decode("ascii")


def composite(algorithm: str, sizes: Sequence[int], digests: Sequence[str]) -> str:
    """The hex SHA-256 of ``algorithm`` and every part's size and hex digest,
    one ``"<size> <hex>\\n"`` line per part: the end-to-end value of an
    auto-mode manifest (a few bytes per part, never the data)."""
    h = hashlib.sha256(f"{algorithm}\n".encode())
    for size, digest in zip(sizes, digests, strict=True):
        h.update(f"{size} {digest}\n".encode())
    return h.hexdigest()


class PartsHash:
    """The composite of a stream cut at known part sizes, fed in order: each
    part's digest is taken as its last byte passes (hashlib's interface, so a
    reader hashing a stream can use either; readback/download.HashingReader)."""

    def __init__(self, algorithm: str, sizes: Sequence[int]) -> None:
        self.algorithm = algorithm
        self.sizes = tuple(sizes)
        self.digests: list[str] = []
        self._part = new(algorithm)
        self._left = self.sizes[0] if self.sizes else 0
        self._extra = 0  # bytes past the last part: never matches

    def update(self, data: Chunk) -> None:
        view = memoryview(data)
        while view:
            if len(self.digests) >= len(self.sizes):
                self._extra += len(view)
                return
            n = min(self._left, len(view))
            self._part.update(view[:n])
            view, self._left = view[n:], self._left - n
            self._close_parts()

    def _close_parts(self) -> None:
        while self._left == 0 and len(self.digests) < len(self.sizes):
            self.digests.append(self._part.hexdigest())
            self._part = new(self.algorithm)
            nxt = len(self.digests)
            self._left = self.sizes[nxt] if nxt < len(self.sizes) else 0

    def hexdigest(self) -> str:
        self._close_parts()
        if self._extra or len(self.digests) != len(self.sizes):
            return "incomplete " + self._part.hexdigest()
        return composite(self.algorithm, self.sizes, self.digests)
