"""One backup run: preflight, stream every artifact to every region, commit.

    preflight   config, database, every region's bucket   (errors: exit 2 / 1)
    stream      webroot and database concurrently, one task group
    commit      complete multipart uploads where every part is in, then
                write manifest.json last in each region -- only if the quorum
                of regions got everything; otherwise abort everywhere.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio

from streamer import __version__, model
from streamer.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    BackupFailed,
    SourceError,
    StoreFailure,
)
from streamer.layout import streamer as layout
from streamer.manifest import ArtifactRecord, build_manifest, encode
from streamer.model import Periodicity
from streamer.pipeline.budget import ByteBudget
from streamer.pipeline.fanout import ArtifactRun, Fanout, RegionRun, abort_upload, first_leaf, ready_regions
from streamer.pipeline.sizing import ZSTD_MT_RESERVE, max_part_size
from streamer.pipeline.webroot import webroot_source
from streamer.process import ProcessSource
from streamer.settings.config import Config
from streamer.store.base import ObjectStore
from streamer.store.s3 import open_stores

PREFLIGHT_ATTEMPTS = 3


@dataclass
class RegionResult:
    index: int
    endpoint: str
    status: str  # "committed" | "failed" | "aborted"
    error: str | None = None


@dataclass
class BackupResult:
    exit_code: int
    build: str
    periodicity: str
    stamp: str
    started: datetime
    ended: datetime
    regions: list[RegionResult] = field(default_factory=list)
    artifacts: list[ArtifactRun] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    budget_limit: int = 0
    budget_peak: int = 0

    @property
    def committed(self) -> list[RegionResult]:
        return [r for r in self.regions if r.status == "committed"]


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def preflight_regions(clients: list[ObjectStore]) -> list[RegionRun]:
    """Check (and create) the bucket in every region, concurrently."""
    runs = [RegionRun(c) for c in clients]

    async def check(run: RegionRun) -> None:
        try:
            with anyio.fail_after(run.client.request_timeout * PREFLIGHT_ATTEMPTS + 30):
                await run.client.ensure_bucket()
        except (StoreFailure, TimeoutError) as e:
            run.alive = False
            run.failure = str(e) if isinstance(e, StoreFailure) else f"{run.label}: preflight timed out"

    async with anyio.create_task_group() as tg:
        for run in runs:
            tg.start_soon(check, run)
    return runs


class Observer(Protocol):
    """Watches a running backup (the progress display); cancelled when streams end."""

    async def watch(self, fanout: Fanout, artifacts: list[ArtifactRun]) -> None: ...


BeforeCommit = Callable[[ObjectStore], Awaitable[None]]


async def run_backup(config: Config, periodicity: Periodicity, build: str, *,
                     extra_sources: list[tuple[ProcessSource, dict[str, Any]]] | None = None,
                     now: datetime | None = None, observer: Observer | None = None,
                     placement: layout.Placement | None = None,
                     before_commit: BeforeCommit | None = None) -> BackupResult:
    """Back up the webroot (and ``extra_sources``, e.g. the database dump).

    ``placement`` names the objects (default: the run's own prefix, DESIGN.md
    section 3); ``before_commit`` runs in each region just before its uploads
    are completed (the ADT layout keeps the previous copies there)."""
    started = now or datetime.now(UTC)
    run_stamp = model.stamp(started)
    ext = config.extension()
    placement = placement or layout.run_placement(build, periodicity, run_stamp, ext)
    webroot_src, excludes = webroot_source(config.webroot, config.excludes, config.persist_assets)
    artifacts = [ArtifactRun("webroot", placement.key("webroot"), webroot_src,
                             content_type=_content_type(config, "tar"))]
    database_meta: dict[str, Any] | None = None
    for source, meta in extra_sources or []:
        artifacts.append(ArtifactRun(source.name, placement.key(source.name),
                                     source, content_type=_content_type(config, "sql")))
        database_meta = meta
    result = BackupResult(EXIT_FAILED, build, periodicity.value, run_stamp, started, started,
                          artifacts=artifacts, budget_limit=config.memory_budget)

    async with open_stores(config) as clients:
        regions = await preflight_regions(clients)
        live = [r for r in regions if r.alive]
        quorum = config.effective_quorum
        if len(live) < quorum:
            failures = "; ".join(r.failure or "" for r in regions if not r.alive)
            raise BackupFailed(f"only {len(live)} of {len(regions)} regions reachable, "
                               f"quorum is {quorum}: {failures}",
                               "nothing was uploaded; fix the region or lower STREAMER_QUORUM")
        budget = ByteBudget(config.memory_budget)
        parts_budget = config.memory_budget
        if config.compression == "zstd" and config.compression_threads:
            artifacts[0].compress_threads = config.compression_threads  # the webroot only
            parts_budget -= ZSTD_MT_RESERVE
        run_scope = anyio.CancelScope()
        fanout = Fanout(config, regions, budget, max_part_size(parts_budget, len(artifacts)),
                        run_scope.cancel)
        failure: str | None = None
        try:
            try:
                with run_scope:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(fanout.watch_stalls)
                        if observer is not None:
                            tg.start_soon(_watch, observer, fanout, artifacts)
                        async with anyio.create_task_group() as streams:
                            for art in artifacts:
                                streams.start_soon(fanout.stream, art)
                        fanout.pool.drain()
                        tg.cancel_scope.cancel()
            except* SourceError as group:
                failure = str(first_leaf(group))
        except BaseException:  # cancelled (SIGINT/SIGTERM) or a bug: abort, then re-raise
            with anyio.CancelScope(shield=True):
                await _abort_all(artifacts, regions)
            raise
        if run_scope.cancelled_caught and failure is None:
            failure = "too few regions left: " + "; ".join(
                r.failure or "" for r in regions if not r.alive)

        for art in artifacts:
            if art.warning:
                result.warnings.append(art.warning)
        ready = ready_regions(artifacts, regions) if failure is None else []
        if failure is None and len(ready) < quorum:
            failure = f"only {len(ready)} regions received every part, quorum is {quorum}"
        if failure is not None:
            with anyio.CancelScope(shield=True):
                await _abort_all(artifacts, regions)
            result.budget_peak = budget.peak
            return _finish(result, regions, [], failure)

        with anyio.CancelScope(shield=True):
            committed = await _commit(config, result, artifacts, ready, excludes,
                                      database_meta, fanout, placement, before_commit)
            await _abort_all(artifacts, regions)
        result.budget_peak = budget.peak
        if len(committed) < quorum:
            return _finish(result, regions, [], f"only {len(committed)} regions committed, "
                           f"quorum is {quorum}")
        return _finish(result, regions, committed, None)


async def _watch(observer: Observer, fanout: Fanout, artifacts: list[ArtifactRun]) -> None:
    """Progress display never changes a backup's outcome: its errors end only itself."""
    try:
        await observer.watch(fanout, artifacts)
    except Exception:
        return


