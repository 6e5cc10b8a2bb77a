"""What several commands share: housekeeping over every region, and its results.

The backup runs the cleanup and the retention of its own series; ``streamer
cleanup`` and ``streamer prune`` run them over whatever they are asked.  Each
returns what happened (per region), never prints: render.py turns it into lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio

from streamer.errors import EXIT_FAILED, EXIT_OK, StoreFailure
from streamer.housekeeping.cleanup import CleanupReport, Survey, cleanup_series, survey_series
from streamer.housekeeping.lock import BackupLock
from streamer.housekeeping.retention import PruneReport, prune_series
from streamer.layout.base import Layout
from streamer.layout.catalog import RunListing
from streamer.model import Series
from streamer.settings.config import Config
from streamer.store.base import ObjectStore


@dataclass
class SeriesCleanup:
    """The cleanup of one series: per region what was aborted and removed."""

    series: Series
    holding_lock: bool = True
    lock_message: str = ""  # why the lock was not taken
    horizon: float = 0.0  # seconds; what was cleaned without the lock
    delete_runs: bool = True  # False (STREAMER_PRUNE=off): abandoned runs are the lifecycle rules'
    reports: list[CleanupReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    stalled: dict[int, str] = field(default_factory=dict)  # region index -> why (stall timeout)


# One region's cleanup listing taken ahead (``survey_all``): the surveys, or
# why the listing failed (a StoreFailure, or TimeoutError past the bound).
Surveyed = dict[int, list[Survey] | StoreFailure | TimeoutError]


async def survey_all(clients: list[ObjectStore], layout: Layout, series: Series,
                     delete_runs: bool, bound: float | None, into: Surveyed,
                     lock: BackupLock | None = None) -> None:
    """Take the cleanup's listing of ``series`` in every region at once, into
    ``into``; a backup runs it while ``lock`` is claimed (docs/ARCHITECTURE.md,
    "Start-up and tear-down"), and ``clean_series`` then acts on it.  A region
    that did not answer the lock claim is given up at once: it takes no further
    part in the run (docs/RELIABILITY.md)."""
    prefixes = layout.cleanup_prefixes(series)

    async def one(client: ObjectStore) -> None:
        async with anyio.create_task_group() as tg:
            if lock is not None:
                tg.start_soon(_unless_unanswered, lock, client.index, tg.cancel_scope)
            try:
                with anyio.fail_after(bound):
                    into[client.index] = await survey_series(client, prefixes, delete_runs)
            except (StoreFailure, TimeoutError) as e:
                into[client.index] = e
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(one, client)


async def _unless_unanswered(lock: BackupLock, index: int, scope: anyio.CancelScope) -> None:
    await lock.settled.wait()
    if index in lock.unanswered:
        scope.cancel()


async def clean_series(clients: list[ObjectStore], layout: Layout, series: Series,
                       horizon: float, cleanup: SeriesCleanup,
                       bound: float | None = None,
                       surveyed: Surveyed | None = None) -> SeriesCleanup:
    """Clean ``series`` in every region at once, into ``cleanup``; a region
    that takes longer than ``bound`` seconds (the stall timeout) is left.
    ``surveyed``: the listings ``survey_all`` took (a region missing there is
    listed here)."""
    prefixes = layout.cleanup_prefixes(series)
    span = timedelta(seconds=horizon)
    cleanup.horizon = horizon

    async def one(client: ObjectStore) -> None:
        try:
            found = (surveyed or {}).get(client.index)
            if isinstance(found, Exception):
                raise found
            with anyio.fail_after(bound):
                r = await cleanup_series(client, prefixes, datetime.now(UTC), span,
                                         cleanup.holding_lock, cleanup.delete_runs, found)
        except StoreFailure as e:
            cleanup.problems.append(str(e))
            return
        except TimeoutError:
            reason = f"{client.label}: cleanup: no progress for {bound:.0f} s (stall timeout)"
            cleanup.problems.append(reason)
            cleanup.stalled[client.index] = reason
            return
        cleanup.problems.extend(r.errors)
        cleanup.reports.append(r)

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(one, client)
    return cleanup


@dataclass(frozen=True)
class SeriesPruned:
    series: Series
    keep: int
    report: PruneReport


@dataclass
class PruneResult:
    """Retention over some series: per series and region what was kept and removed."""

    skipped: str | None = None  # why retention does not apply (the layout's reason)
    pruned: list[SeriesPruned] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.errors else EXIT_OK


async def prune_all(config: Config, layout: Layout, clients: list[ObjectStore],
                    series: list[Series],
                    listed: Mapping[tuple[Series, int], list[RunListing]] | None = None
                    ) -> PruneResult:
    """Retention (STREAMER_KEEP_*) for every series in every region at once;
    ``listed``: runs already listed (series, region index), not listed again."""
    result = PruneResult()

    async def one(client: ObjectStore, s: Series) -> None:
        keep = config.keep[s.periodicity]
        try:
            with anyio.fail_after(config.stall_timeout):
                report = await prune_series(client, layout, s, keep,
                                            (listed or {}).get((s, client.index)))
            result.pruned.append(SeriesPruned(s, keep, report))
        except StoreFailure as e:
            result.errors.append(f"{s}: {e}")
        except TimeoutError:
            result.errors.append(f"{s}: {client.label}: no progress for "
                                 f"{config.stall_timeout:.0f} s (stall timeout)")

    async with anyio.create_task_group() as tg:
        for s in series:
            for client in clients:
                tg.start_soon(one, client, s)
    result.pruned.sort(key=lambda p: (p.series.build, p.series.periodicity.value, p.report.region))
    return result
