"""Object names in the bucket (DESIGN.md section 3), pure.

    {build}/{periodicity}/{YYYYMMDDTHHMMSSZ}/webroot.tar.zst
    {build}/{periodicity}/{YYYYMMDDTHHMMSSZ}/database.sql.zst
    {build}/{periodicity}/{YYYYMMDDTHHMMSSZ}/manifest.json
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streamer.model import STAMP_RE, Periodicity

MANIFEST = "manifest.json"


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


@dataclass(frozen=True)
class Placement:
    """Where one run's objects go in the bucket: each artifact's key and the manifest's.

    ``keep_on_failure``: completed objects of a run that then fails to commit
    stay (the ADT layout overwrites its live objects in place; see adt.py)
    instead of being deleted as a half run."""

    artifact_keys: Mapping[str, str]
    manifest_key: str
    keep_on_failure: bool = False

    def key(self, artifact: str) -> str:
        return self.artifact_keys[artifact]


def run_placement(build: str, periodicity: Periodicity, run_stamp: str, extension: str) -> Placement:
    """The streamer layout: every run in its own ``{build}/{periodicity}/{stamp}/``."""
    prefix = run_prefix(build, periodicity, run_stamp)
    return Placement({a: prefix + artifact_name(a, extension) for a in ("webroot", "database")},
                     prefix + MANIFEST)
