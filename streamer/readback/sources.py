"""Where a restore or verify reads from: the run, the regions holding it, each
region's copy of an artifact (its manifest's record, size and ETag).

``locate`` lists every region at once and picks the stamp; ``Holders`` opens the
regions holding it one at a time, in order, for one artifact: the first is
read from, the others are where a read resumes or starts again
(docs/ARCHITECTURE.md, "A byte's way back").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from streamer import model
from streamer.errors import ConfigError, IntegrityError, NotFound, StoreFailure, StreamerError
from streamer.layout.catalog import (
    RunListing,
    StoredArtifact,
    StoredManifest,
    newest_stamp,
    read_manifest,
)
from streamer.readback.download import RANGE_SIZE, ObjectRef, ranges_in_flight
from streamer.readback.resume import REGION_FAILURES, Source
from streamer.settings.config import Config
from streamer.store.base import ObjectStore

RunsOf = Callable[[ObjectStore], Awaitable[list[RunListing]]]  # one region's runs of a series
OnFail = Callable[[str, StreamerError], None]  # a region could not be opened: its label, why


def validate_stamp(at: str | None) -> str | None:
    if at is None:
        return None
    if not model.STAMP_RE.fullmatch(at):
        raise ConfigError(f"--at {at!r} is not a stamp", "use YYYYMMDDTHHMMSSZ as `streamer list` shows")
    return at


def choose_regions(clients: list[ObjectStore], region: int | None) -> list[ObjectStore]:
    if region is None:
        return clients
    if not 1 <= region <= len(clients):
        raise ConfigError(f"--region {region} does not exist", f"use 1 to {len(clients)}")
    return [clients[region - 1]]


@dataclass(frozen=True)
class Located:
    """A committed run and the regions holding it, in the order to try them."""

    stamp: str
    holders: list[tuple[ObjectStore, RunListing]]
    unreachable: list[str]


async def locate(clients: list[ObjectStore], runs_of: RunsOf, at: str | None,
                 what: str) -> Located:
    """List every region at once; pick the newest committed stamp (or ``at``)."""
    found: dict[int, list[RunListing]] = {}
    errors: dict[int, str] = {}

    async def one(client: ObjectStore) -> None:
        try:
            found[client.index] = [r for r in await runs_of(client) if r.committed]
        except StoreFailure as e:
            errors[client.index] = str(e)

    async with anyio.create_task_group() as tg:
        for c in clients:
            tg.start_soon(one, c)
    if not found:
        raise StreamerError(f"no region answered: {'; '.join(errors.values())}",
                            "check S3_HOST_BASE and the network")
    stamp = at or newest_stamp(r for runs in found.values() for r in runs)
    if stamp is None:
        raise NotFound(f"no committed backup of {what} in any region that answered",
                       "check the build identifier and periodicity with `streamer list`")
    holders = [(c, r) for c in clients for r in found.get(c.index, []) if r.stamp == stamp]
    if not holders:
        raise NotFound(f"no committed backup {what}/{stamp} in any region that answered",
                       "see `streamer list` for the stamps there are")
    return Located(stamp, holders, [errors[i] for i in sorted(errors)])


@dataclass(frozen=True)
class Download:
    range_size: int
    in_flight: int

    @staticmethod
    def for_config(config: Config, streams: int = 1) -> Download:
        """``streams`` objects read at once share the memory budget (verify: every region)."""
        return Download(RANGE_SIZE, ranges_in_flight(config.memory_budget // max(1, streams)))


def artifact_store(client: ObjectStore, art: StoredArtifact) -> ObjectStore:
    """Where an artifact is stored in this region: the manifest's bucket, or its own."""
    return client if art.bucket is None else client.sibling(art.bucket)


async def object_ref(client: ObjectStore, manifest: StoredManifest, art: StoredArtifact) -> ObjectRef:
    key = manifest.key_of(art)
    head = await client.head_object(key)
    if head is None:
        raise IntegrityError(f"{client.label}: {key} is missing", "the stored copy is incomplete")
    size, etag = head
    if size != art.stored_size:
        raise IntegrityError(f"{client.label}: {key} holds {size} bytes, the manifest says "
                             f"{art.stored_size}", "the stored copy is damaged")
    return ObjectRef(key, size, art.sha256, etag, art.head, art.parts if art.composite else None)


def same_copy(a: StoredArtifact, b: StoredArtifact) -> bool:
    """Whether two regions' manifests record the same bytes, part for part (pure)."""
    return (a.stored_size, a.sha256, a.parts, a.head) == (b.stored_size, b.sha256, b.parts, b.head)


class Holders:
    """The regions holding a located run, opened one at a time for one artifact.

    ``next`` returns the next region's copy, or None when no region is left; a
    region whose manifest, object or HEAD fails is reported to ``on_fail`` and
    skipped.  Once the first copy has per-part digests, a later region must
    record the very same bytes (size, SHA-256 and parts) to be read from."""

    def __init__(self, located: Located, name: str, what: str, on_fail: OnFail) -> None:
        self._queue = list(located.holders)
        self._name = name
        self._what = f"{what}/{located.stamp}"
        self._on_fail = on_fail
        self.first: StoredArtifact | None = None  # the first copy opened
        self.artifact: StoredArtifact | None = None  # the last copy opened
        self.recipients: tuple[str, ...] = ()  # its manifest's age recipients (encrypted runs)

    async def next(self) -> Source | None:
        while self._queue:
            client, run = self._queue.pop(0)
            try:
                return await self._open(client, run)
            except REGION_FAILURES as e:
                self._on_fail(client.label, e)
        return None

    async def _open(self, client: ObjectStore, run: RunListing) -> Source:
        assert run.manifest_key is not None
        manifest = await read_manifest(client, run.manifest_key, run.key_suffix)
        art = manifest.artifacts.get(self._name)
        if art is None:
            raise NotFound(f"backup {self._what} has no {self._name}", "it was made without one")
        first = self.first
        if first is not None and first.parts is not None and not same_copy(first, art):
            raise IntegrityError(f"{client.label}: its manifest records another {self._name} than "
                                 "the region read first", "run `streamer verify` on this stamp")
        store = artifact_store(client, art)  # the ADT layout's database: its own bucket
        ref = await object_ref(store, manifest, art)
        self.first = first or art
        self.artifact = art
        self.recipients = manifest.recipients
        return Source(store, ref)
