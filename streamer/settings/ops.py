"""Settings of the housekeeping around a backup: the lock lease and the cleanup horizon.

Read from the same merged settings as ``config.parse_config`` (flag >
environment > config file > default), parsed without I/O:

``STREAMER_LOCK_LEASE``       how long a backup lock is valid without renewal
                              (default 15m; renewed every lease/3)
``STREAMER_CLEANUP_HORIZON``  age after which a run without manifest, or a
                              multipart upload, is presumed abandoned (default 24h)
``STREAMER_HEAL_LIMIT``       how long a backup may spend, after its own commit,
                              copying the runs of its series that other regions
                              lack (default 15m; 0 or off: never)

Durations are seconds, or a number with s, m, h or d (``values.parse_duration``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streamer.settings.values import parse_duration


@dataclass(frozen=True)
class OpsConfig:
    lock_lease: float = 900.0  # seconds
    cleanup_horizon: float = 86400.0  # seconds
    heal_limit: float = 900.0  # seconds; 0: a backup heals nothing


def parse_ops(settings: Mapping[str, str]) -> OpsConfig:
    return OpsConfig(
        lock_lease=parse_duration("STREAMER_LOCK_LEASE", settings.get("STREAMER_LOCK_LEASE") or "15m",
                                  minimum=3.0),
        cleanup_horizon=parse_duration("STREAMER_CLEANUP_HORIZON",
                                       settings.get("STREAMER_CLEANUP_HORIZON") or "24h"),
        heal_limit=_heal_limit(settings.get("STREAMER_HEAL_LIMIT") or "15m"),
    )


def _heal_limit(text: str) -> float:
    if text.strip().lower() in ("off", "no", "none"):
        return 0.0
    return parse_duration("STREAMER_HEAL_LIMIT", text.strip())
