"""The vocabulary every layer shares: periodicity, build identifier, run stamp,
series, and what a backup reports (its result and its progress).

Pure values, no I/O.  A *series* is one build's backups of one periodicity
(``Series("www-1", Periodicity.HOURLY)``); a *run* is one backup in a series,
named by its UTC *stamp* (``20261203T092338Z``).  See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from streamer.errors import ConfigError

if TYPE_CHECKING:  # for annotations only: codec imports zstandard
    from streamer.codec import Levels

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
STAMP_RE = re.compile(r"\d{8}T\d{6}Z")
BUILD_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


class Periodicity(StrEnum):
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    BIMONTHLY = "bimonthly"
    SHUTDOWN = "shutdown"
    MANUAL = "manual"

    @classmethod
    def parse(cls, text: str) -> Periodicity:
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(p.name for p in cls)
            raise ConfigError(f"unknown periodicity {text!r}", f"use one of {names}") from None


def parse_build_identifier(text: str) -> str:
    if not BUILD_ID_RE.fullmatch(text):
        raise ConfigError(
            f"invalid BUILD_IDENTIFIER {text!r}",
            "use 1-63 characters of letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return text


@dataclass(frozen=True)
class Series:
    """One build's backups of one periodicity: what a lock, a retention rule
    and a cleanup are about."""

    build: str
    periodicity: Periodicity

    def __str__(self) -> str:
        return f"{self.build}/{self.periodicity.value}"


def stamp(when: datetime) -> str:
    """A run's name: its start in UTC, ``YYYYMMDDTHHMMSSZ``."""
    return when.astimezone(UTC).strftime(STAMP_FORMAT)


def parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=UTC)


# ---------------------------------------------------------------- results of a backup


@dataclass(frozen=True)
class RegionUpload:
    """One artifact's multipart upload in one region, as it ended."""

    parts_acknowledged: int = 0
    retries: int = 0


@dataclass
class ArtifactResult:
    """One artifact (webroot or database) of one backup: what its source
    produced and what each region acknowledged.  ``started``/``finished`` are
    monotonic seconds (0: not reached); ``exit_code`` None: the source never
    finished."""

    name: str
    key: str
    exit_code: int | None = None
    warning: str | None = None
    source_bytes: int = 0
    stored_bytes: int = 0
    sha256: str = ""
    parts: int = 0
    max_part_size: int = 0
    listed_members: int = 0
    started: float = 0.0
    finished: float = 0.0
    uploads: dict[int, RegionUpload] = field(default_factory=dict)
    levels: Levels | None = None  # the compression levels its frames used (codec.py)
    compress_threads: int = 0  # zstd worker threads


@dataclass
class RegionResult:
    """How one region ended a backup: ``committed``, ``failed`` or ``aborted``."""

    index: int
    endpoint: str
    status: str  # "committed" | "failed" | "aborted"
    error: str | None = None


@dataclass
class BackupResult:
    """What one backup run did, for the summary, the metrics, the hooks and the screen."""

    exit_code: int
    build: str
    periodicity: str
    stamp: str
    started: datetime
    ended: datetime
    regions: list[RegionResult] = field(default_factory=list)
    artifacts: list[ArtifactResult] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    budget_limit: int = 0
    budget_peak: int = 0

    @property
    def committed(self) -> list[RegionResult]:
        return [r for r in self.regions if r.status == "committed"]


# ---------------------------------------------------------------- progress of a backup


@dataclass(frozen=True)
class ProgressRow:
    """One artifact in one region, at one moment of a running backup."""

    artifact: str
    region: int
    endpoint: str
    status: str  # "uploading" | "ready" | "failed" | "waiting"
    acked_bytes: int
    rate: float  # bytes per second since the artifact started
    outstanding: int  # parts queued or in flight for this artifact and region
    in_flight: int  # requests in flight for this region, all artifacts
    retries: int


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running backup, taken by the pipeline without I/O."""

    elapsed: float
    rows: list[ProgressRow]
    read_bytes: dict[str, int]  # source bytes read so far, per artifact
    memory_used: int
    memory_peak: int
    memory_limit: int


class Observer(Protocol):
    """Watches a running backup (the progress display), calling ``progress()``
    for a fresh snapshot as often as it likes; cancelled when the streams end.
    An observer's failure never changes a backup's outcome."""

    async def watch(self, progress: Callable[[], Progress]) -> None: ...
