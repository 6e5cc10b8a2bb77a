"""Commands as async functions: what the CLI runs once config is parsed."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import anyio

from streamer import model
from streamer.errors import EXIT_FAILED, StoreFailure
from streamer.model import Periodicity
from streamer.pipeline.run import BackupResult, Observer, run_backup
from streamer.process import ProcessSource
from streamer.report.progress import LogProgress, TerminalProgress
from streamer.settings.config import Config
from streamer.settings.ops import OpsConfig
from streamer.store.base import ObjectStore
from streamer.store.s3 import open_stores


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def print_result(result: BackupResult) -> None:
    for art in result.artifacts:
        if not art.finished:
            continue
        secs = max(art.finished - art.started, 1e-9)
        rate = art.source_bytes / secs / 1e6
        print(f"{art.name}: {_mb(art.source_bytes)} read, {_mb(art.stored_bytes)} stored in "
              f"{art.parts} parts, {rate:.1f} MB/s, sha256 {art.sha256[:16]}")
    for r in result.regions:
        line = f"region {r.index} ({r.endpoint}): {r.status}"
        if r.error:
            line += f": {r.error}"
        print(line)
    for w in result.warnings:
        print(f"warning: {w}")
    if result.exit_code != EXIT_FAILED:
        print(f"committed {result.build}/{result.periodicity}/{result.stamp} in "
              f"{len(result.committed)} of {len(result.regions)} regions")


def make_observer(config: Config, quiet: bool = False) -> Observer | None:
    """A live table on a terminal, plain progress lines off it, nothing when quiet."""
    if quiet:
        return None
    if sys.stderr.isatty():
        return TerminalProgress()
    return LogProgress(config.progress_interval)


async def backup_command(config: Config, periodicity: Periodicity, build: str,
                         ops: OpsConfig | None = None, quiet: bool = False) -> BackupResult:
    """Lock, clean up, back up, apply retention, unlock (DESIGN.md section 4).

    The lock (lock.py) is taken before anything is uploaded: a run that finds
    it held exits 4.  Holding it, the run aborts what killed runs of this build
    and periodicity left (cleanup.py), dumps and uploads, and after a commit
    applies retention (retention.py) in every region."""
    from datetime import UTC, datetime

    from streamer.commands.maintenance import clean_regions, cleaner, lock_key, prune_all
    from streamer.housekeeping.lock import BackupLock, hold_lock, new_holder
    from streamer.layout import adt
    from streamer.layout.catalog import CATALOG_POLICY
    from streamer.pipeline.webroot import webroot_source

    ops = ops or OpsConfig()
    cfg = adt.for_layout(config, periodicity)
    webroot_source(cfg.webroot, cfg.excludes, cfg.persist_assets)  # config errors before the lock
    started = datetime.now(UTC)
    what = f"{build}/{periodicity.value}"
    placement = before_commit = None
    if cfg.layout == "adt":
        placement = adt.placement(cfg)
        names = [adt.WEBROOT_OBJECT] + ([adt.database_object(cfg)]
                                        if cfg.database.engine != "none" else [])

        async def keep_previous(client: ObjectStore) -> None:
            await adt.keep_previous(client, tuple(names))

        before_commit = keep_previous
    async with open_stores(cfg, CATALOG_POLICY) as clients:
        await _ensure_buckets(clients)
        lock = BackupLock(clients, lock_key(cfg, build, periodicity), what, ops.lock_lease,
                          new_holder(model.stamp(started), ops.lock_lease, started))
        async with hold_lock(lock):
            for stale in [] if quiet else lock.taken_over:
                print(f"warning: took over the backup lock of {stale.host} pid {stale.pid} "
                      f"(run {stale.run}): its lease had expired or its process is gone")
            problems = await clean_regions(clients, cleaner(cfg, build, periodicity,
                                                            ops.cleanup_horizon),
                                           True, what, quiet_if_nothing=True)
            for problem in problems:
                print(f"warning: cleanup: {problem}", file=sys.stderr)
            async with contextlib.AsyncExitStack() as stack:
                extra: list[tuple[ProcessSource, dict[str, Any]]] = []
                if cfg.database.engine != "none":
                    from streamer.db.dump import prepare_dump

                    dump = await stack.enter_async_context(prepare_dump(cfg.database))
                    extra.append((dump.source, dump.info.to_manifest()))
                result = await run_backup(cfg, periodicity, build, extra_sources=extra,
                                          observer=make_observer(cfg, quiet), now=started,
                                          placement=placement, before_commit=before_commit)
            if result.exit_code != EXIT_FAILED and cfg.layout != "adt":
                with anyio.CancelScope(shield=True):
                    if await prune_all(cfg, clients, [(build, periodicity)],
                                       quiet_if_nothing=True) != 0:
                        result.warnings.append("retention incomplete (see above); "
                                               "`streamer prune` retries it")
    if not quiet:
        try:
            print_result(result)
        except BrokenPipeError:
            pass  # stdout went away (a closed pipe): the backup's own result stands
    if result.error:
        print(f"streamer: backup failed: {result.error} "
              "(nothing new committed; earlier backups untouched)", file=sys.stderr)
    return result


async def _ensure_buckets(clients: list[ObjectStore]) -> None:
    """Create the bucket where missing, so the lock can be written (errors: later)."""
    async def one(client: ObjectStore) -> None:
        with contextlib.suppress(StoreFailure), anyio.move_on_after(client.request_timeout):
            await client.ensure_bucket()

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(one, client)


async def config_check_command(config: Config, create_buckets: bool, json_out: bool) -> int:
    """The effective config (secrets masked) and a probe of each region and the database."""
    import json

    from streamer.commands.check import run_checks
    from streamer.errors import EXIT_OK, EXIT_USAGE

    async with open_stores(config) as clients:
        findings = await run_checks(config, clients, create_buckets)
    problems = [f for f in findings if not f.ok]
    if json_out:
        print(json.dumps({"config": config.describe(),
                          "checks": [f.__dict__ for f in findings],
                          "ok": not problems}, indent=2))
    else:
        print(json.dumps(config.describe(), indent=2))
        width = max(len(f"{f.subject} {f.check}") for f in findings)
        for f in findings:
            mark = "ok  " if f.ok else "FAIL"
            print(f"{mark} {(f.subject + ' ' + f.check).ljust(width)}  {f.detail}")
    for f in problems:
        print(f"streamer: config check: {f.subject}: {f.check}: {f.detail}", file=sys.stderr)
    return EXIT_USAGE if problems else EXIT_OK
