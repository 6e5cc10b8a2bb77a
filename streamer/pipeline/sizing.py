"""Part sizing for multipart uploads of streams of unknown length (pure).

S3 allows at most 10,000 parts, each (but the last) of 5 MiB to 5 GiB.  The
stream's length is unknown when it starts, so the part size grows with the
part number: it doubles every 1,000 parts from ``MIN_PART``:

    parts     1-1000: 8 MiB   (covers 8 GiB)
    parts 1001-2000: 16 MiB  (covers 24 GiB)
    ...
    parts 9001-10000: 4 GiB  (10,000 parts cover 8 TiB > 5 TiB)

Every part is held in memory until all regions have it, so the size is also
capped by the memory budget: ``max_part = budget // (2 * streams)`` (each
stream keeps one part filling while another uploads).  With the default
256 MiB budget and two streams that cap is 64 MiB, which covers about 490 GiB
per artifact; ``max_stream_bytes`` states the limit for any budget.
"""

from __future__ import annotations

MiB = 1024 * 1024
MIN_PART = 8 * MiB
S3_MIN_PART = 5 * MiB
S3_MAX_PART = 5 * 1024 * MiB
MAX_PARTS = 10_000
DOUBLING_EVERY = 1_000


def max_part_size(memory_budget: int, streams: int) -> int:
    """Largest part the budget allows, rounded down to a MiB, at least MIN_PART."""
    cap = memory_budget // (2 * max(1, streams))
    cap = cap // MiB * MiB
    return max(MIN_PART, min(S3_MAX_PART, cap))


def part_size(part_number: int, max_part: int) -> int:
    """Size of part ``part_number`` (1-based) of a stream."""
    if not 1 <= part_number <= MAX_PARTS:
        raise ValueError(f"part number {part_number} outside 1..{MAX_PARTS}")
    doublings = (part_number - 1) // DOUBLING_EVERY
    return min(max_part, MIN_PART << doublings)


def max_stream_bytes(max_part: int) -> int:
    """How many bytes 10,000 parts hold under this cap."""
    total = 0
    for block in range(MAX_PARTS // DOUBLING_EVERY):
        total += DOUBLING_EVERY * min(max_part, MIN_PART << block)
    return total
