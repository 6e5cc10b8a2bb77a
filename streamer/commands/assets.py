"""``streamer assets [BUILD]``: the assets buckets copied from region 1 to every
other region, incrementally; deletions kept (README, "The assets buckets").

    lock {build}/assets/lock.json -> abort uploads killed runs left in the targets
    -> the previous index (newest of the build) -> per bucket: pipeline/assets_sync
    -> the new index in every region's backup bucket -> old standalone indexes pruned

A backup whose periodicity is in STREAMER_ASSETS_EVERY calls ``assets_run``
after its own commit, with its own stamp: the index then lies beside the run's
manifest, and whatever the copy does, the backup's exit code is its own run's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from streamer import model
from streamer.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    ConfigError,
    ListingOrderError,
    StoreFailure,
    StreamerError,
)
from streamer.housekeeping.lease import new_holder
from streamer.housekeeping.lock import BackupLock, hold_lock
from streamer.layout.catalog import list_or_empty
from streamer.model import Periodicity
from streamer.pipeline.assets_copy import SMALL
from streamer.pipeline.assets_plan import (
    ORDERS,
    Frame,
    IndexEntry,
    IndexWriter,
    index_stamp,
    read_index,
    run_index_key,
    standalone_index_key,
)
from streamer.pipeline.assets_sync import OBJECTS_IN_FLIGHT, AssetsTally, BucketSync
from streamer.pipeline.budget import ByteBudget, check_budget_fits
from streamer.pipeline.copy import CopyOptions, bounded
from streamer.settings.config import Config
from streamer.settings.ops import OpsConfig
from streamer.store.base import ObjectStore
from streamer.store.s3 import open_store, open_stores, run_policy
from streamer.store.s3_assets import AssetBucket
from streamer.store.s3_lean import lean_objects


@dataclass
class AssetsResult:
    build: str
    labels: dict[int, str]
    tally: AssetsTally = field(default_factory=AssetsTally)
    index_key: str = ""
    index_regions: list[int] = field(default_factory=list)
    previous: str | None = None  # the stamp of the index this run compared with
    quorum: int = 1
    seconds: float = 0.0
    budget_peak: int = 0

    @property
    def exit_code(self) -> int:
        """0 every region holds every object; 3 some were dropped but the quorum
        of regions holds the set; 1 fewer."""
        if not self.tally.dropped:
            return EXIT_OK
        holding = len(self.labels) - len(self.tally.dropped)
        return EXIT_PARTIAL if holding >= self.quorum else EXIT_FAILED


def check_assets_config(config: Config) -> None:
    """Exit 2 before anything starts when there is nothing to copy, or nowhere."""
    a = config.assets
    if not a.enabled:
        raise ConfigError("PERSIST_ASSETS_TO_DATASTORE is not 1: there are no assets buckets",
                          "set PERSIST_ASSETS_TO_DATASTORE=1 where the assets live in S3")
    if not a.buckets:
        raise ConfigError("no assets bucket: DIRECTORIES_TO_MOUNT or WEBSITE_URL is empty",
                          "set both, as on the ADT host")
    if len(config.regions) < 2:
        raise ConfigError("the assets are copied from region 1 to the others, and only one "
                          "region is configured", "add a region to S3_HOST_BASE")
    check_budget_fits(config.memory_budget)


def copy_options(config: Config, budget: ByteBudget) -> CopyOptions:
    return CopyOptions(budget, config.parts_in_flight, config.stall_timeout, "md5",
                       run_policy(config))


async def assets(config: Config, ops: OpsConfig, build: str) -> AssetsResult:
    """``streamer assets BUILD``: the index under ``{build}/assets/{stamp}/``."""
    check_assets_config(config)
    async with open_stores(config) as clients:
        return await assets_run(config, ops, build, clients, None, datetime.now(UTC))


async def assets_run(config: Config, ops: OpsConfig, build: str, clients: list[ObjectStore],
                     periodicity: Periodicity | None, now: datetime) -> AssetsResult:
    """One run; ``clients``: every region's backup bucket (the index and the lock)."""
    run_stamp = model.stamp(now)
    result = AssetsResult(build, {r.index: r.label for r in config.regions},
                          quorum=config.effective_quorum)
    result.index_key = (run_index_key(build, periodicity, run_stamp) if periodicity
                        else standalone_index_key(build, run_stamp))
    lock = BackupLock(clients, f"{build}/assets/lock.json", f"{build}/assets", ops.lock_lease,
                      new_holder(run_stamp, ops.lock_lease, now))
    started = time.monotonic()
    budget = ByteBudget(config.memory_budget)
    async with hold_lock(lock):
        result.previous, previous = await _previous_index(clients, build, config.stall_timeout)
        writer = IndexWriter({"kind": "streamer-assets-index", "build": build, "stamp": run_stamp,
                              "periodicity": periodicity.value if periodicity else None,
                              "buckets": list(config.assets.buckets), "source_region": 1})
        for bucket in config.assets.buckets:
            await _sync_bucket(config, bucket, budget, now, previous, writer, result.tally)
        data = writer.finish()
        result.index_regions = await _put_index(clients, result.index_key, data, config.stall_timeout)
        if periodicity is None:
            await _prune_indexes(clients, build, now, config.assets.keep_deleted, run_stamp)
    result.seconds = time.monotonic() - started
    result.budget_peak = budget.peak
    return result


