"""Compression settings (pure): STREAMER_COMPRESSION, STREAMER_COMPRESSION_LEVEL,
STREAMER_COMPRESSION_THREADS, and the memory budget they draw on.

``STREAMER_COMPRESSION``          ``zstd`` (default), ``gzip``, ``none``.
``STREAMER_COMPRESSION_LEVEL``    ``auto`` (default): zstd's level follows the
                                  bottleneck, from 3 within 1 and a ceiling
                                  the budget affords (pipeline/adapt.py); a
                                  number fixes it (zstd 1-19, gzip 1-9).  gzip
                                  (the ADT layout) is never adaptive: ``auto``
                                  is its level 6.
``STREAMER_COMPRESSION_THREADS``  ``auto`` (default): zstd worker threads when
                                  more than 2 cores are free at the start of
                                  a backup (codec.auto_threads); a number fixes
                                  it (0: in the producer thread).

See the README (Configuration) and docs/ARCHITECTURE.md, "Compression".
"""

from __future__ import annotations

from collections.abc import Mapping

from streamer.codec import AUTO_START, Compression
from streamer.errors import ConfigError
from streamer.settings.values import MiB, parse_choice, parse_int, parse_size

AUTO = "auto"


def parse_compression(s: Mapping[str, str]) -> tuple[Compression, int, bool]:
    """The compression, its (starting) level, and whether the level adapts."""
    compression = parse_choice("STREAMER_COMPRESSION", s.get("STREAMER_COMPRESSION", "zstd"),
                               ("zstd", "gzip", "none"))
    raw = s.get("STREAMER_COMPRESSION_LEVEL", AUTO).strip() or AUTO
    if raw.lower() == AUTO:
        level = {"zstd": AUTO_START, "gzip": 6, "none": 0}[compression]
        return compression, level, compression == "zstd"  # type: ignore[return-value]
    level = parse_int("STREAMER_COMPRESSION_LEVEL", raw)
    if compression == "zstd" and not 1 <= level <= 19:
        raise ConfigError(f"STREAMER_COMPRESSION_LEVEL={level} is out of range",
                          "zstd takes 1-19 or auto")
    if compression == "gzip" and not 1 <= level <= 9:
        raise ConfigError(f"STREAMER_COMPRESSION_LEVEL={level} is out of range",
                          "gzip takes 1-9 or auto")
    return compression, level, False  # type: ignore[return-value]


def parse_memory(s: Mapping[str, str]) -> tuple[int, int | None]:
    """The memory budget in bytes, and the zstd worker threads (None: ``auto``)."""
    budget = parse_size("STREAMER_MEMORY_BUDGET", s.get("STREAMER_MEMORY_BUDGET", "256MiB"))
    if budget < 32 * MiB:
        raise ConfigError(f"STREAMER_MEMORY_BUDGET={budget} bytes is below the 32MiB minimum",
                          "two streams need at least two 8MiB parts each")
    raw = s.get("STREAMER_COMPRESSION_THREADS", AUTO).strip() or AUTO
    if raw.lower() == AUTO:
        return budget, None
    threads = parse_int("STREAMER_COMPRESSION_THREADS", raw)
    if threads and budget < 96 * MiB:
        raise ConfigError("STREAMER_COMPRESSION_THREADS needs STREAMER_MEMORY_BUDGET of 96MiB or more",
                          "zstd workers reserve 32MiB of the budget")
    return budget, threads
