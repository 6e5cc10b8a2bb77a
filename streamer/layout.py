"""Object names in the bucket (DESIGN.md section 3), pure.

    {build}/{periodicity}/{YYYYMMDDTHHMMSSZ}/webroot.tar.zst
    {build}/{periodicity}/{YYYYMMDDTHHMMSSZ}/database.sql.zst
    {build}/{periodicity}/{YYYYMMDDTHHMMSSZ}/manifest.json
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from .config import Periodicity

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
STAMP_RE = re.compile(r"\d{8}T\d{6}Z")
MANIFEST = "manifest.json"


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime(STAMP_FORMAT)


def parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=UTC)


def series_prefix(build: str, periodicity: Periodicity) -> str:
    return f"{build}/{periodicity.value}/"


def run_prefix(build: str, periodicity: Periodicity, run_stamp: str) -> str:
    return f"{series_prefix(build, periodicity)}{run_stamp}/"


def artifact_name(artifact: str, extension: str) -> str:
    base = {"webroot": "webroot.tar", "database": "database.sql"}[artifact]
    return base + extension


def lock_key(build: str, periodicity: Periodicity) -> str:
    return f"{series_prefix(build, periodicity)}lock.json"


def stamp_of(key: str, build: str, periodicity: Periodicity) -> str | None:
    """The run stamp a key belongs to, or None if it is not inside a run."""
    prefix = series_prefix(build, periodicity)
    if not key.startswith(prefix):
        return None
    head = key[len(prefix):].split("/", 1)[0]
    return head if STAMP_RE.fullmatch(head) else None
