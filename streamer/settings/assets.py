"""Settings of the assets copy (README, "The assets buckets"), parsed without I/O.

``PERSIST_ASSETS_TO_DATASTORE``  1: the assets live in S3 buckets mounted into
                                 the webroot, one per ``DIRECTORIES_TO_MOUNT`` entry
``STREAMER_ASSETS_EVERY``        periodicities whose backup also copies them
                                 (default DAILY,WEEKLY,MONTHLY,BIMONTHLY; ``none``)
``STREAMER_ASSETS_KEEP_DELETED`` how long an object deleted at the source is kept
                                 in the other regions (default 30d)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from streamer.errors import ConfigError
from streamer.model import Periodicity
from streamer.settings.values import parse_bool, parse_duration

DEFAULT_EVERY = (Periodicity.DAILY, Periodicity.WEEKLY, Periodicity.MONTHLY, Periodicity.BIMONTHLY)
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


def assets_bucket(website_url: str, directory: str) -> str:
    """ADT's name for the assets bucket of one mounted directory: the website
    URL, ``-assets-`` and the directory, ``.`` and ``/`` turned into ``-``, and
    each ``--`` (left to right, once) into ``-`` (README, "The assets buckets")."""
    name = f"{website_url}-assets-{directory}".replace(".", "-").replace("/", "-")
    return name.replace("--", "-")


@dataclass(frozen=True)
class AssetsConfig:
    """The assets buckets (region 1 is their source) and when they are copied."""

    enabled: bool = False  # PERSIST_ASSETS_TO_DATASTORE=1
    directories: tuple[str, ...] = ()  # DIRECTORIES_TO_MOUNT, in order
    buckets: tuple[str, ...] = ()  # one per directory
    every: tuple[Periodicity, ...] = DEFAULT_EVERY
    keep_deleted: float = 30 * 86400.0  # seconds

    def runs_with(self, periodicity: Periodicity) -> bool:
        """Whether a backup of this periodicity also copies the assets."""
        return self.enabled and bool(self.buckets) and periodicity in self.every


def _every(text: str) -> tuple[Periodicity, ...]:
    items = [t for t in re.split(r"[\s,:|]+", text.strip()) if t]
    if [t.lower() for t in items] in (["none"], ["off"]):
        return ()
    try:
        return tuple(Periodicity.parse(t) for t in items)
    except ConfigError:
        raise ConfigError(f"STREAMER_ASSETS_EVERY={text!r} is not a list of periodicities",
                          "write e.g. DAILY,WEEKLY,MONTHLY,BIMONTHLY, or none") from None


def parse_assets(s: Mapping[str, str]) -> AssetsConfig:
    enabled = parse_bool("PERSIST_ASSETS_TO_DATASTORE", s.get("PERSIST_ASSETS_TO_DATASTORE", "0"))
    directories = tuple(d.strip().strip("/") for d in s.get("DIRECTORIES_TO_MOUNT", "").split(":")
                        if d.strip().strip("/"))
    url = s.get("WEBSITE_URL", "")
    buckets = tuple(assets_bucket(url, d) for d in directories) if url else ()
    for name in buckets if enabled else ():
        if not BUCKET_RE.fullmatch(name):
            raise ConfigError(f"assets bucket name {name!r} is not a valid S3 bucket name",
                              "check WEBSITE_URL and DIRECTORIES_TO_MOUNT")
    every_text = s.get("STREAMER_ASSETS_EVERY", "")
    return AssetsConfig(
        enabled=enabled,
        directories=directories,
        buckets=buckets,
        every=_every(every_text) if every_text.strip() else DEFAULT_EVERY,
        keep_deleted=parse_duration("STREAMER_ASSETS_KEEP_DELETED",
                                    s.get("STREAMER_ASSETS_KEEP_DELETED") or "30d"),
    )
