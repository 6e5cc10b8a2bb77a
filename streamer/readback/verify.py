"""``streamer verify``: re-read every region's copy of a run and check it.

For the newest committed stamp among the regions (or ``--at``), every region is
checked at once: its manifest must exist and agree with the other regions'
(same artifacts, sizes and SHA-256), and every artifact is streamed back
(ranged GETs, as restore reads) and its size and SHA-256 compared with that
region's manifest.  Nothing is decompressed or written.  One line per region;
exit 0 if every region is good, 1 otherwise, naming the region and the key.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass

import anyio

from streamer.errors import EXIT_FAILED, EXIT_OK, IntegrityError, RegionError, StoreFailure
from streamer.layout.catalog import RunListing, StoredManifest, read_manifest
from streamer.readback.download import stream_object
from streamer.readback.restore import Download, RunsOf, locate, object_ref, validate_stamp
from streamer.settings.config import Config
from streamer.store.base import ObjectStore


@dataclass
class RegionCheck:
    client: ObjectStore
    manifest: StoredManifest | None = None
    problem: str | None = None
    verified_bytes: int = 0
    seconds: float = 0.0

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
                       dl: Download) -> RegionCheck:
    check = RegionCheck(client)
    started = time.monotonic()
    if run is None or run.manifest_key is None:
        check.problem = f"no committed backup {stamp}"
        return check
    try:
        check.manifest = await read_manifest(client, run.manifest_key, run.key_suffix)
        for art in check.manifest.artifacts.values():
            ref = await object_ref(client, check.manifest, art)
            await stream_object(client, ref, lambda reader: None, range_size=dl.range_size,
                                in_flight=dl.in_flight)
            check.verified_bytes += ref.size
    except (StoreFailure, IntegrityError, RegionError) as e:
        check.problem = str(e).removeprefix(client.label + ": ")
    check.seconds = time.monotonic() - started
    return check


async def verify_run(config: Config, clients: list[ObjectStore], runs_of: RunsOf, what: str,
                     at: str | None) -> int:
    located = await locate(clients, runs_of, validate_stamp(at), what)
    holding = {c.index: r for c, r in located.holders}
    checks: dict[int, RegionCheck] = {}
    dl = Download.for_config(config, len(clients))

    async def one(client: ObjectStore) -> None:
        checks[client.index] = await check_region(
            client, holding.get(client.index), located.stamp, dl)

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(one, client)
    fingerprints = {i: c.manifest.fingerprint() for i, c in checks.items() if c.manifest}
    for index, reference in disagreements(fingerprints).items():
        if checks[index].ok:
            checks[index].problem = (f"manifest disagrees with region {reference}: "
                                     + _describe(fingerprints[index], fingerprints[reference]))
    bad: list[RegionCheck] = []
    for index in sorted(checks):
        c = checks[index]
        if c.ok:
            assert c.manifest is not None
            arts = ", ".join(f"{a.name} {a.stored_size / 1e6:.1f} MB"
                             for a in c.manifest.artifacts.values())
            rate = c.verified_bytes / 1e6 / max(c.seconds, 1e-9)
            print(f"{c.client.label}: ok: {what}/{located.stamp}: {arts}; sha256 verified "
                  f"in {c.seconds:.2f} s ({rate:.0f} MB/s)")
        else:
            bad.append(c)
            print(f"{c.client.label}: BAD: {what}/{located.stamp}: {c.problem}")
    if bad:
        print("streamer: verify failed: " + "; ".join(f"{c.client.label}: {c.problem}" for c in bad),
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
