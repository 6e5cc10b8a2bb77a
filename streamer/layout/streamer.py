"""The streamer layout: every run under its own prefix in one bucket.

    {build}/{periodicity}/{YYYYMMDDTHHMMSSZ}/webroot.tar.zst
    {build}/{periodicity}/{YYYYMMDDTHHMMSSZ}/database.sql.zst
    {build}/{periodicity}/{YYYYMMDDTHHMMSSZ}/manifest.json
    {build}/{periodicity}/lock.json

The naming helpers are pure; ``StreamerLayout`` is the strategy (layout/base.py).
"""

from __future__ import annotations

import anyio

from streamer.codec import Codec
from streamer.errors import StoreFailure
from streamer.layout.base import CleanupPrefix, Layout, Placement
from streamer.layout.catalog import (
    CATALOG_READS,
    MANIFEST,
    RunListing,
    all_series,
    group_runs,
    list_or_empty,
)
from streamer.model import STAMP_RE, Periodicity, Series
from streamer.store.base import ObjectStore

__all__ = ["MANIFEST", "Placement", "StreamerLayout", "artifact_name", "lock_key", "run_placement",
           "run_prefix", "series_prefix", "stamp_of"]


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


def run_placement(build: str, periodicity: Periodicity, run_stamp: str, extension: str) -> Placement:
    """The streamer layout: every run in its own ``{build}/{periodicity}/{stamp}/``."""
    prefix = run_prefix(build, periodicity, run_stamp)
    return Placement({a: prefix + artifact_name(a, extension) for a in ("webroot", "database")},
                     prefix + MANIFEST)


class StreamerLayout(Layout):
    """One bucket for every build and periodicity; retention applies."""

    name = "streamer"

    def __init__(self, bucket: str, codec: Codec) -> None:
        self._bucket = bucket
        self.codec = codec

    def bucket(self, periodicity: Periodicity | None) -> str:
        return self._bucket

    def placement(self, series: Series, stamp: str, extension: str) -> Placement:
        return run_placement(series.build, series.periodicity, stamp, extension)

    async def runs(self, client: ObjectStore, series: Series) -> list[RunListing]:
        prefix = series_prefix(series.build, series.periodicity)
        return group_runs(await list_or_empty(client, prefix))

    async def runs_in(self, client: ObjectStore, build: str | None,
                      periodicity: Periodicity | None) -> list[RunListing]:
        runs = group_runs(await list_or_empty(client, f"{build}/" if build else ""))
        return [r for r in runs if periodicity is None or r.periodicity is periodicity]

    async def find_series(self, clients: list[ObjectStore], periodicity: Periodicity | None,
                          build: str | None) -> list[Series]:
        """The given series, or every one with an object or an upload in any region."""
        if periodicity is not None and build is not None:
            return [Series(build, periodicity)]
        keys: set[str] = set()
        prefix = f"{build}/" if build else ""

        async def one(client: ObjectStore) -> None:
            try:
                keys.update(o.key for o in await client.list_objects(prefix, policy=CATALOG_READS))
                keys.update(u.key for u in await client.list_uploads(prefix, policy=CATALOG_READS))
            except StoreFailure:
                pass  # reported by the per-region work that follows

        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(one, client)
        return [s for s in all_series(keys) if periodicity is None or s.periodicity is periodicity]

    def lock_key(self, series: Series) -> str:
        return lock_key(series.build, series.periodicity)

    def cleanup_prefixes(self, series: Series) -> list[CleanupPrefix]:
        return [CleanupPrefix(series_prefix(series.build, series.periodicity))]

