"""The parts of a stored artifact, as a reader checks them (pure).

A manifest with per-part digests (``manifest.PartDigests``) lets a reader check
every part as it arrives, before any of its bytes go downstream, and resume in
another region from the first part not yet delivered (docs/ARCHITECTURE.md,
"A byte's way back").  A part larger than the range size is fetched as several
ranges, hashed together in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streamer import digests
from streamer.errors import IntegrityError
from streamer.manifest import PartDigests

Chunk = bytes | bytearray


@dataclass(frozen=True)
class PartSpan:
    """One part of the object: where it lies, its digest, the ranges that fetch it."""

    number: int  # 1-based, as uploaded
    offset: int
    size: int
    digest: str  # hex
    ranges: tuple[tuple[int, int], ...]  # inclusive byte ranges covering the part

    @property
    def end(self) -> int:
        return self.offset + self.size


def plan_parts(parts: PartDigests, range_size: int) -> list[PartSpan]:
    """Every part and the ranges (at most ``range_size`` bytes each) that fetch it."""
    if range_size <= 0:
        raise ValueError("range size must be positive")
    out = []
    for number, (offset, size, digest) in enumerate(parts.spans(), 1):
        ranges = tuple((start, min(offset + size, start + range_size) - 1)
                       for start in range(offset, offset + size, range_size))
        out.append(PartSpan(number, offset, size, digest, ranges))
    return out


def slots_for(plan: Sequence[PartSpan], in_flight: int) -> int:
    """Ranges held at once: ``in_flight``, but never fewer than the largest part's
    ranges (a part is held whole until its digest is checked)."""
    return max([in_flight, *(len(p.ranges) for p in plan)])


def digest_of(algorithm: str, chunks: Sequence[Chunk]) -> str:
    """The hex digest of a part's bytes, by any of ``digests.PART_ALGORITHMS``
    (called in a worker thread: hashlib and crc32c release the GIL)."""
    return digests.hexdigest(algorithm, chunks)


def check_part(span: PartSpan, algorithm: str, chunks: Sequence[Chunk], where: str,
               key: str) -> None:
    """IntegrityError naming the part and its offset unless ``chunks`` are its bytes."""
    size = sum(len(c) for c in chunks)
    if size != span.size:
        raise IntegrityError(f"{where}: {key}: part {span.number} at byte {span.offset}: read "
                             f"{size} bytes, the manifest says {span.size}",
                             "the stored copy is damaged")
    digest = digest_of(algorithm, chunks)
    if digest != span.digest:
        raise IntegrityError(f"{where}: {key}: part {span.number} at byte {span.offset} "
                             f"({span.size} bytes): {algorithm.upper()} {digest[:16]}... does not "
                             f"match the manifest's {span.digest[:16]}...",
                             "the stored copy is damaged")
