"""Settings of the housekeeping around a backup: the lock lease and the cleanup horizon.

Read from the same merged settings as ``config.parse_config`` (flag >
environment > config file > default), parsed without I/O:

``STREAMER_LOCK_LEASE``       how long a backup lock is valid without renewal
                              (default 15m; renewed every lease/3)
``STREAMER_CLEANUP_HORIZON``  age after which a run without manifest, or a
                              multipart upload, is presumed abandoned (default 24h)

Durations are seconds, or a number with s, m, h or d.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from streamer.errors import ConfigError

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class OpsConfig:
    lock_lease: float = 900.0  # seconds
    cleanup_horizon: float = 86400.0  # seconds


def parse_duration(name: str, text: str, minimum: float = 0.0) -> float:
    m = _DURATION_RE.match(text)
    if not m:
        raise ConfigError(f"{name}={text!r} is not a duration", "write e.g. 900, 15m, 24h or 2d")
    value = float(m.group(1)) * _UNIT[m.group(2).lower()]
    if value < minimum:
        raise ConfigError(f"{name}={text!r} is too short", f"set {name} to at least {minimum:g} s")
    return value


def parse_ops(settings: Mapping[str, str]) -> OpsConfig:
    return OpsConfig(
        lock_lease=parse_duration("STREAMER_LOCK_LEASE", settings.get("STREAMER_LOCK_LEASE") or "15m",
                                  minimum=3.0),
        cleanup_horizon=parse_duration("STREAMER_CLEANUP_HORIZON",
                                       settings.get("STREAMER_CLEANUP_HORIZON") or "24h"),
    )