def _content_type(config: Config, kind: str) -> str:
    if config.compression == "zstd":
        return "application/zstd"
    if config.compression == "gzip":
        return "application/gzip"
    return "application/x-tar" if kind == "tar" else "application/sql"


async def _abort_all(artifacts: list[ArtifactRun], regions: list[RegionRun]) -> None:
    by_index = {r.index: r for r in regions}
    async with anyio.create_task_group() as tg:
        for art in artifacts:
            for index, state in art.states.items():
                if state.upload_id and not state.completed:
                    tg.start_soon(abort_upload, by_index[index].client, art.key, state)


async def _commit(config: Config, result: BackupResult, artifacts: list[ArtifactRun],
                  ready: list[RegionRun], excludes: tuple[str, ...],
                  database_meta: dict[str, Any] | None, fanout: Fanout,
                  placement: layout.Placement, before_commit: BeforeCommit | None) -> list[RegionRun]:
    """Complete every upload in the ready regions, then write their manifests."""

    async def complete(region: RegionRun) -> None:
        if before_commit is not None:
            try:
                await before_commit(region.client)
            except StoreFailure as e:
                fanout.region_failed(region, str(e))
                return
        for art in artifacts:
            state = art.states[region.index]
            assert state.upload_id is not None
            try:
                await region.client.complete_multipart(art.key, state.upload_id,
                                                       state.completion_parts())
                state.completed = True
            except StoreFailure as e:
                fanout.region_failed(region, str(e))
                return

    async with anyio.create_task_group() as tg:
        for region in ready:
            tg.start_soon(complete, region)
    completed = [r for r in ready if r.alive]
    if len(completed) < config.effective_quorum:
        await _delete_run(artifacts, ready, placement, manifests=False)
        return []

    result.ended = datetime.now(UTC)
    manifest = build_manifest(
        build=result.build, periodicity=result.periodicity, stamp=result.stamp,
        started=_iso(result.started), ended=_iso(result.ended), host=socket.gethostname(),
        version=__version__,
        artifacts=[ArtifactRecord(a.name, a.key, a.stored_bytes, a.sha256, config.compression,
                                  config.compression_level, a.max_part_size, a.parts,
                                  a.source_bytes) for a in artifacts],
        webroot={"files": artifacts[0].listed_members, "bytes": artifacts[0].source_bytes,
                 "excludes": list(excludes), "path": str(config.webroot)},
        database=database_meta, warnings=result.warnings)
    result.manifest = manifest
    body = encode(manifest)
    key = placement.manifest_key

    async def write(region: RegionRun) -> None:
        try:
            await region.client.put_object(key, body)
        except StoreFailure as e:
            fanout.region_failed(region, str(e))

    async with anyio.create_task_group() as tg:
        for region in completed:
            tg.start_soon(write, region)
    committed = [r for r in completed if r.alive]
    failed = [r for r in completed if not r.alive]
    if len(committed) < config.effective_quorum:
        await _delete_run(artifacts, completed, placement, manifests=True)
        return []
    if failed:
        await _delete_run(artifacts, failed, placement, manifests=True)
    return committed


async def _delete_run(artifacts: list[ArtifactRun], regions: list[RegionRun],
                      placement: layout.Placement, manifests: bool) -> None:
    """Best-effort removal of completed objects that must not stay as a half run."""
    if not artifacts:
        return
    keys = [] if placement.keep_on_failure else [a.key for a in artifacts]
    if manifests:
        keys.append(placement.manifest_key)
    if not keys:
        return

    async def delete(region: RegionRun) -> None:
        with anyio.move_on_after(60):
            try:
                await region.client.delete_keys(keys)
            except StoreFailure:
                pass  # manifest-less leftovers are removed by `streamer cleanup`

    async with anyio.create_task_group() as tg:
        for region in regions:
            tg.start_soon(delete, region)


def _finish(result: BackupResult, regions: list[RegionRun], committed: list[RegionRun],
            failure: str | None) -> BackupResult:
    result.ended = datetime.now(UTC) if failure else result.ended
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

