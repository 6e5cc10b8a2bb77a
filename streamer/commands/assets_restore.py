"""``streamer restore PERIODICITY BUILD --assets [--at STAMP] [--assets-bucket NAME]``.

The index of the series' newest run (or of any run of the build at STAMP,
``streamer assets`` runs included) says which objects each assets bucket
held and which regions hold their bytes.  Each object not already in the
destination (region 1: the original bucket, or ``--assets-bucket``) is copied
there from the first region whose copy still has the recorded ETag
(pipeline/assets_copy.py, pinned with If-Match).  Objects in the destination
that the index does not name are left as they are (README, "The assets buckets").
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import anyio

from streamer.commands.assets import copy_options
from streamer.errors import EXIT_FAILED, EXIT_OK, ConfigError, ListingOrderError, NotFound, StoreFailure
from streamer.layout.catalog import list_or_empty
from streamer.layout.choice import layout_for
from streamer.model import Series
from streamer.pipeline.assets_copy import copy_object
from streamer.pipeline.assets_plan import ORDERS, IndexEntry, index_stamp, read_index
from streamer.pipeline.assets_sync import merged
from streamer.pipeline.budget import ByteBudget
from streamer.pipeline.copy import CopyOptions, bounded
from streamer.settings.config import Config
from streamer.store.s3 import open_store, open_stores, run_policy
from streamer.store.s3_assets import AssetBucket, Listed


@dataclass(frozen=True)
class AssetsRestoreRequest:
    series: Series
    at: str | None = None
    bucket: str | None = None  # restore into this bucket (one assets bucket only)


@dataclass
class AssetsRestoreReport:
    stamp: str = ""
    index_key: str = ""
    restored: int = 0
    present: int = 0  # already in the destination with the recorded bytes
    failed: list[str] = field(default_factory=list)  # "bucket/key: why"
    buckets: dict[str, str] = field(default_factory=dict)  # indexed bucket -> destination

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed else EXIT_OK


async def _find_index(config: Config, request: AssetsRestoreRequest) -> tuple[str, str, bytes]:
    """The index's stamp, key and bytes."""
    build, p = request.series.build, request.series.periodicity
    bucket = layout_for(config).bucket(p)
    async with open_stores(config, bucket=bucket) as clients:
        found: dict[str, str] = {}
        for c in clients:
            with contextlib.suppress(StoreFailure):
                for o in await list_or_empty(c, f"{build}/"):
                    s = index_stamp(o.key, build)
                    if s and (s == request.at if request.at else o.key.startswith(f"{build}/{p.value}/")):
                        found[s] = o.key
        for s in sorted(found, reverse=True):
            for c in clients:
                with contextlib.suppress(StoreFailure):
                    got = await c.get_with_etag(found[s])
                    if got is not None:
                        return s, found[s], got[0]
    what = f"at {request.at}" if request.at else f"of {request.series}"
    raise NotFound(f"no assets index {what} in any region",
                   "`streamer list` shows the runs; `streamer assets` writes an index")


async def restore_assets(config: Config, request: AssetsRestoreRequest) -> AssetsRestoreReport:
    report = AssetsRestoreReport()
    report.stamp, report.index_key, data = await _find_index(config, request)
    header, _ = read_index(data)
    buckets = [str(b) for b in header.get("buckets", [])]  # type: ignore[attr-defined]
    if request.bucket and len(buckets) != 1:
        raise ConfigError(f"--assets-bucket names one bucket, the index holds {len(buckets)}",
                          "restore into the original buckets")
    budget = ByteBudget(config.memory_budget)
    first = str(header.get("order") or "bytes")
    for bucket in buckets:
        dest = request.bucket or bucket
        report.buckets[bucket] = dest
        for order in [first, *(o for o in ORDERS if o != first)]:
            entries = (e for e in read_index(data)[1] if e.bucket == bucket)
            counts = (report.restored, report.present, list(report.failed))
            try:
                await _restore_bucket(config, bucket, dest, entries, order,
                                      copy_options(config, budget), report)
                break
            except ListingOrderError:  # the destination lists in the other order: again
                report.restored, report.present, report.failed = counts
        else:
            raise ListingOrderError(f"region 1 bucket {dest}", "(any order streamer knows)")
    return report


async def _restore_bucket(config: Config, bucket: str, dest: str, entries: Iterator[IndexEntry],
                          order: str, opts: CopyOptions, report: AssetsRestoreReport) -> None:
    async with contextlib.AsyncExitStack() as stack:
        async def store(index: int, name: str) -> AssetBucket:
            return AssetBucket(await stack.enter_async_context(open_store(
                config.regions[index - 1], name, "md5", config.request_timeout,
                run_policy(config), 48, config.min_part_rate)))
        sources = {r.index: await store(r.index, bucket) for r in config.regions}
        target = await store(1, dest)
        await bounded(target.store, "CreateBucket", opts.stall_timeout, target.store.ensure_bucket())
        slots = anyio.Semaphore(16)

        async def one(entry: IndexEntry, present: Listed | None) -> None:
            try:
                await _restore_one(entry, present, sources, target, opts, report)
            finally:
                slots.release()
        async with anyio.create_task_group() as tg:
            async for _, listed, _, entry in merged(_listing(target), {}, entries, order):
                if entry is None or entry.deleted_since:
                    continue  # deleted at the source before that run: not part of it
                await slots.acquire()
                tg.start_soon(one, entry, listed)


async def _listing(target: AssetBucket) -> AsyncIterator[Listed]:
    async for page in target.pages():
        for item in page:
            yield item


async def _restore_one(entry: IndexEntry, present: Listed | None, sources: dict[int, AssetBucket],
                       target: AssetBucket, opts: CopyOptions, report: AssetsRestoreReport) -> None:
    """One object from the first region still holding its recorded bytes."""
    same_place = target.bucket == entry.bucket
    if present is not None and present.size == entry.size and (
            present.etag == entry.etag or (same_place and present.etag == entry.regions.get(1))):
        report.present += 1
        return
    why = "no region holds its recorded bytes any more"
    for region, etag in sorted(entry.regions.items(), key=lambda kv: kv[0] == 1):
        if same_place and region == 1:
            continue  # the destination itself lacks it
        try:
            out = await copy_object(sources[region], Listed(entry.key, entry.size, etag), [target],
                                    opts)
        except StoreFailure as f:
            why = str(f)
            continue
        if out.etags:
            report.restored += 1
            return
        if out.failed:
            why = str(next(iter(out.failed.values())))
            break
    report.failed.append(f"{entry.bucket}/{entry.key}: {why}")
