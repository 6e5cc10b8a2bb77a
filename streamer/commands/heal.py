"""``streamer heal``: every region gets the committed runs it lacks, or holds damaged.

    list every region's runs  ->  gaps, newest first (housekeeping/heal_plan.py)
    per run: every holder's manifest (and object sizes; ETags; --verify: every byte)
          -> which copies are damaged, which regions are good sources
    per copy: source region -> target region (pipeline/copy.py), the next
          source on bad bytes or a failed read; the manifest written last

The backup calls ``heal_clients`` after its own commit, for its own series,
into the regions that just committed, for at most ``STREAMER_HEAL_LIMIT``
(docs/RELIABILITY.md, "A region that missed a run").  Heal takes no lock: it
writes only runs already committed elsewhere, with the source's very bytes
and manifest, so a backup of the same series running meanwhile (its own
stamp, committed nowhere until its manifest) can at worst make it write the
same bytes twice, or abort its upload (cleanup), never mix two versions.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

import anyio

from streamer.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    ConfigError,
    IntegrityError,
    StoreFailure,
    StreamerError,
)
from streamer.housekeeping.heal_plan import (
    Copy,
    Gap,
    Unhealable,
    find_gaps,
    multipart_etag,
    plan_copies,
    reference_manifest,
    size_problem,
)
from streamer.layout.base import Layout
from streamer.layout.catalog import CATALOG_READS, RunListing, StoredManifest, parse_manifest
from streamer.layout.choice import layout_for
from streamer.model import Periodicity, Series
from streamer.pipeline.budget import ByteBudget, check_budget_fits
from streamer.pipeline.copy import CopyOptions, bounded, copy_run, read_run
from streamer.settings.config import Config
from streamer.store.base import ObjectStore
from streamer.store.s3 import open_stores, run_policy

# An ETag as S3 computes it (an MD5, or MD5-of-MD5s and the part count): only
# then can it be compared with the one the recorded part MD5s give.
S3_ETAG = re.compile(r"[0-9a-f]{32}(-[0-9]+)?")


@dataclass(frozen=True)
class HealRequest:
    periodicity: Periodicity | None = None
    build: str | None = None
    verify: bool = False  # read every copy in full: every part digest and SHA-256
    check_etags: bool = True  # a copy whose ETag is not its parts' is read in full
    targets: frozenset[int] | None = None  # heal only into these regions (None: all)
    limit: float = 0.0  # seconds for the whole heal (0: unbounded)
    keep_listings: bool = False  # HealResult.listings (a backup's retention reuses them)


@dataclass
class CopyOutcome:
    """One copy made, or tried from every source."""

    copy: Copy
    source: int | None = None  # the region it came from (None: it failed)
    bytes: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.source is not None


@dataclass
class HealResult:
    labels: dict[int, str]
    copies: list[CopyOutcome] = field(default_factory=list)
    unhealable: list[Unhealable] = field(default_factory=list)
    unreachable: dict[int, str] = field(default_factory=dict)
    runs_checked: int = 0
    limit: float = 0.0
    limit_reached: bool = False
    budget_limit: int = 0
    budget_peak: int = 0
    # Every region's runs of each series as heal listed them (a backup's
    # retention reuses them where heal copied nothing: ``listed_unchanged``).
    listings: dict[Series, dict[int, list[RunListing]]] = field(default_factory=dict)

    def listed_unchanged(self) -> dict[tuple[Series, int], list[RunListing]]:
        """The listings still true after heal: of the regions it copied nothing
        into, unless its time limit cut it short."""
        if self.limit_reached:
            return {}
        written = {c.copy.target for c in self.copies}
        return {(s, i): runs for s, by_region in self.listings.items()
                for i, runs in by_region.items() if i not in written}

    @property
    def healed(self) -> list[CopyOutcome]:
        return [c for c in self.copies if c.ok]

    @property
    def remaining(self) -> int:
        """What is still (or may still be) missing somewhere."""
        return (sum(1 for c in self.copies if not c.ok) + len(self.unhealable)
                + len(self.unreachable) + int(self.limit_reached))

    @property
    def exit_code(self) -> int:
        """0 nothing left to do, 3 some healed and some not, 1 none could be."""
        if not self.remaining:
            return EXIT_OK
        return EXIT_PARTIAL if self.healed else EXIT_FAILED


async def heal(config: Config, request: HealRequest) -> HealResult:
    """``streamer heal [PERIODICITY] [BUILD]``: every series in scope, every region."""
    layout = layout_for(config)
    if layout.no_heal is not None:
        raise ConfigError(layout.no_heal, "set STREAMER_LAYOUT=streamer")
    check_budget_fits(config.memory_budget)
    p, b = request.periodicity, request.build
    async with open_stores(config, bucket=layout.bucket(p)) as clients:
        series = [Series(b, p)] if p is not None and b is not None else \
            await layout.find_series(clients, p, b)
        return await heal_clients(config, layout, clients, series, request)


async def heal_clients(config: Config, layout: Layout, clients: list[ObjectStore],
                       series: list[Series], request: HealRequest) -> HealResult:
    """Heal ``series`` across ``clients`` (the backup's own stores, or heal's)."""
    budget = ByteBudget(config.memory_budget)
    opts = CopyOptions(budget, config.parts_in_flight, config.stall_timeout, config.checksum,
                       run_policy(config))
    result = HealResult({c.index: c.label for c in clients}, limit=request.limit,
                        budget_limit=budget.limit)
    with anyio.move_on_after(request.limit or math.inf) as scope:
        for s in series:
            await _heal_series(clients, layout, s, request, opts, result)
    result.limit_reached = scope.cancelled_caught
    result.budget_peak = budget.peak
    return result


async def list_series(clients: list[ObjectStore], layout: Layout, series: Series, limit: float,
                      unreachable: dict[int, str]) -> dict[int, list[RunListing]]:
    """Every region's runs of ``series``; a region that fails goes into ``unreachable``."""
    listings: dict[int, list[RunListing]] = {}

    async def one(client: ObjectStore) -> None:
        try:
            listings[client.index] = await bounded(client, "ListObjectsV2", limit,
                                                   layout.runs(client, series))
        except StoreFailure as e:
            unreachable[client.index] = str(e)

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(one, client)
    return listings


