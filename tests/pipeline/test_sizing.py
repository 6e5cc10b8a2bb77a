"""Unit tests for part sizing."""

from __future__ import annotations

from streamer.pipeline.sizing import (
    MAX_PARTS,
    MIN_PART,
    S3_MAX_PART,
    S3_MIN_PART,
    max_part_size,
    max_stream_bytes,
    part_size,
)

MiB = 1024 * 1024
TiB = 1024**4


def test_uncapped_schedule_covers_5_tib_in_10000_parts() -> None:
    cap = S3_MAX_PART
    assert max_stream_bytes(cap) >= 5 * TiB
    sizes = [part_size(n, cap) for n in range(1, MAX_PARTS + 1)]
    assert sizes[0] == MIN_PART >= 8 * MiB
    assert all(s >= S3_MIN_PART for s in sizes) and all(s <= S3_MAX_PART for s in sizes)
    assert sizes == sorted(sizes)  # grows, never shrinks


def test_cap_from_budget() -> None:
    assert max_part_size(256 * MiB, 2) == 64 * MiB
    assert max_part_size(64 * MiB, 2) == 16 * MiB
    assert max_part_size(32 * MiB, 2) == 8 * MiB  # never below the 8 MiB floor
    assert max_part_size(64 * 1024 * MiB, 1) == S3_MAX_PART
    assert part_size(9_999, 16 * MiB) == 16 * MiB
    assert max_stream_bytes(64 * MiB) > 400 * 1024 * MiB * 1024 // 1024  # > 400 GiB at defaults
