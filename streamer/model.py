"""The vocabulary every layer shares: periodicity, build identifier, run stamp, series.

Pure values, no I/O.  A *series* is one build's backups of one periodicity
(``Series("www-1", Periodicity.HOURLY)``); a *run* is one backup in a series,
named by its UTC *stamp* (``20261203T092338Z``).  See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from streamer.errors import ConfigError

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
