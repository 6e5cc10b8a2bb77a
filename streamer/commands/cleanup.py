"""``streamer cleanup``: what killed runs left behind, per series.

With the series' lock (if free) everything unfinished is aborted; without it
only what is older than the horizon (housekeeping/cleanup.py explains why).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from streamer.commands.common import SeriesCleanup, clean_series
from streamer.errors import EXIT_FAILED, EXIT_OK, BackupFailed, LockHeld
from streamer.housekeeping.lease import new_holder
from streamer.housekeeping.lock import BackupLock
from streamer.layout.base import Layout
from streamer.layout.catalog import CATALOG_POLICY
from streamer.layout.choice import layout_for
from streamer.model import Periodicity, Series
from streamer.settings.config import Config
from streamer.settings.ops import OpsConfig
from streamer.store.base import ObjectStore
from streamer.store.s3 import open_stores


@dataclass
class CleanupResult:
    series: list[SeriesCleanup] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [p for s in self.series for p in s.problems]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.problems else EXIT_OK


async def cleanup(config: Config, ops: OpsConfig, periodicity: Periodicity | None = None,
                  build: str | None = None) -> CleanupResult:
    layout = layout_for(config)
    result = CleanupResult()
    for scope in layout.scopes(periodicity):
        async with open_stores(config, CATALOG_POLICY, bucket=layout.bucket(scope)) as clients:
            for series in await layout.find_series(clients, scope, build):
                result.series.append(await _clean_one(clients, layout, series, ops,
                                                      config.prune))
    return result


async def _clean_one(clients: list[ObjectStore], layout: Layout, series: Series,
                     ops: OpsConfig, delete_runs: bool = True) -> SeriesCleanup:
    lock = BackupLock(clients, layout.lock_key(series), str(series), ops.lock_lease,
                      new_holder("cleanup", ops.lock_lease))
    done = SeriesCleanup(series, delete_runs=delete_runs)
    try:
        await lock.acquire()
    except (LockHeld, BackupFailed) as e:
        done.holding_lock = False
        done.lock_message = e.message
    try:
        return await clean_series(clients, layout, series, ops.cleanup_horizon, done)
    finally:
        if done.holding_lock:
            with anyio.CancelScope(shield=True):
                await lock.release()
