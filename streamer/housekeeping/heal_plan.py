"""What ``streamer heal`` has to do, decided without I/O (docs/ARCHITECTURE.md, "Heal").

The regions themselves are the record of what is missing: a run is committed
in a region exactly when its manifest is there (layout/catalog.py), so a run
committed in one region and not in another is a *gap*, whoever made it (a
backup that ended in exit 3, a region added later, a copy removed by hand).

    listings of every region -> gaps (run, regions holding it, regions lacking it)
    + each holder's manifest and object sizes -> verdict per copy (good / damaged)
    -> copies to make: target region, the good sources to try in order

Every function here is pure; housekeeping/heal.py does the I/O around them.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from streamer.layout.catalog import RunListing, StoredManifest
from streamer.model import Periodicity


@dataclass(frozen=True)
class RunId:
    """One run of one series, by its stamp."""

    build: str
    periodicity: Periodicity
    stamp: str

    def __str__(self) -> str:
        return f"{self.build}/{self.periodicity.value}/{self.stamp}"


def run_id(run: RunListing) -> RunId:
    return RunId(run.build, run.periodicity, run.stamp)


@dataclass(frozen=True)
class Gap:
    """A committed run, the regions holding it and the regions that answered without it."""

    run: RunId
    holders: tuple[int, ...]
    lacking: tuple[int, ...]


def find_gaps(listings: Mapping[int, Iterable[RunListing]]) -> list[Gap]:
    """Every committed run and who lacks it, newest first (pure).

    ``listings``: the runs of each region that answered (regions that did
    not answer are left out: nothing is known about them).  Runs held by
    every region that answered are returned too (``lacking`` empty): their
    copies may still be damaged."""
    holders: dict[RunId, set[int]] = {}
    for index, runs in listings.items():
        for run in runs:
            if run.committed:
                holders.setdefault(run_id(run), set()).add(index)
    answered = set(listings)
    gaps = [Gap(rid, tuple(sorted(held)), tuple(sorted(answered - held)))
            for rid, held in holders.items()]
    gaps.sort(key=lambda g: (g.run.stamp, g.run.build, g.run.periodicity.value), reverse=True)
    return gaps


def missing_by_region(gaps: Iterable[Gap]) -> dict[int, list[RunId]]:
    """Region -> the committed runs it lacks, newest first (``list``, ``verify``)."""
    out: dict[int, list[RunId]] = {}
    for gap in gaps:
        for index in gap.lacking:
            out.setdefault(index, []).append(gap.run)
    return out


def size_problem(run: RunListing, manifest: StoredManifest) -> str | None:
    """Why a region's copy is damaged, judged from its listing alone: an
    artifact missing, or an object whose size is not the manifest's (pure)."""
    sizes = run.artifact_sizes()
    for art in manifest.artifacts.values():
        size = sizes.get(art.name)
        if size is None:
            return f"{art.name} is missing"
        if size != art.stored_size:
            return f"{art.name} holds {size} bytes, the manifest says {art.stored_size}"
    return None


S3_ETAG = re.compile(r"[0-9a-f]{32}(-[0-9]+)?")  # an MD5, or S3's multipart ETag


def multipart_etag(md5_hex: Iterable[str]) -> str:
    """The ETag S3 gives an object completed from parts with these MD5s:
    the MD5 of the parts' MD5s, then ``-`` and the part count (pure)."""
    digests = [bytes.fromhex(d) for d in md5_hex]
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def suspect_etags(etags: Mapping[int, Mapping[str, str]], expected: Mapping[str, str]) -> set[int]:
    """The regions whose copy's ETag says it holds other bytes (pure): per
    artifact, an ETag other than ``expected`` (the one recorded MD5 parts
    give), or, without one (CRC part digests, STREAMER_CHECKSUM=auto), other
    than the one most regions' copies have -- identical parts at identical
    boundaries give identical S3 ETags, so a copy that differs is read in full
    (a tie: every copy in it).  Only ETags of S3's form (``S3_ETAG``) count."""
    out: set[int] = set()
    for name in {n for tags in etags.values() for n in tags}:
        tags = {i: t[name] for i, t in etags.items() if S3_ETAG.fullmatch(t.get(name, ""))}
        if name in expected:
            out |= {i for i, tag in tags.items() if tag != expected[name]}
            continue
        counts = Counter(tags.values())
        best = max(counts.values(), default=0)
        majority = [tag for tag, n in counts.items() if n == best]
        out |= {i for i, tag in tags.items() if len(majority) > 1 or tag != majority[0]}
    return out


def reference_manifest(manifests: Mapping[int, StoredManifest]) -> int | None:
    """The region whose manifest the most regions agree with (lowest index on a tie)."""
    if not manifests:
        return None
    counts = Counter(repr(sorted(m.fingerprint().items())) for m in manifests.values())
    best = max(counts.values())
    return min(i for i, m in manifests.items()
               if counts[repr(sorted(m.fingerprint().items()))] == best)


@dataclass(frozen=True)
class Copy:
    """One run to copy into one region, and the regions to read it from, in order."""

    run: RunId
    target: int
    reason: str  # "missing", or why the target's copy is damaged
    sources: tuple[int, ...]
    size: int  # bytes to copy (every artifact)


@dataclass(frozen=True)
class Unhealable:
    """A region lacks (or holds damaged) a run that no region holds intact."""

    run: RunId
    target: int
    reason: str


def plan_copies(gap: Gap, damaged: Mapping[int, str], size: int,
                targets: Iterable[int] | None = None) -> tuple[list[Copy], list[Unhealable]]:
    """The copies that give every region of ``targets`` (default: all) an
    intact copy of ``gap.run`` (pure).  ``damaged``: holder -> why its copy
    is damaged (it is then a target, and never a source)."""
    allowed = None if targets is None else set(targets)
    sources = tuple(i for i in gap.holders if i not in damaged)
    wanted = [(i, "missing") for i in gap.lacking] + sorted(damaged.items())
    copies: list[Copy] = []
    unhealable: list[Unhealable] = []
    for target, reason in sorted(wanted):
        if allowed is not None and target not in allowed:
            continue
        if sources:
            copies.append(Copy(gap.run, target, reason, sources, size))
        else:
            unhealable.append(Unhealable(gap.run, target, reason))
    return copies, unhealable
