"""One backup run: preflight, stream every artifact to every region, commit.

    preflight   config, database, every region's bucket   (errors: exit 2 / 1)
    stream      webroot and database concurrently, one task group
    commit      complete multipart uploads where every part is in, then
                write manifest.json last in each region -- only if the quorum
                of regions got everything; otherwise abort everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from streamer import codec, model
from streamer.age import AGE_CONTENT_TYPE, AGE_SUFFIX
from streamer.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    BackupFailed,
    ConfigError,
    SourceError,
    StoreFailure,
    first_leaf,
)
from streamer.layout.base import Layout, Placement
from streamer.layout.choice import layout_for
from streamer.model import BackupResult, Observer, Periodicity, Progress, RegionResult, Series
from streamer.pipeline.adapt import LevelController
from streamer.pipeline.budget import ByteBudget
from streamer.pipeline.commit import BeforeCommit, abort_all, commit
from streamer.pipeline.early import EarlySource, compressor_plan
from streamer.pipeline.fanout import ArtifactRun, Fanout, RegionRun, progress, ready_regions
from streamer.pipeline.webroot import webroot_source
from streamer.process import ProcessSource
from streamer.settings.config import Config
from streamer.store.base import ObjectStore, Retention
from streamer.store.negotiate import negotiate
from streamer.store.s3 import open_stores

PREFLIGHT_ATTEMPTS = 3


async def preflight_regions(clients: list[ObjectStore], stall_timeout: float | None = None,
                            object_lock: bool = False,
                            extra_buckets: tuple[str, ...] = (),
                            probe_under: str | None = None) -> list[RegionRun]:
    """Check (and create) the bucket, and ``extra_buckets`` (the layout's), in
    every region, concurrently; a region that makes no progress for the stall
    timeout is dropped.  ``object_lock`` (STREAMER_OBJECT_LOCK_DAYS set): a
    bucket is created with Object Lock, and one without it is a configuration
    error (exit 2) before anything is uploaded, since every object of the run
    is to carry a retain-until date.  ``probe_under`` (STREAMER_CHECKSUM=auto):
    then each region's part checksum is chosen (store/negotiate.py: cached, or
    probed once in the checked bucket with an upload under that key prefix --
    the series' own, so a probe a kill left behind is aborted by the cleanup
    that aborts the series' other unfinished uploads)."""
    runs = [RegionRun(c) for c in clients]
    unlocked: list[str] = []

    async def check(run: RegionRun) -> None:
        limit = run.client.request_timeout * PREFLIGHT_ATTEMPTS + 30
        limit = limit if stall_timeout is None else min(limit, stall_timeout)
        try:
            with anyio.fail_after(limit):
                for store in (run.client, *(run.client.sibling(n) for n in extra_buckets)):
                    await store.ensure_bucket(object_lock)
                    if object_lock and not (await store.bucket_lock()).enabled:
                        unlocked.append(run.label)
                        break
            if probe_under is not None:
                await negotiate(run.client, prefix=probe_under)
        except (StoreFailure, TimeoutError) as e:
            run.alive = False
            run.failure = str(e) if isinstance(e, StoreFailure) else \
                f"{run.label}: bucket check: no progress for {limit:.0f} s (stall timeout)"

    async with anyio.create_task_group() as tg:
        for run in runs:
            tg.start_soon(check, run)
    if unlocked:
        raise ConfigError(f"STREAMER_OBJECT_LOCK_DAYS is set but the bucket has no Object Lock in "
                          f"{', '.join(sorted(unlocked))}", "create the bucket with Object Lock "
                          "(`streamer config check --create-buckets` does for a new one) or unset it")
    return runs


def probe_prefix(layout: Layout, series: Series) -> str:
    """Where a backup's checksum probe puts its upload: under the series' first
    cleanup prefix, so that a probe a kill left behind is cleaned up with the
    series' other unfinished uploads (housekeeping/cleanup.py)."""
    under = layout.cleanup_prefixes(series)[0].prefix
    return under + ("streamer-probe-" if under.endswith("/") else ".streamer-probe-")


def run_retention(config: Config, started: datetime) -> Retention | None:
    """The retain-until date of every object of a run started at ``started``
    (STREAMER_OBJECT_LOCK_DAYS after it), or None without Object Lock."""
    if not config.object_lock_days:
        return None
    return Retention(config.object_lock_mode, started + timedelta(days=config.object_lock_days))


def require_quorum(regions: list[RegionRun], quorum: int) -> None:
    """BackupFailed unless at least ``quorum`` regions passed the bucket check."""
    live = [r for r in regions if r.alive]
    if len(live) < quorum:
        failures = "; ".join(r.failure or "" for r in regions if not r.alive)
        raise BackupFailed(f"only {len(live)} of {len(regions)} regions reachable, "
                           f"quorum is {quorum}: {failures}",
                           "nothing was uploaded; fix the region or lower STREAMER_QUORUM")


async def run_backup(config: Config, periodicity: Periodicity, build: str, *,
                     extra_sources: list[tuple[ProcessSource, dict[str, Any]]] | None = None,
                     now: datetime | None = None, observer: Observer | None = None,
                     layout: Layout | None = None,
                     clients: list[ObjectStore] | None = None,
                     regions: list[RegionRun] | None = None,
                     early: EarlySource | None = None) -> BackupResult:
    """Back up the webroot (and ``extra_sources``, e.g. the database dump).

    ``layout`` (default: the configured one) says the codec and the objects'
    names, and acts in each region just before its uploads are completed (the
    ADT layout keeps the previous copies there); ``clients`` are the run's
    stores, one per region, in the layout's bucket (default: opened here);
    ``regions``, if given, are those stores already through the bucket check
    (``preflight_regions``): a region that failed it is not tried again.
    ``early``: the webroot's source, started before start-up (pipeline/early.py)."""
    layout = layout or layout_for(config)
    started = now or datetime.now(UTC)
    run_stamp = model.stamp(started)
    run_codec = layout.codec
    encrypted = config.encryption.enabled
    placement = layout.placement(Series(build, periodicity), run_stamp,
                                 codec.extension(run_codec.compression) + (AGE_SUFFIX if encrypted else ""))

    def content_type(name: str) -> str:
        return AGE_CONTENT_TYPE if encrypted else codec.content_type(run_codec.compression, name)

    artifacts, excludes, database_meta = _artifacts(config, placement, content_type,
                                                    run_retention(config, started),
                                                    extra_sources or [], early)
    result = BackupResult(EXIT_FAILED, build, periodicity.value, run_stamp, started, started,
                          budget_limit=config.memory_budget)
    async with contextlib.AsyncExitStack() as stack:
        if regions is None:
            if clients is None:
                clients = await stack.enter_async_context(
                    open_stores(config, bucket=layout.bucket(periodicity)))
            probe = probe_prefix(layout, Series(build, periodicity)) if config.checksum == "auto" else None
            regions = await preflight_regions(clients, config.stall_timeout, bool(config.object_lock_days),
                                              tuple(layout.extra_buckets(periodicity)), probe)
        require_quorum(regions, config.effective_quorum)
        fanout, failure = await _stream_all(config, run_codec, regions, artifacts, observer)
        result.warnings.extend(a.warning for a in artifacts if a.warning)
        committed: list[RegionRun] = []
        with anyio.CancelScope(shield=True):
            if failure is None:
                failure = await _commit_or_fail(config, result, artifacts, regions, fanout,
                                                excludes, database_meta, placement,
                                                layout.before_commit, committed)
            await abort_all(artifacts, regions)
        result.budget_peak = fanout.budget.peak
        return _finish(result, artifacts, regions, committed, failure)


def _artifacts(config: Config, placement: Placement, content_type: Callable[[str], str],
               retention: Retention | None,
               extra_sources: list[tuple[ProcessSource, dict[str, Any]]],
               early: EarlySource | None,
               ) -> tuple[list[ArtifactRun], tuple[str, ...], dict[str, Any] | None]:
    """The run's artifacts (the webroot first), the excludes its tar applies,
    and the database's manifest entry (None without one)."""
    webroot_src, excludes = webroot_source(config.webroot, config.excludes, config.persist_assets)
    artifacts = [ArtifactRun("webroot", placement.key("webroot"), webroot_src,
                             content_type=content_type("webroot"), retention=retention,
                             early=early)]
    database_meta: dict[str, Any] | None = None
    for source, meta in extra_sources:
        artifacts.append(ArtifactRun(source.name, placement.key(source.name), source,
                                     content_type=content_type(source.name),
                                     member=placement.members.get(source.name),
                                     bucket=placement.buckets.get(source.name),
                                     retention=retention))
        database_meta = meta
    return artifacts, excludes, database_meta


async def _stream_all(config: Config, run_codec: codec.Codec, regions: list[RegionRun],
                      artifacts: list[ArtifactRun],
                      observer: Observer | None) -> tuple[Fanout, str | None]:
    """Stream every artifact to every live region, in one task group; returns
    the fan-out and why the run failed (None: every stream ended).  On
    cancellation (SIGINT/SIGTERM) or a bug every upload is aborted first."""
    early = artifacts[0].early
    max_part, high = _compressors(config, run_codec, artifacts, early)
    run_scope = anyio.CancelScope()
    fanout = Fanout(config, regions, ByteBudget(config.memory_budget), max_part,
                    run_scope.cancel, run_codec)
    if artifacts[0].early is not None:
        await _adopt_spool(fanout, artifacts[0].early)
    failure: str | None = None
    try:
        try:
            with run_scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(fanout.watch_stalls)
                    if fanout.dial is not None:
                        tg.start_soon(fanout.adapt_levels, LevelController(
                            run_codec.level, codec.AUTO_LOW, high))
                    if observer is not None:
                        tg.start_soon(_watch, observer, lambda: progress(fanout, artifacts))
                    async with anyio.create_task_group() as streams:
                        for art in artifacts:
                            streams.start_soon(fanout.stream, art)
                    fanout.pool.drain()
                    tg.cancel_scope.cancel()
        except* SourceError as group:
            failure = str(first_leaf(group))
    except BaseException:  # cancelled (SIGINT/SIGTERM) or a bug: abort, then re-raise
        with anyio.CancelScope(shield=True):
            await abort_all(artifacts, regions)
        raise
    if run_scope.cancelled_caught and failure is None:
        failure = "too few regions left: " + "; ".join(
            r.failure or "" for r in regions if not r.alive)
    return fanout, failure


def _compressors(config: Config, run_codec: codec.Codec, artifacts: list[ArtifactRun],
                 early: EarlySource | None) -> tuple[int, int]:
    """Each artifact's zstd threads and the budget its compressor reserves
    (pipeline/early.compressor_plan: the early start's threads, if one runs);
    returns the largest part and the adaptive level's ceiling."""
    plan = compressor_plan(config, run_codec, len(artifacts), early.plan.threads if early else None)
    if run_codec.compression == "zstd":
        artifacts[0].compress_threads = plan.threads
        for art, reserve in zip(artifacts, plan.reserves, strict=True):
            art.reserve = reserve
    if early is not None:
        if plan == early.plan and early.source == artifacts[0].source:
            return plan.max_part, plan.high
        early.close()  # started for another plan: the run starts its own tar
        artifacts[0].early = None
    return plan.max_part, plan.high


async def _adopt_spool(fanout: Fanout, early: EarlySource) -> None:
    """Stop the early fill and count its buffers in the run's budget, before
    any stream takes one (so the run's total stays within the budget); the
    early dial (at the starting level) becomes the run's."""
    await anyio.to_thread.run_sync(early.stop_filling)
    for body, _ in early.spooled():
        fanout.pool.adopt(body)
    fanout.dial = early.dial


async def _commit_or_fail(config: Config, result: BackupResult, artifacts: list[ArtifactRun],
                          regions: list[RegionRun], fanout: Fanout, excludes: tuple[str, ...],
                          database_meta: dict[str, Any] | None, placement: Placement,
                          before_commit: BeforeCommit | None,
                          committed: list[RegionRun]) -> str | None:
    """Commit where the quorum allows (filling ``committed``); returns why not, or None."""
    quorum = config.effective_quorum
    ready = ready_regions(artifacts, regions)
    if len(ready) < quorum:
        return f"only {len(ready)} regions received every part, quorum is {quorum}"
    done = await commit(config, result, artifacts, ready, excludes, database_meta, fanout,
                        placement, before_commit)
    if len(done) < quorum:
        return f"only {len(done)} regions committed, quorum is {quorum}"
    committed.extend(done)
    return None


async def _watch(observer: Observer, progress_now: Callable[[], Progress]) -> None:
    """Progress display never changes a backup's outcome: its errors end only itself."""
    try:
        await observer.watch(progress_now)
    except Exception:
        return


def _finish(result: BackupResult, artifacts: list[ArtifactRun], regions: list[RegionRun],
            committed: list[RegionRun], failure: str | None) -> BackupResult:
    """The result's regions and exit code: 0 all committed, 3 the quorum, 1 none."""
    result.ended = datetime.now(UTC) if failure else result.ended
    result.artifacts = [a.result() for a in artifacts]
    committed_ids = {r.index for r in committed}
    for r in regions:
        if r.index in committed_ids:
            result.regions.append(RegionResult(r.index, r.client.endpoint, "committed"))
        else:
            result.regions.append(RegionResult(r.index, r.client.endpoint,
                                               "failed" if r.failure else "aborted",
                                               r.failure))
    if failure is not None:
        result.error = failure
        result.exit_code = EXIT_FAILED
    elif len(committed) == len(regions):
        result.exit_code = EXIT_OK
    else:
        result.exit_code = EXIT_PARTIAL
    return result

