"""``streamer backup``: lock, clean up, back up, apply retention, unlock.

The lock (housekeeping/lock.py) is taken before anything is uploaded: a run
that finds it held exits 4.  Holding it, the run aborts what killed runs of
this series left (housekeeping/cleanup.py), dumps and uploads (pipeline/run.py),
and after a commit applies retention (housekeeping/retention.py) in every
region, where the layout keeps more than one run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from streamer import model
from streamer.commands.common import PruneResult, SeriesCleanup, clean_series, ensure_buckets, prune_all
from streamer.db import prepare_dump
from streamer.errors import EXIT_FAILED, StreamerError
from streamer.housekeeping.lease import Holder, new_holder
from streamer.housekeeping.lock import BackupLock, hold_lock
from streamer.layout.choice import layout_for
from streamer.model import BackupResult, Observer, Series
from streamer.pipeline.budget import check_budget_fits
from streamer.pipeline.run import run_backup
from streamer.pipeline.webroot import webroot_source
from streamer.process import ProcessSource
from streamer.settings.config import Config
from streamer.settings.ops import OpsConfig
from streamer.store.s3 import open_stores


@dataclass(frozen=True)
class BackupRequest:
    config: Config
    series: Series
    ops: OpsConfig = field(default_factory=OpsConfig)
    observer: Observer | None = None  # the progress display (report/progress.py)


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
        # upload and retention share its connections (each call says how
        # quickly it gives up on a dead region: LOCK_POLICY, CATALOG_READS).
        async with open_stores(config, bucket=bucket) as clients:
            await ensure_buckets(clients, config.stall_timeout)
            lock = BackupLock(clients, layout.lock_key(series), str(series), request.ops.lock_lease,
                              new_holder(model.stamp(started), request.ops.lock_lease, started))
            async with hold_lock(lock):
                outcome.taken_over = list(lock.taken_over)
                outcome.cleanup = await clean_series(clients, layout, series,
                                                     request.ops.cleanup_horizon,
                                                     SeriesCleanup(series),
                                                     config.stall_timeout)
                async with contextlib.AsyncExitStack() as stack:
                    extra: list[tuple[ProcessSource, dict[str, Any]]] = []
                    if config.database.engine != "none":
                        dump = await stack.enter_async_context(prepare_dump(config.database))
                        extra.append((dump.source, dump.info.to_manifest()))
                    result = outcome.result = await run_backup(
                        config, series.periodicity, series.build, extra_sources=extra,
                        observer=request.observer, now=started, layout=layout,
                        clients=clients)
                _leave_failed_regions_alone(outcome, result)
                if result.exit_code != EXIT_FAILED and layout.no_retention is None:
                    # Retention only where this run committed: a region the run
                    # dropped has said why once (docs/RELIABILITY.md), and a black
                    # hole there would cost another stall timeout.
                    committed = {r.index for r in result.committed}
                    with anyio.CancelScope(shield=True):
                        retention = outcome.retention = await prune_all(
                            config, layout, [c for c in clients if c.index in committed], [series])
                    if retention.errors:
                        result.warnings.append("retention incomplete (see above); "
                                               "`streamer prune` retries it")
    except StreamerError as e:
        outcome.error = e
    return outcome


def _leave_failed_regions_alone(outcome: BackupOutcome, result: BackupResult) -> None:
    """A region the run dropped is reported once, by its own line: the cleanup's
    problems there (the same fault, met earlier) are not repeated."""
    if outcome.cleanup is None:
        return
    failed = tuple(f"region {r.index} (" for r in result.regions if r.status != "committed")
    if failed:
        outcome.cleanup.problems = [p for p in outcome.cleanup.problems if not p.startswith(failed)]
