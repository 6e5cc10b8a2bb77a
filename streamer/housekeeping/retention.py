"""Retention: keep the newest N committed runs per build and periodicity.

Applied in every region on its own (each region keeps its own newest N), after
every commit and by ``streamer prune``.  Only committed runs are counted and
removed; a run without manifest is never touched here (it may be in progress;
``cleanup`` removes abandoned ones after the horizon).  N is at least 1, so the
newest committed run is never removed.

Order of deletion: the **manifest first**, in one request for every expired
run, then the artifacts.  Deleting the commit marker first makes a run vanish
from ``list``/``restore``/``verify`` at once; if the artifact deletion then
fails, what is left is a manifest-less run, which ``cleanup`` removes later.
The other order could leave a manifest whose artifacts are gone: a "committed"
backup that cannot be restored.

A run still under S3 Object Lock (its manifest's retain-until date is ahead,
docs/SECURITY.md) is kept and reported, never an error: no key could remove
it anyway, and retention never fails a backup.  It is removed by a later
prune once the date has passed.

Retention needs no lock: it only removes runs that are older than N newer
committed ones, and concurrent prunes delete the same keys (idempotently).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from streamer.layout.base import Layout
from streamer.layout.catalog import RunListing
from streamer.model import Series
from streamer.store.base import ObjectStore


def select_expired(runs: Sequence[RunListing], keep: int) -> list[RunListing]:
    """Committed runs beyond the newest ``keep`` (at least 1), oldest last (pure)."""
    committed = sorted((r for r in runs if r.committed), key=lambda r: r.stamp, reverse=True)
    return committed[max(1, keep):]


def deletion_order(expired: Sequence[RunListing]) -> tuple[list[str], list[str]]:
    """(manifests, everything else) of the expired runs: delete them in that order (pure)."""
    manifests = [r.manifest_key for r in expired if r.manifest_key]
    rest = [k for r in expired for k in r.keys if k != r.manifest_key]
    return manifests, rest


@dataclass(frozen=True)
class PruneReport:
    region: str
    kept: tuple[str, ...]  # stamps of committed runs kept
    removed: tuple[str, ...]  # stamps removed
    locked: tuple[tuple[str, datetime], ...] = ()  # expired but under Object Lock: (stamp, until)


async def _under_lock(client: ObjectStore, expired: Sequence[RunListing],
                      now: datetime) -> dict[str, datetime]:
    """The expired runs whose manifest's Object Lock retention is still ahead."""
    locked: dict[str, datetime] = {}
    for run in expired:
        retention = await client.retention_of(run.manifest_key) if run.manifest_key else None
        if retention is not None and retention.until > now:
            locked[run.stamp] = retention.until
    return locked


async def prune_series(client: ObjectStore, layout: Layout, series: Series,
                       keep: int, runs: list[RunListing] | None = None) -> PruneReport:
    """Apply retention to one series in one region; ``runs``: its runs, if
    they were just listed (a backup's heal lists them)."""
    if runs is None:
        runs = await layout.runs(client, series)
    expired = select_expired(runs, keep)
    locked = await _under_lock(client, expired, datetime.now(UTC))
    expired = [r for r in expired if r.stamp not in locked]
    manifests, rest = deletion_order(expired)
    if manifests:
        await client.delete_keys(manifests)
    if rest:
        await client.delete_keys(rest)
    gone = {r.stamp for r in expired}
    kept = tuple(r.stamp for r in runs if r.committed and r.stamp not in gone)
    return PruneReport(client.label, kept, tuple(sorted(gone)), tuple(sorted(locked.items())))
