"""``streamer verify``: re-read every region's copy of a run and check it.

For the newest committed stamp among the regions (or ``--at``), every region is
checked at once: its manifest must exist and agree with the other regions'
(same artifacts, sizes and SHA-256), and every artifact is streamed back
(ranged GETs, as restore reads) and its size and SHA-256 compared with that
region's manifest; with per-part digests each part is checked too, and a bad
copy is named down to its first bad part and offset.  With STREAMER_AGE_IDENTITY
set, an encrypted artifact's age header is opened too, so a run encrypted to
a mistyped recipient fails verify, not the restore that needs it.  Nothing is
decrypted, decompressed or written.  One line per region;
exit 0 if every region is good, 1 otherwise, naming the region and the key.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

from streamer.age.keys import Identity, load_identities
from streamer.errors import (
    EXIT_FAILED,
    EXIT_OK,
    ConfigError,
    IntegrityError,
    RegionError,
    StoreFailure,
)
from streamer.layout.base import Layout
from streamer.layout.catalog import RunListing, StoredManifest, read_manifest
from streamer.manifest import PartDigests
from streamer.model import Series
from streamer.readback.download import stream_object
from streamer.readback.plaintext import HEADER_PROBE, check_opens
from streamer.readback.resume import Source, Tally, stream_parts
from streamer.readback.sources import Download, artifact_store, locate, object_ref, validate_stamp
from streamer.settings.config import Config
from streamer.store.base import ObjectStore


@dataclass
class RegionCheck:
    client: ObjectStore
    manifest: StoredManifest | None = None
    problem: str | None = None
    verified_bytes: int = 0
    seconds: float = 0.0
    lacks: bool = False  # the region holds no committed copy of the run

    @property
    def ok(self) -> bool:
        return self.problem is None


def disagreements(fingerprints: dict[int, dict[str, tuple[int, str]]]) -> dict[int, int]:
    """Regions whose manifest differs from the most common one -> that one's region (pure)."""
    if not fingerprints:
        return {}
    counts = Counter(repr(sorted(f.items())) for f in fingerprints.values())
    common = counts.most_common(1)[0][0]
    reference = next(i for i in sorted(fingerprints) if repr(sorted(fingerprints[i].items())) == common)
    return {i: reference for i, f in fingerprints.items() if repr(sorted(f.items())) != common}


def _describe(a: dict[str, tuple[int, str]], b: dict[str, tuple[int, str]]) -> str:
    for name in sorted(set(a) | set(b)):
        if name not in a:
            return f"has no {name}"
        if name not in b:
            return f"has a {name} the others lack"
        if a[name] != b[name]:
            return f"{name} size/sha256 {a[name][0]}/{a[name][1][:16]} differ"
    return "differs"


async def check_region(client: ObjectStore, run: RunListing | None, stamp: str,
                       dl: Download, identities: Sequence[Identity] = ()) -> RegionCheck:
    """One region's copy of the run, every byte hashed; an encrypted artifact's
    age header is also opened with ``identities`` (STREAMER_AGE_IDENTITY) when
    they are given."""
    check = RegionCheck(client)
    started = time.monotonic()
    if run is None or run.manifest_key is None:
        check.problem = f"no committed backup {stamp} (its runs could not be listed)"
        return check
    try:
        check.manifest = await read_manifest(client, run.manifest_key, run.key_suffix)
        for art in check.manifest.artifacts.values():
            store = artifact_store(client, art)  # the ADT layout's database: its own bucket
            ref = await object_ref(store, check.manifest, art)
            await _read(Source(store, ref), art.parts, dl)
            check.verified_bytes += ref.size
            if art.encryption and identities:
                head = await store.get_range(ref.key, 0, min(ref.size, HEADER_PROBE) - 1)
                check_opens(bytes(head), identities, f"{client.label}: {ref.key}")
    except (StoreFailure, IntegrityError, RegionError, ConfigError) as e:
        check.problem = str(e).removeprefix(client.label + ": ")
    check.seconds = time.monotonic() - started
    return check


async def _read(source: Source, parts: PartDigests | None, dl: Download) -> None:
    """One region's copy, hashed; with per-part digests, part by part (the first
    bad part is named, and no other region is read)."""
    if parts is None:
        await stream_object(source.client, source.ref, lambda reader: None,
                            range_size=dl.range_size, in_flight=dl.in_flight)
        return

    async def no_other_region() -> Source | None:
        return None

    await stream_parts(source, no_other_region, parts, lambda reader: None,
                       range_size=dl.range_size, in_flight=dl.in_flight, tally=Tally())


@dataclass
class VerifyReport:
    """Every region's check of one run, by region index."""

    what: str
    stamp: str
    checks: list[RegionCheck] = field(default_factory=list)

    @property
    def bad(self) -> list[RegionCheck]:
        return [c for c in self.checks if not c.ok]

    @property
    def lacking(self) -> list[int]:
        """The regions without a committed copy of the run."""
        return [c.client.index for c in self.checks if c.lacks]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.bad else EXIT_OK


async def verify_run(config: Config, clients: list[ObjectStore], layout: Layout, series: Series,
                     at: str | None) -> VerifyReport:
    what = str(series)
    located = await locate(clients, lambda c: layout.runs(c, series), validate_stamp(at), what)
    holding = {c.index: r for c, r in located.holders}
    checks: dict[int, RegionCheck] = {}
    dl = Download.for_config(config, len(clients))
    identity = config.encryption.identity
    identities = await anyio.to_thread.run_sync(load_identities, identity) if identity else ()

    async def one(client: ObjectStore) -> None:
        checks[client.index] = await check_region(
            client, holding.get(client.index), located.stamp, dl, identities)

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(one, client)
    holders = ", ".join(str(i) for i in sorted(holding))
    for index, check in checks.items():
        listed = not any(u.startswith(check.client.label) for u in located.unreachable)
        if index not in holding and listed:  # it answered without this run: say who has it
            check.lacks = True
            check.problem = (f"lacks {located.stamp}, which region(s) {holders} hold "
                             "(`streamer heal` copies it there)")
    fingerprints = {i: c.manifest.fingerprint() for i, c in checks.items() if c.manifest}
    for index, reference in disagreements(fingerprints).items():
        if checks[index].ok:
            checks[index].problem = (f"manifest disagrees with region {reference}: "
                                     + _describe(fingerprints[index], fingerprints[reference]))
    return VerifyReport(what, located.stamp, [checks[i] for i in sorted(checks)])
