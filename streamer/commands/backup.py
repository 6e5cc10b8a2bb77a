"""``streamer backup``: lock, clean up, back up, apply retention, unlock.

The bucket check comes first: a region that fails it (down, refusing, or a
black hole for the stall timeout) takes no further part in this run, so a dead
region costs the run one stall timeout at most, not one per phase
(docs/RELIABILITY.md).  The lock (housekeeping/lock.py) is taken before
anything is uploaded: a run that finds it held exits 4.  Holding it, the run
aborts what killed runs of this series left (housekeeping/cleanup.py), dumps
and uploads (pipeline/run.py), and after a commit applies retention
(housekeeping/retention.py) in the regions that committed, where the layout
keeps more than one run.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from streamer import model
from streamer.commands.assets import AssetsResult, assets_run
from streamer.commands.common import (
    PruneResult,
    SeriesCleanup,
    Surveyed,
    clean_series,
    prune_all,
    survey_all,
)
from streamer.commands.heal import HealRequest, HealResult, heal_clients
from streamer.db import PendingDump
from streamer.errors import EXIT_FAILED, EXIT_PARTIAL, StreamerError
from streamer.housekeeping.lease import Holder, new_holder
from streamer.housekeeping.lock import BackupLock, hold_lock
from streamer.layout.base import Layout
from streamer.layout.choice import layout_for
from streamer.model import BackupResult, Observer, Series
from streamer.pipeline.budget import check_budget_fits
from streamer.pipeline.early import EarlySource
from streamer.pipeline.fanout import RegionRun
from streamer.pipeline.run import preflight_regions, probe_prefix, require_quorum, run_backup
from streamer.pipeline.webroot import webroot_source
from streamer.process import ProcessSource
from streamer.settings.config import Config
from streamer.settings.ops import OpsConfig
from streamer.store.base import ObjectStore
from streamer.store.s3 import open_stores


@dataclass(frozen=True)
class BackupRequest:
    config: Config
    series: Series
    ops: OpsConfig = field(default_factory=OpsConfig)
    observer: Observer | None = None  # the progress display (report/progress.py)
    early: EarlySource | None = None  # the webroot's tar, already running (pipeline/early.py)


@dataclass
class BackupOutcome:
    """What a backup did: the run's result, and the housekeeping around it.

    ``error``: the run failed with a user-facing error after it started (the
    lock held elsewhere, a region missing, a source failing...); what happened
    before it is still here to be shown."""

    series: Series
    result: BackupResult | None = None
    taken_over: list[Holder] = field(default_factory=list)
    cleanup: SeriesCleanup | None = None
    retention: PruneResult | None = None
    heal: HealResult | None = None  # the runs of this series given to regions that lacked them
    assets: AssetsResult | None = None  # the assets copy (STREAMER_ASSETS_EVERY)
    error: StreamerError | None = None

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        assert self.result is not None
        return self.result.exit_code


async def backup(request: BackupRequest) -> BackupOutcome:
    """Run one backup of ``request.series``; user-facing errors end up in ``error``."""
    config, series = request.config, request.series
    layout = layout_for(config)
    bucket = layout.bucket(series.periodicity)
    # Configuration errors first, before the lock (exit 2, nothing started).
    webroot_source(config.webroot, config.excludes, config.persist_assets)
    check_budget_fits(config.memory_budget)
    outcome = BackupOutcome(series)
    started = datetime.now(UTC)
    try:
        # One store per region for the whole run: the lock, cleanup, the
        # upload, heal and retention share its connections (each call says
        # how quickly it gives up on a dead region: LOCK_POLICY, CATALOG_READS).
        # The database's preflight runs beside the regions' checks
        # (docs/ARCHITECTURE.md, "Start-up and tear-down").
        async with open_stores(config, bucket=bucket) as all_clients:
            clients: list[ObjectStore] = []
            async with anyio.create_task_group() as tg:
                pending = None
                if config.database.engine != "none":
                    pending = PendingDump(config.database)
                    tg.start_soon(pending.hold)
                try:  # errors kept here: the task group would wrap them in an ExceptionGroup
                    clients = await _locked_run(request, layout, all_clients, outcome, started,
                                                pending)
                except StreamerError as e:
                    outcome.error = e
                finally:
                    if pending is not None:
                        with anyio.CancelScope(shield=True):
                            try:
                                await pending.close()
                            except StreamerError as e:
                                outcome.error = outcome.error or e
            if outcome.error is None and outcome.result is not None \
                    and outcome.result.exit_code != EXIT_FAILED \
                    and config.assets.runs_with(series.periodicity):
                outcome.assets = await _assets_after(request, clients, outcome.result, started)
    except StreamerError as e:
        outcome.error = e
    return outcome


async def _locked_run(request: BackupRequest, layout: Layout, all_clients: list[ObjectStore],
                      outcome: BackupOutcome, started: datetime,
                      pending: PendingDump | None) -> list[ObjectStore]:
    """Bucket check, then the lock with the cleanup's listing beside it,
    cleanup, the run, heal and retention, in the lock; the stores of the
    regions still in the run.  Long: the phases of a backup in order, each
    dropping the regions that failed it (``_drop``)."""
    config, series = request.config, request.series
    quorum = config.effective_quorum
    regions = await preflight_regions(all_clients, config.stall_timeout,
                                      bool(config.object_lock_days),
                                      tuple(layout.extra_buckets(series.periodicity)),
                                      probe_prefix(layout, series) if config.checksum == "auto" else None)
    require_quorum(regions, quorum)
    clients = _drop(regions, {}, quorum)
    lock = BackupLock(clients, layout.lock_key(series), str(series), request.ops.lock_lease,
                      new_holder(model.stamp(started), request.ops.lock_lease, started))
    surveyed: Surveyed = {}
    listing = functools.partial(survey_all, clients, layout, series, config.prune,
                                config.stall_timeout, surveyed, lock)
    async with hold_lock(lock, beside=listing):
        outcome.taken_over = list(lock.taken_over)
        clients = _drop(regions, lock.unanswered, quorum)
        outcome.cleanup = await clean_series(clients, layout, series,
                                             request.ops.cleanup_horizon,
                                             SeriesCleanup(series, delete_runs=config.prune),
                                             config.stall_timeout, surveyed)
        clients = _drop(regions, outcome.cleanup.stalled, quorum)
        extra: list[tuple[ProcessSource, dict[str, Any]]] = []
        if pending is not None:
            dump = await pending.get()
            extra.append((dump.source, dump.info.to_manifest()))
        result = outcome.result = await run_backup(
            config, series.periodicity, series.build, extra_sources=extra,
            observer=request.observer, now=started, layout=layout, regions=regions,
            early=request.early)
        if pending is not None:
            await pending.close()  # the snapshot is not held through heal and retention
        if result.exit_code != EXIT_FAILED:
            outcome.heal = await _heal_after(request, layout, clients, result)
        if result.exit_code != EXIT_FAILED and layout.no_retention is None and config.prune:
            # Only where this run committed: elsewhere the older runs
            # may be all that region has (it is healed first).
            committed = {r.index for r in result.committed}
            with anyio.CancelScope(shield=True):
                retention = outcome.retention = await prune_all(
                    config, layout, [c for c in clients if c.index in committed], [series],
                    outcome.heal.listed_unchanged() if outcome.heal else None)
            if retention.errors:
                result.warnings.append("retention incomplete (see above); "
                                       "`streamer prune` retries it")
    return clients


async def _heal_after(request: BackupRequest, layout: Layout, clients: list[ObjectStore],
                      result: BackupResult) -> HealResult | None:
    """After the run's own commit: record where it is missing, then give the
    regions that just committed the newest runs of the series they lack
    (copied from a region holding them), for at most STREAMER_HEAL_LIMIT.
    Whatever heal does, the backup's exit code is its own run's."""
    if result.exit_code == EXIT_PARTIAL:
        result.warnings.extend(
            f"region {r.index} lacks this run; `streamer heal` or the next backup copies it there"
            for r in result.regions if r.status != "committed")
    limit = request.ops.heal_limit
    if limit <= 0 or layout.no_heal is not None:
        return None
    targets = frozenset(r.index for r in result.committed)
    try:
        healed = await heal_clients(request.config, layout, clients, [request.series],
                                    HealRequest(check_etags=False, targets=targets, limit=limit,
                                                keep_listings=True))
    except StreamerError as e:
        result.warnings.append(f"heal: {e}")
        return None
    if healed.remaining:
        result.warnings.append("heal incomplete (see above); `streamer heal` retries it")
    return healed


async def _assets_after(request: BackupRequest, clients: list[ObjectStore],
                        result: BackupResult, started: datetime) -> AssetsResult | None:
    """After the commit and outside the backup lock: the assets copy, its index
    beside the run's manifest.  Its failure is a warning; the exit code stays
    the run's own (README, "The assets buckets")."""
    series = request.series
    try:
        done = await assets_run(request.config, request.ops, series.build, clients,
                                series.periodicity, started)
    except StreamerError as e:
        result.warnings.append(f"assets not copied: {e}; `streamer assets` retries it")
        return None
    if done.exit_code:
        result.warnings.append("assets copy incomplete (see above); `streamer assets` retries it")
    return done


def _drop(regions: list[RegionRun], failed: dict[int, str], quorum: int) -> list[ObjectStore]:
    """Mark the regions that failed a step before the upload as failed, so no
    later phase waits on them again (docs/RELIABILITY.md, the bound on a run);
    the stores of the regions still in the run (BackupFailed below the quorum)."""
    for region in regions:
        if region.alive and region.index in failed:
            region.alive = False
            region.failure = failed[region.index]
    require_quorum(regions, quorum)
    return [r.client for r in regions if r.alive]
