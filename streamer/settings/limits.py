"""Settings that keep a backup gentle on a live host: STREAMER_BWLIMIT and STREAMER_NICE (pure).

``STREAMER_BWLIMIT``  the most bytes per second sent to all regions together
                      (``50MiB``, ``50MiB/s``; unset, ``0`` or ``off``:
                      unlimited).  The regions share it fairly
                      (store/bandwidth.py).  With a limit, every part in
                      flight still gets its share, ``limit / (regions x
                      streams x parts in flight)``: the request timeout's
                      minimum part rate is lowered to that share
                      (``part_rate_floor``), and a limit so low that an 8 MiB
                      part at that share would outlast the stall timeout is
                      refused (``check_bwlimit``).
``STREAMER_NICE``     CPU and IO priority of the whole process (tar, the
                      dump, streamer's own threads): ``off`` or ``0``
                      (default), ``on`` or ``1`` (nice 19, IO best-effort 7),
                      ``idle`` (nice 19, IO class idle) or a nice level 2-19
                      (IO best-effort at the level the kernel derives from
                      it, ``(nice + 20) // 5``).

See the README (Configuration) and docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from streamer.errors import ConfigError
from streamer.settings.values import parse_size

PART = 8 * 1024 * 1024  # the first parts' size (pipeline/sizing.py MIN_PART)
IO_BEST_EFFORT = 2
IO_IDLE = 3


@dataclass(frozen=True)
class Priority:
    """What STREAMER_NICE asks: ``nice`` 0 and ``io_class`` 0 leave the process as it is."""

    nice: int = 0  # 1-19: the niceness every thread and child gets
    io_class: int = 0  # 2 best-effort, 3 idle (ioprio classes)
    io_level: int = 0  # 0-7 within best-effort

    @property
    def active(self) -> bool:
        return self.nice > 0 or self.io_class > 0

    def describe(self) -> str:
        if not self.active:
            return "off"
        io = "idle" if self.io_class == IO_IDLE else f"best-effort {self.io_level}"
        return f"nice {self.nice}, io {io}"


def parse_nice(text: str) -> Priority:
    """STREAMER_NICE: off (0), on (1), idle or a nice level 2-19."""
    t = text.strip().lower()
    if t in ("", "off", "no", "false", "0"):
        return Priority()
    if t in ("on", "yes", "true", "1"):  # "1" as every boolean setting (a TOML true)
        return Priority(19, IO_BEST_EFFORT, 7)
    if t == "idle":
        return Priority(19, IO_IDLE, 0)
    if t.isdigit() and 2 <= int(t) <= 19:
        level = int(t)
        return Priority(level, IO_BEST_EFFORT, (level + 20) // 5)
    raise ConfigError(f"STREAMER_NICE={text!r} is not valid",
                      "use off, on (nice 19, IO best-effort 7), idle or a nice level 2-19")


def parse_bwlimit(text: str) -> int:
    """STREAMER_BWLIMIT in bytes per second; 0: unlimited."""
    t = text.strip()
    if t.lower() in ("", "0", "off", "none", "unlimited"):
        return 0
    rate = parse_size("STREAMER_BWLIMIT", re.sub(r"(?i)\s*/\s*s(ec)?$", "", t))
    if rate < 1024:
        raise ConfigError(f"STREAMER_BWLIMIT={text!r} is below 1KiB per second",
                          "write e.g. 50MiB (bytes per second to all regions together), or off")
    return rate


def slots(regions: int, streams: int, parts_in_flight: int) -> int:
    """Part requests that may be in flight at once, over every region and stream."""
    return max(1, regions) * max(1, streams) * max(1, parts_in_flight)


def part_rate_floor(min_part_rate: int, bwlimit: int, in_flight: int) -> int:
    """The minimum part rate the request timeouts use: STREAMER_MIN_PART_RATE, or
    each part's share of the bandwidth limit if that is lower, so that a part
    sent at its share is never cut off as too slow (store/timeouts.py)."""
    if not bwlimit:
        return min_part_rate
    return max(1, min(min_part_rate, bwlimit // max(1, in_flight)))


def check_bwlimit(bwlimit: int, in_flight: int, stall_timeout: float) -> None:
    """Refuse a limit under which an 8 MiB part, sent at its share, makes no
    progress for longer than the stall timeout (its region would be dropped)."""
    if not bwlimit:
        return
    least = int(PART * in_flight / stall_timeout) + 1
    if bwlimit < least:
        raise ConfigError(
            f"STREAMER_BWLIMIT={bwlimit} bytes/s is too low for {in_flight} parts in flight "
            f"(regions x streams x STREAMER_PARTS_IN_FLIGHT) within STREAMER_STALL_TIMEOUT="
            f"{stall_timeout:g}",
            f"set at least {least // 1024 + 1}KiB, or fewer STREAMER_PARTS_IN_FLIGHT, "
            "or a longer STREAMER_STALL_TIMEOUT")


def parse_min_rate(s: Mapping[str, str]) -> int:
    """STREAMER_MIN_PART_RATE: bytes per second a part request must at least average."""
    rate = parse_size("STREAMER_MIN_PART_RATE", s.get("STREAMER_MIN_PART_RATE", "128KiB"))
    if rate < 1024:
        raise ConfigError(f"STREAMER_MIN_PART_RATE={rate} bytes/s is below 1KiB",
                          "write e.g. 128KiB (the slowest a part upload may be before it is retried)")
    return rate


def parse_rates(s: Mapping[str, str], in_flight: int, stall_timeout: float) -> tuple[int, int]:
    """STREAMER_BWLIMIT (checked against the stall timeout) and the minimum part
    rate the request timeouts use (``part_rate_floor``)."""
    bwlimit = parse_bwlimit(s.get("STREAMER_BWLIMIT", ""))
    check_bwlimit(bwlimit, in_flight, stall_timeout)
    return bwlimit, part_rate_floor(parse_min_rate(s), bwlimit, in_flight)