async def _previous_index(clients: list[ObjectStore], build: str,
                          limit: float) -> tuple[str | None, tuple[str, bytes] | None]:
    """The newest index of the build in any region: its stamp, and its key
    order and bytes."""
    found: dict[str, str] = {}
    for c in clients:
        try:
            for o in await list_or_empty(c, f"{build}/"):
                s = index_stamp(o.key, build)
                if s is not None:
                    found.setdefault(s, o.key)
        except StoreFailure:
            continue
    for s in sorted(found, reverse=True):
        for c in clients:
            try:
                got = await bounded(c, "GetObject", limit, c.get_with_etag(found[s]))
            except StoreFailure:
                continue
            if got is not None:
                return s, (str(read_index(got[0])[0].get("order") or "bytes"), got[0])
    return None, None


async def _sync_bucket(config: Config, bucket: str, budget: ByteBudget, now: datetime,
                       previous: tuple[str, bytes] | None, writer: IndexWriter,
                       tally: AssetsTally) -> None:
    """One assets bucket: the region 1 source to every other region."""
    # Connections per region: a small copy holds one request per region at a
    # time, a large one a request per part its budget share pays for.
    pool = OBJECTS_IN_FLIGHT + config.memory_budget // SMALL + 4
    async with contextlib.AsyncExitStack() as stack:
        stores = []
        for r in config.regions:
            store = await stack.enter_async_context(open_store(
                r, bucket, "md5", config.request_timeout, run_policy(config), pool,
                config.min_part_rate))
            stores.append(AssetBucket(store, await stack.enter_async_context(
                lean_objects(store, pool))))
        source, targets = stores[0], {s.index: s for s in stores[1:]}
        if not await source.exists():
            raise StreamerError(f"{source.label}: assets bucket {bucket} does not exist",
                                "check WEBSITE_URL and DIRECTORIES_TO_MOUNT")
        for i, t in targets.items():
            if i not in tally.dropped:
                await _abort_leftovers(t, tally)
        sync = BucketSync(source, targets, copy_options(config, budget), now,
                          config.assets.keep_deleted, tally)
        await _merge_in_order(sync, bucket, previous, writer)


async def _merge_in_order(sync: BucketSync, bucket: str, previous: tuple[str, bytes] | None,
                          writer: IndexWriter) -> None:
    """The bucket merged in the order its listings come in: the previous
    index's first, then the other; an index in neither is set aside
    (ORDERS in pipeline/assets_plan.py, docs/ARCHITECTURE.md)."""
    first = previous[0] if previous else "bytes"
    attempts = [(first, True), (first, False)] + [(o, False) for o in ORDERS if o != first]
    for order, with_previous in attempts:
        entries: Iterator[IndexEntry] = iter(())
        if previous is not None and with_previous:
            entries = (e for e in read_index(previous[1])[1] if e.bucket == bucket)
        counts = (sync.tally.objects, sync.tally.kept_deleted, list(sync.tally.deleted_sample))
        frame = Frame()
        try:
            await sync.run(entries, frame, order)
        except ListingOrderError as e:
            sync.tally.objects, sync.tally.kept_deleted, sync.tally.deleted_sample = counts
            error = e
            continue
        writer.append(frame)
        writer.order = order
        return
    raise error


async def _abort_leftovers(target: AssetBucket, tally: AssetsTally) -> None:
    """Multipart uploads a killed run left (we hold the assets lock: none is live)."""
    store = target.store
    try:
        for u in await store.list_uploads(""):
            await store.abort_multipart(u.key, u.upload_id)
    except StoreFailure as f:
        if f.code != "NoSuchBucket":
            tally.dropped.setdefault(target.index, str(f))


async def _put_index(clients: list[ObjectStore], key: str, data: bytes, limit: float) -> list[int]:
    done: list[int] = []
    for c in clients:
        try:
            await bounded(c, "PutObject", limit, c.put_object(key, data, "application/zstd"))
            done.append(c.index)
        except StoreFailure:
            continue
    return done


async def _prune_indexes(clients: list[ObjectStore], build: str, now: datetime,
                         keep_deleted: float, newest: str) -> None:
    """Standalone indexes older than the deleted objects they could restore go."""
    horizon = model.stamp(now - timedelta(seconds=keep_deleted))
    for c in clients:
        try:
            old = [o.key for o in await list_or_empty(c, f"{build}/assets/")
                   if (s := index_stamp(o.key, build)) is not None and s < horizon and s != newest]
            if old:
                await c.delete_keys(old)
        except StoreFailure:
            continue