async def _heal_series(clients: list[ObjectStore], layout: Layout, series: Series,
                       request: HealRequest, opts: CopyOptions, result: HealResult) -> None:
    listings = await list_series(clients, layout, series, opts.stall_timeout, result.unreachable)
    if request.keep_listings:
        result.listings[series] = listings
    runs = {i: {r.stamp: r for r in found} for i, found in listings.items()}
    by_index = {c.index: c for c in clients}
    for gap in find_gaps(listings):
        result.runs_checked += 1
        if request.targets is not None and not request.targets & set(gap.lacking):
            continue  # the backup's heal fills gaps only; `streamer heal` also checks copies
        await _heal_run(by_index, gap, runs, request, opts, result)


@dataclass
class _Copies:
    """What the holders of one run hold: manifests (parsed, and their bytes), verdicts."""

    manifests: dict[int, tuple[StoredManifest, bytes]] = field(default_factory=dict)
    damaged: dict[int, str] = field(default_factory=dict)
    unknown: set[int] = field(default_factory=set)  # could not be read: neither source nor target


async def _read_manifest(client: ObjectStore, run: RunListing, limit: float, found: _Copies) -> None:
    assert run.manifest_key is not None
    try:
        got = await bounded(client, "GetObject", limit,
                            client.get_with_etag(run.manifest_key, policy=CATALOG_READS))
    except StoreFailure:
        found.unknown.add(client.index)
        return
    if got is None:
        found.unknown.add(client.index)  # pruned meanwhile
        return
    try:
        manifest = parse_manifest(got[0], f"{client.label}: {run.manifest_key}", run.key_suffix)
    except IntegrityError:
        found.damaged[client.index] = "manifest unreadable"
        return
    found.manifests[client.index] = (manifest, got[0])
    problem = size_problem(run, manifest)
    if problem is not None:
        found.damaged[client.index] = problem


async def _deep_check(client: ObjectStore, manifest: StoredManifest, request: HealRequest,
                      opts: CopyOptions, found: _Copies) -> None:
    """``--verify``: read the copy in full.  Otherwise read it only if an
    artifact's ETag is not the one its recorded MD5 parts give (S3's rule)."""
    try:
        if not request.verify:
            suspect = False
            for art in manifest.artifacts.values():
                if art.parts is None or art.parts.algorithm != "md5":
                    continue
                head = await bounded(client, "HeadObject", opts.stall_timeout,
                                     client.head_object(manifest.key_of(art)))
                etag = head[1].strip('"') if head else ""
                suspect |= bool(S3_ETAG.fullmatch(etag)) and etag != multipart_etag(art.parts.digests)
            if not suspect:
                return
        await read_run(client, manifest, opts)
    except IntegrityError as e:
        found.damaged[client.index] = e.message.removeprefix(client.label + ": ")
    except StoreFailure:
        found.unknown.add(client.index)


async def _heal_run(clients: dict[int, ObjectStore], gap: Gap, runs: dict[int, dict[str, RunListing]],
                    request: HealRequest, opts: CopyOptions, result: HealResult) -> None:
    found = _Copies()
    limit = opts.stall_timeout
    async with anyio.create_task_group() as tg:
        for i in gap.holders:
            tg.start_soon(_read_manifest, clients[i], runs[i][gap.run.stamp], limit, found)
    reference = reference_manifest({i: m for i, (m, _) in found.manifests.items()})
    if reference is not None:
        agreed = found.manifests[reference][0].fingerprint()
        for i, (m, _) in found.manifests.items():
            if m.fingerprint() != agreed:
                found.damaged[i] = f"manifest disagrees with region {reference}'s"
    if request.verify or request.check_etags:
        async with anyio.create_task_group() as tg:
            for i, (m, _) in found.manifests.items():
                if i not in found.damaged:
                    tg.start_soon(_deep_check, clients[i], m, request, opts, found)
    known = Gap(gap.run, tuple(i for i in gap.holders if i not in found.unknown), gap.lacking)
    size = 0 if reference is None else sum(
        a.stored_size for a in found.manifests[reference][0].artifacts.values())
    copies, unhealable = plan_copies(known, found.damaged, size, request.targets)
    result.unhealable.extend(unhealable)
    for planned in copies:
        outcome = CopyOutcome(planned)
        result.copies.append(outcome)
        await _execute(clients, runs, found, outcome, opts)


async def _execute(clients: dict[int, ObjectStore], runs: dict[int, dict[str, RunListing]],
                   found: _Copies, outcome: CopyOutcome, opts: CopyOptions) -> None:
    """Make one copy from the first source that gives good bytes."""
    planned = outcome.copy
    target = clients[planned.target]
    started = time.monotonic()
    for index in planned.sources:
        source = clients[index]
        manifest, body = found.manifests[index]
        key = runs[index][planned.run.stamp].manifest_key
        assert key is not None
        try:
            outcome.bytes = await copy_run(source, target, manifest, key, body, opts)
            outcome.source = index
            break
        except StreamerError as e:
            outcome.failures.append(f"from {source.label}: {e}")
            if isinstance(e, StoreFailure) and e.region == target.label:
                break  # the target failed: another source would not help
    outcome.seconds = time.monotonic() - started
