"""The commands around the backup: restore, verify, list, prune, cleanup.

Each takes the parsed Config (and the housekeeping settings, ops.py), opens
one client per region, and returns an exit code; failures the operator can act
on are raised as StreamerError (one line on stderr, its exit code).  Both
layouts are served: the streamer layout (``{build}/{periodicity}/{stamp}/``)
and the ADT layout (one bucket per periodicity, adt.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from streamer.errors import EXIT_FAILED, EXIT_OK, BackupFailed, ConfigError, LockHeld, StoreFailure
from streamer.housekeeping.cleanup import CleanupReport, cleanup_prefix, cleanup_series
from streamer.housekeeping.lock import BackupLock, new_holder
from streamer.housekeeping.retention import PruneReport, prune_series
from streamer.layout import adt
from streamer.layout import streamer as layout
from streamer.layout.catalog import (
    CATALOG_POLICY,
    CATALOG_READS,
    RunListing,
    all_series,
    bucket_runs,
    series_runs,
)
from streamer.model import Periodicity
from streamer.readback.restore import RestoreRequest, RunsOf, restore_run
from streamer.readback.verify import verify_run
from streamer.settings.config import Config
from streamer.settings.ops import OpsConfig
from streamer.store.base import ObjectStore
from streamer.store.s3 import open_stores


def runs_of(config: Config, build: str, periodicity: Periodicity) -> RunsOf:
    """How to list one build's runs of one periodicity, in the configured layout."""
    if config.layout == "adt":
        return lambda client: adt.adt_runs(client, build, periodicity, config)
    return lambda client: series_runs(client, build, periodicity)


def lock_key(config: Config, build: str, periodicity: Periodicity) -> str:
    return adt.LOCK if config.layout == "adt" else layout.lock_key(build, periodicity)


# ---------------------------------------------------------------- restore, verify


async def restore_command(config: Config, request: RestoreRequest) -> int:
    cfg = adt.for_layout(config, request.periodicity)
    async with open_stores(cfg, CATALOG_POLICY) as clients:
        return await restore_run(cfg, clients, runs_of(cfg, request.build, request.periodicity),
                                 request)


async def verify_command(config: Config, periodicity: Periodicity, build: str,
                         at: str | None) -> int:
    cfg = adt.for_layout(config, periodicity)
    async with open_stores(cfg, CATALOG_POLICY) as clients:
        return await verify_run(cfg, clients, runs_of(cfg, build, periodicity),
                                f"{build}/{periodicity.value}", at)


# ---------------------------------------------------------------- list


def age(seconds: float) -> str:
    """A short human age: 45s, 5m03s, 2h05m, 3d04h (pure)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def run_record(run: RunListing, now: datetime) -> dict[str, Any]:
    return {"build": run.build, "periodicity": run.periodicity.value, "stamp": run.stamp,
            "age_seconds": int((now - run.when).total_seconds()), "size": run.size,
            "artifacts": run.artifact_sizes(),
            **({"previous_copy": True} if run.key_suffix else {})}


async def list_command(config: Config, periodicity: Periodicity | None, build: str | None,
                       json_out: bool) -> int:
    now = datetime.now(UTC)
    periods: list[Periodicity | None] = [periodicity]  # None: every periodicity at once
    if config.layout == "adt" and periodicity is None:
        periods = list(Periodicity)  # one bucket each
    found: dict[int, list[RunListing]] = {}
    errors: dict[int, str] = {}
    labels: dict[int, tuple[str, str]] = {}
    for p in periods:
        cfg = adt.for_layout(config, p) if p is not None else config
        async with open_stores(cfg, CATALOG_POLICY) as clients:
            async def one(client: ObjectStore, p: Periodicity | None = p, cfg: Config = cfg) -> None:
                index = client.index
                labels[index] = (client.label, client.endpoint)
                try:
                    if cfg.layout == "adt":
                        assert p is not None
                        runs = await adt.adt_runs(client, build, p, cfg)
                    else:
                        runs = await bucket_runs(client, build, p)
                    found.setdefault(index, []).extend(r for r in runs if r.committed)
                except StoreFailure as e:
                    errors[index] = str(e)

            async with anyio.create_task_group() as tg:
                for client in clients:
                    tg.start_soon(one, client)
    indices = sorted(labels)
    if json_out:
        print(json.dumps({"regions": [
            {"index": i, "endpoint": labels[i][1], "ok": i not in errors, "error": errors.get(i),
             "backups": [run_record(r, now) for r in sorted(found.get(i, []), key=_order)]}
            for i in indices]}, indent=2))
    else:
        for i in indices:
            runs = sorted(found.get(i, []), key=_order)
            if i in errors:
                print(f"{labels[i][0]}: unreachable: {errors[i]}")
                continue
            print(f"{labels[i][0]}: {len(runs)} committed backup{'s' if len(runs) != 1 else ''}")
            for r in runs:
                arts = "  ".join(f"{name} {_mb(size)}"
                                 for name, size in sorted(r.artifact_sizes().items()))
                mark = "  (previous copy, .BACKUP)" if r.key_suffix else ""
                when = age((now - r.when).total_seconds())
                print(f"  {r.build}/{r.periodicity.value}/{r.stamp}  age {when}"
                      f"  {arts}  total {_mb(r.size)}{mark}")
    if errors:
        print("streamer: list incomplete: " + "; ".join(errors[i] for i in sorted(errors)),
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _order(run: RunListing) -> tuple[str, str, str]:
    return (run.build, run.periodicity.value, run.stamp)


# ---------------------------------------------------------------- prune, cleanup


async def _series(clients: list[ObjectStore], periodicity: Periodicity | None,
                  build: str | None) -> list[tuple[str, Periodicity]]:
    """The (build, periodicity) pairs to work on: given, or every one found in any region."""
    if periodicity is not None and build is not None:
        return [(build, periodicity)]
    keys: set[str] = set()

    async def one(client: ObjectStore) -> None:
        try:
            prefix = f"{build}/" if build else ""
            keys.update(o.key for o in await client.list_objects(prefix, policy=CATALOG_READS))
            keys.update(u.key for u in await client.list_uploads(prefix, policy=CATALOG_READS))
        except StoreFailure:
            pass  # reported by the per-region work below

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(one, client)
    return [(b, p) for b, p in all_series(keys) if periodicity is None or p is periodicity]


async def prune_command(config: Config, periodicity: Periodicity | None, build: str | None) -> int:
    if config.layout == "adt":
        print("ADT layout: each periodicity keeps the current copy and the .BACKUP one; nothing to prune")
        return EXIT_OK
    async with open_stores(config, CATALOG_POLICY) as clients:
        return await prune_all(config, clients, await _series(clients, periodicity, build))


async def prune_all(config: Config, clients: list[ObjectStore],
                    series: list[tuple[str, Periodicity]], quiet_if_nothing: bool = False) -> int:
    reports: list[tuple[str, Periodicity, PruneReport]] = []
    errors: list[str] = []

    async def one(client: ObjectStore, build: str, p: Periodicity) -> None:
        try:
            reports.append((build, p, await prune_series(client, build, p, config.keep[p])))
        except StoreFailure as e:
            errors.append(f"{build}/{p.value}: {e}")

    async with anyio.create_task_group() as tg:
        for build, p in series:
            for client in clients:
                tg.start_soon(one, client, build, p)
    for build, p, r in sorted(reports, key=lambda x: (x[0], x[1].value, x[2].region)):
        if quiet_if_nothing and not r.removed:
            continue
        removed = f", removed {len(r.removed)}: {' '.join(r.removed)}" if r.removed else ", removed none"
        print(f"retention {build}/{p.value} (keep {config.keep[p]}): {r.region}: "
              f"kept {len(r.kept)}{removed}")
    if errors:
        print("streamer: retention incomplete: " + "; ".join(errors), file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


Cleaner = Callable[[ObjectStore, bool], Awaitable[CleanupReport]]


def cleaner(config: Config, build: str, periodicity: Periodicity, horizon: float) -> Cleaner:
    """One region's cleanup of one build and periodicity, in the configured layout."""
    span = timedelta(seconds=horizon)

    async def streamer_layout(client: ObjectStore, holding: bool) -> CleanupReport:
        return await cleanup_series(client, build, periodicity, datetime.now(UTC), span, holding)

    async def adt_layout(client: ObjectStore, holding: bool) -> CleanupReport:
        aborted, errors = 0, list[str]()
        for key in adt.object_keys(config):
            r = await cleanup_prefix(client, key, datetime.now(UTC), span, holding, with_runs=False)
            aborted += r.aborted
            errors.extend(r.errors)
        return CleanupReport(client.label, aborted, (), tuple(errors))

    return adt_layout if config.layout == "adt" else streamer_layout


