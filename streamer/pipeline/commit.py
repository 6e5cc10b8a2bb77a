"""Commit: complete the uploads where every part is in, then write the manifest last.

    ready regions --complete every artifact's upload--> completed regions
                  --put manifest.json-->                committed regions

The manifest is the commit marker: a run without one does not exist for
list, restore and retention.  If fewer than the quorum complete, or fewer
than the quorum get their manifest, the run's objects are removed again
(best effort; ``streamer cleanup`` removes what is left) and nothing is
committed anywhere.  A region that fails after the quorum was reached loses
only its own copy.  Everything here runs under a shielded cancel scope (the
caller's): a half-done commit is never left because of a Ctrl-C.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio

from streamer import __version__
from streamer.age import SCHEME
from streamer.codec import Codec
from streamer.errors import StoreFailure
from streamer.layout.base import Placement
from streamer.manifest import ArtifactRecord, build_manifest, encode, seal_content
from streamer.model import BackupResult
from streamer.pipeline.consume import abort_upload
from streamer.pipeline.fanout import ArtifactRun, Fanout, RegionRun, recorded_parts
from streamer.settings.config import Config
from streamer.store.base import ObjectStore

DELETE_TIMEOUT = 60.0  # seconds for removing a failed run's objects in one region


# What the layout does in a region just before its uploads are completed
# (``Layout.before_commit``: the ADT layout keeps the previous copies there),
# given the run's store and every artifact's (store, key).
BeforeCommit = Callable[[ObjectStore, tuple[tuple[ObjectStore, str], ...]], Awaitable[None]]


async def commit(config: Config, result: BackupResult, artifacts: list[ArtifactRun],
                 ready: list[RegionRun], excludes: tuple[str, ...],
                 database_meta: dict[str, Any] | None, fanout: Fanout,
                 placement: Placement, before_commit: BeforeCommit | None) -> list[RegionRun]:
    """Complete every upload in the ready regions, then write their manifests;
    returns the regions that committed (empty: nothing committed anywhere)."""
    async with anyio.create_task_group() as tg:
        for region in ready:
            tg.start_soon(_bounded, "complete", fanout, region,
                          _complete(region, artifacts, fanout, before_commit))
    completed = [r for r in ready if r.alive]
    if len(completed) < config.effective_quorum:
        await delete_run(artifacts, ready, placement, manifests=False)
        return []

    result.ended = datetime.now(UTC)
    manifest = _manifest(config, fanout.codec, result, artifacts, excludes, database_meta)
    result.manifest = manifest
    body = encode(manifest)

    async def write(region: RegionRun) -> None:
        try:
            await region.client.put_object(placement.manifest_key, body,
                                           retention=artifacts[0].retention)
        except StoreFailure as e:
            fanout.region_failed(region, str(e))

    async with anyio.create_task_group() as tg:
        for region in completed:
            tg.start_soon(_bounded, "manifest", fanout, region, write(region))
    committed = [r for r in completed if r.alive]
    failed = [r for r in completed if not r.alive]
    if len(committed) < config.effective_quorum:
        await delete_run(artifacts, completed, placement, manifests=True)
        return []
    if failed:
        await delete_run(artifacts, failed, placement, manifests=True)
    return committed


async def _bounded(phase: str, fanout: Fanout, region: RegionRun, work: Awaitable[None]) -> None:
    """One region's step of the commit, dropped after the stall timeout
    without progress: a silent region never holds up the others."""
    limit = fanout.config.stall_timeout
    with anyio.move_on_after(limit) as scope:
        await work
    if scope.cancelled_caught:
        fanout.region_failed(region, f"{region.label}: {phase}: no progress for {limit:.0f} s "
                                     "(stall timeout)")


async def _complete(region: RegionRun, artifacts: list[ArtifactRun], fanout: Fanout,
                    before_commit: BeforeCommit | None) -> None:
    """One region: the layout's step before commit, then complete every upload."""
    try:
        if before_commit is not None:
            await before_commit(region.client, tuple((region.store(a), a.key) for a in artifacts))
        for art in artifacts:
            state = art.states[region.index]
            assert state.upload_id is not None
            await region.store(art).complete_multipart(art.key, state.upload_id,
                                                       state.completion_parts())
            state.completed = True
    except StoreFailure as e:
        fanout.region_failed(region, str(e))


def _manifest(config: Config, codec: Codec, result: BackupResult, artifacts: list[ArtifactRun],
              excludes: tuple[str, ...], database_meta: dict[str, Any] | None) -> dict[str, Any]:
    recipients = config.encryption.recipients
    scheme = SCHEME if recipients else ""
    manifest = build_manifest(
        build=result.build, periodicity=result.periodicity, stamp=result.stamp,
        started=_iso(result.started), ended=_iso(result.ended), host=socket.gethostname(),
        version=__version__,
        artifacts=[ArtifactRecord(a.name, a.key, a.stored_bytes, a.sha256, codec.compression,
                                  a.levels.final if a.levels else codec.level, a.max_part_size,
                                  a.parts, a.source_bytes, recorded_parts(a), scheme,
                                  a.member.name if a.member else None, a.head, a.bucket,
                                  _auto_levels(a))
                   for a in artifacts],
        webroot={"files": artifacts[0].listed_members, "bytes": artifacts[0].source_bytes,
                 "excludes": list(excludes), "path": str(config.webroot)},
        database=database_meta, warnings=result.warnings)
    return seal_content(manifest, recipients) if recipients else manifest


def _auto_levels(art: ArtifactRun) -> dict[str, int] | None:
    """The manifest's record of an adaptive level: the levels the frames used."""
    levels = art.levels
    if levels is None or not levels.auto:
        return None
    return {"min": levels.low, "max": levels.high, "final": levels.final, "frames": levels.frames}


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def abort_all(artifacts: list[ArtifactRun], regions: list[RegionRun]) -> None:
    """Abort every upload not completed, in every region, concurrently."""
    by_index = {r.index: r for r in regions}
    async with anyio.create_task_group() as tg:
        for art in artifacts:
            for index, state in art.states.items():
                if state.upload_id and not state.completed:
                    tg.start_soon(abort_upload, by_index[index].store(art), art.key, state)


async def delete_run(artifacts: list[ArtifactRun], regions: list[RegionRun],
                     placement: Placement, manifests: bool) -> None:
    """Best-effort removal of completed objects that must not stay as a half run."""
    if not artifacts:
        return
    doomed = [] if placement.keep_on_failure else list(artifacts)
    if not doomed and not manifests:
        return

    async def delete(region: RegionRun) -> None:
        with anyio.move_on_after(DELETE_TIMEOUT):
            try:
                for art in doomed:
                    await region.store(art).delete_keys([art.key])
                if manifests:
                    await region.client.delete_keys([placement.manifest_key])
            except StoreFailure:
                pass  # manifest-less leftovers are removed by `streamer cleanup`

    async with anyio.create_task_group() as tg:
        for region in regions:
            tg.start_soon(delete, region)
