"""The consumers: one per region and artifact, each one multipart upload.

A region worker creates the upload, then takes parts from its queue and sends
up to ``parts_in_flight`` of them at a time.  A failed part is retried with
the delay its ``UploadState`` asks for, from the same buffer (the part is
still held: a retry resends exactly the same bytes).  A 403 or 404, or a part
that exhausted its retries, drops the region (``Fanout.region_failed``); its
upload is then aborted under a shielded cancel scope and the others go on.
See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from streamer.errors import RegionError, StoreFailure, first_leaf
from streamer.pipeline.chunker import Part
from streamer.pipeline.upload_state import UploadState
from streamer.store.base import ObjectStore

if TYPE_CHECKING:  # the fan-out owns the consumers; imported for annotations only
    from streamer.pipeline.fanout import ArtifactRun, Fanout, RegionRun

ABORT_TIMEOUT = 30.0  # seconds at most for one abort (a dead region must not hold the run)


async def region_worker(fanout: Fanout, region: RegionRun, art: ArtifactRun,
                        recv: MemoryObjectReceiveStream[Part]) -> None:
    """Upload every part queued to ``region`` for ``art``; abort the upload if the region is dropped."""
    state = art.states[region.index]
    with anyio.CancelScope() as scope:
        region.scopes.add(scope)
        try:
            upload_id = await region.client.create_multipart(art.key, art.content_type,
                                                             art.retention)
            state.created(upload_id)
            slots = anyio.Semaphore(fanout.config.parts_in_flight)
            async with anyio.create_task_group() as tg, recv:
                async for part in recv:
                    await slots.acquire()
                    tg.start_soon(_send_part, fanout, region, art, state, part, slots)
        except* (StoreFailure, RegionError) as group:
            reason = str(first_leaf(group))
            state.fail(reason)
            fanout.region_failed(region, reason)
        finally:
            region.scopes.discard(scope)
            recv.close()  # also when the upload was never created (dropped meanwhile)
    if not region.alive:
        state.fail(region.failure or "region dropped")
        with anyio.CancelScope(shield=True):
            await abort_upload(region.client, art.key, state, fanout.config.stall_timeout)


async def _send_part(fanout: Fanout, region: RegionRun, art: ArtifactRun, state: UploadState,
                     part: Part, slots: anyio.Semaphore) -> None:
    """Send one part until it is acknowledged (retrying), or the region gives up."""
    region.sending.add(part)
    try:
        assert state.upload_id is not None
        while region.alive:
            state.part_started(part.number)
            region.in_flight += 1
            try:
                etag = await region.client.upload_part(art.key, state.upload_id, part.number,
                                                       part.body_for(region.index))
            except StoreFailure as f:
                if f.status in (403, 404):
                    raise RegionError(str(f)) from None
                delay = state.part_failed(part.number, f.detail)
                if delay is None:
                    raise RegionError(state.failure or str(f)) from None
                await anyio.sleep(delay)
                continue
            finally:
                region.in_flight -= 1
            state.part_acked(part.number, etag)
            region.outstanding -= 1
            region.last_progress = time.monotonic()
            fanout.lag_changed()
            return
    finally:
        region.sending.discard(part)
        part.release(region.index)
        slots.release()


async def abort_upload(client: ObjectStore, key: str, state: UploadState,
                       bound: float = ABORT_TIMEOUT) -> None:
    """Abort one region's multipart upload, best effort, once, bounded in time
    (a region dropped for no progress: by the stall timeout, docs/RELIABILITY.md).
    What an abort could not remove is left for `streamer cleanup`."""
    if state.upload_id is None or state.completed or state.abort_tried:
        return
    state.abort_tried = True
    with anyio.move_on_after(min(ABORT_TIMEOUT, bound, 2 * client.request_timeout)):
        try:
            await client.abort_multipart(key, state.upload_id)
        except StoreFailure:
            pass  # left for `streamer cleanup`, which lists unfinished uploads