async def clean_regions(clients: list[ObjectStore], clean: Cleaner, holding: bool,
                        what: str, quiet_if_nothing: bool = False) -> list[str]:
    """Run ``clean`` in every region; print what was done; return the problems."""
    problems: list[str] = []

    async def one(client: ObjectStore) -> None:
        try:
            r = await clean(client, holding)
        except StoreFailure as e:
            problems.append(str(e))
            return
        problems.extend(r.errors)
        if quiet_if_nothing and not r.aborted and not r.deleted_runs:
            return
        runs = f"{len(r.deleted_runs)} abandoned run(s) {' '.join(r.deleted_runs)}" \
            if r.deleted_runs else "no abandoned runs"
        print(f"cleanup {what}: {client.label}: aborted {r.aborted} unfinished upload(s), "
              f"removed {runs}")

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(one, client)
    return problems


async def cleanup_command(config: Config, ops: OpsConfig, periodicity: Periodicity | None,
                          build: str | None) -> int:
    """Per build and periodicity: with its lock (if free) everything unfinished is
    aborted; without it only what is older than the horizon (cleanup.py)."""
    problems: list[str] = []
    periods = [periodicity] if periodicity else list(Periodicity)
    if config.layout == "adt":
        if build is None:
            raise ConfigError("cleanup in the ADT layout needs the BUILD_IDENTIFIER",
                              "run `streamer cleanup PERIODICITY BUILD_IDENTIFIER`")
        targets = [(adt.adt_config(config, p), [(build, p)]) for p in periods]
    else:
        async with open_stores(config, CATALOG_POLICY) as clients:
            targets = [(config, await _series(clients, periodicity, build))]
    for cfg, series in targets:
        async with open_stores(cfg, CATALOG_POLICY) as clients:
            for b, p in series:
                what = f"{b}/{p.value}"
                lock = BackupLock(clients, lock_key(cfg, b, p), what, ops.lock_lease,
                                  new_holder("cleanup", ops.lock_lease))
                holding = True
                try:
                    await lock.acquire()
                except (LockHeld, BackupFailed) as e:
                    holding = False
                    print(f"cleanup {what}: lock not taken ({e.message}); only what is older than "
                          f"{ops.cleanup_horizon / 3600:g} h is cleaned")
                try:
                    problems += await clean_regions(clients, cleaner(cfg, b, p, ops.cleanup_horizon),
                                                    holding, what)
                finally:
                    if holding:
                        with anyio.CancelScope(shield=True):
                            await lock.release()
    if problems:
        print("streamer: cleanup incomplete: " + "; ".join(problems), file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
