"""The settings that decide what a stolen key or a listening network can do
(docs/SECURITY.md), parsed without I/O:

``STREAMER_OBJECT_LOCK_DAYS``  days every committed object of a run is
                               retained by S3 Object Lock (0 or unset: none)
``STREAMER_OBJECT_LOCK_MODE``  ``GOVERNANCE`` (default) or ``COMPLIANCE``
``STREAMER_PRUNE``             ``on`` (default) or ``off``: no retention or
                               cleanup deletes anything; bucket lifecycle
                               rules expire old runs instead
``STREAMER_CA_BUNDLE``         a PEM file of CAs to trust, one for every
                               region or one per region separated by ``|``
                               (empty: ``AWS_CA_BUNDLE`` or the system's CAs)

``plain_http_warnings`` names every region whose keys would travel over plain
http to a host that is not this machine.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Literal

from streamer.errors import ConfigError
from streamer.settings.values import parse_choice, parse_int

LockMode = Literal["GOVERNANCE", "COMPLIANCE"]

MAX_LOCK_DAYS = 36500  # S3 refuses retain-until dates beyond 100 years


def parse_object_lock(s: Mapping[str, str]) -> tuple[int, LockMode]:
    """(days, mode) of STREAMER_OBJECT_LOCK_DAYS / _MODE; 0 days: no Object Lock."""
    days = parse_int("STREAMER_OBJECT_LOCK_DAYS", s.get("STREAMER_OBJECT_LOCK_DAYS") or "0")
    if days > MAX_LOCK_DAYS:
        raise ConfigError(f"STREAMER_OBJECT_LOCK_DAYS={days} is beyond 100 years",
                          f"set at most {MAX_LOCK_DAYS}")
    mode = parse_choice("STREAMER_OBJECT_LOCK_MODE", s.get("STREAMER_OBJECT_LOCK_MODE") or "governance",
                        ("governance", "compliance"))
    return days, mode.upper()  # type: ignore[return-value]


def parse_prune(s: Mapping[str, str]) -> bool:
    """STREAMER_PRUNE: True (on, the default) or False (off)."""
    text = (s.get("STREAMER_PRUNE") or "on").strip().lower()
    if text in ("on", "1", "yes", "true"):
        return True
    if text in ("off", "0", "no", "false"):
        return False
    raise ConfigError(f"STREAMER_PRUNE={text!r} is not valid",
                      "use on, or off to leave retention to bucket lifecycle rules")


def parse_ca_bundles(s: Mapping[str, str], n: int) -> list[str]:
    """One CA bundle path (or "") per region from STREAMER_CA_BUNDLE."""
    text = (s.get("STREAMER_CA_BUNDLE") or "").strip()
    values = [v.strip() for v in text.split("|")] if text else [""]
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ConfigError(f"STREAMER_CA_BUNDLE has {len(values)} values for {n} regions",
                          "give one file for all regions or one per region, separated by | "
                          "(empty for a region that needs none)")
    return values


def _loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host(endpoint: str) -> str:
    rest = re.sub(r"^https?://", "", endpoint).split("/")[0]
    if rest.startswith("["):
        return rest[: rest.index("]") + 1]
    return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest


def plain_http_warnings(endpoints: Iterable[tuple[int, str]]) -> list[str]:
    """A warning per region (index, endpoint) whose credentials would be sent
    over plain http to a host that is not loopback (pure)."""
    return [f"region {index} ({endpoint}): S3 keys and every byte go over plain http to a host "
            "that is not this machine; use https:// (or a bare host) in S3_HOST_BASE"
            for index, endpoint in endpoints
            if endpoint.startswith("http://") and not _loopback(_host(endpoint))]
