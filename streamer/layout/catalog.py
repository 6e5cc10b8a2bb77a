"""What is stored in a region: runs, their objects, their manifests.

A run is the set of objects under ``{build}/{periodicity}/{stamp}/`` (the
streamer layout, layout/streamer.py).  It is *committed* -- it exists for
``list``, ``restore``, ``verify`` and retention -- only if its
``manifest.json`` exists.  ``group_runs`` and ``parse_manifest`` are pure;
``read_manifest``/``list_or_empty`` do one region's I/O.  Each layout lists its
runs (``Layout.runs``) as these same values; the ADT layout's are in adt.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streamer import model
from streamer.age import AGE_SUFFIX, SCHEME
from streamer.errors import IntegrityError, StoreFailure
from streamer.manifest import PartDigests, end_to_end_value, parse_part_digests
from streamer.model import Periodicity, Series
from streamer.store.base import ObjectInfo, ObjectStore
from streamer.store.retry import RetryPolicy

# Listing and small reads fail over quickly: a dead region costs about a second.
# Commands other than the backup fail over quickly (their stores' default
# policy); listing and small reads more quickly still: a dead region costs
# about a second.
CATALOG_POLICY = RetryPolicy(max_attempts=3, base_delay=0.25, max_delay=4.0)
CATALOG_READS = CATALOG_POLICY.tries(2)

# The commit marker of a run in the streamer layout: ``{build}/{periodicity}/{stamp}/manifest.json``.
MANIFEST = "manifest.json"

_ARTIFACT_BASES = {"webroot.tar": "webroot", "database.sql": "database"}


def artifact_of(filename: str) -> str | None:
    """``webroot.tar.zst`` (or ``.zst.age``, encrypted) -> ``webroot``; None for
    the manifest and anything else."""
    filename = filename.removesuffix(AGE_SUFFIX)
    for suffix in (".zst", ".gz", ""):
        if suffix and not filename.endswith(suffix):
            continue
        base = filename[: len(filename) - len(suffix)] if suffix else filename
        if base in _ARTIFACT_BASES:
            return _ARTIFACT_BASES[base]
    return None


@dataclass(frozen=True)
class RunListing:
    """One run as one region lists it."""

    build: str
    periodicity: Periodicity
    stamp: str
    objects: tuple[ObjectInfo, ...]
    manifest_key: str | None  # None: no manifest, the run is not committed
    # ADT layout: the previous run's objects carry this suffix (".BACKUP"),
    # and the objects' names say nothing: (key, artifact name) pairs.
    key_suffix: str = ""
    artifact_names: tuple[tuple[str, str], ...] = ()

    @property
    def committed(self) -> bool:
        return self.manifest_key is not None

    @property
    def when(self) -> datetime:
        return model.parse_stamp(self.stamp)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(o.key for o in self.objects)

    def artifact_sizes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        named = dict(self.artifact_names)
        for o in self.objects:
            name = named.get(o.key) if named else artifact_of(o.key.rsplit("/", 1)[-1])
            if name:
                out[name] = o.size
        return out

    @property
    def size(self) -> int:
        return sum(self.artifact_sizes().values())


def split_run_key(key: str) -> tuple[str, Periodicity, str, str] | None:
    """``build/periodicity/stamp/name`` -> its parts, or None for any other key."""
    pieces = key.split("/")
    if len(pieces) != 4 or not all(pieces):
        return None
    build, period, stamp, name = pieces
    try:
        periodicity = Periodicity(period)
    except ValueError:
        return None
    if not model.STAMP_RE.fullmatch(stamp):
        return None
    return build, periodicity, stamp, name


def group_runs(objects: Iterable[ObjectInfo]) -> list[RunListing]:
    """Group stored objects into runs, sorted by build, periodicity and stamp (pure).

    Keys that are not inside a run (the lock, strays) are ignored."""
    grouped: dict[tuple[str, Periodicity, str], list[ObjectInfo]] = {}
    for obj in objects:
        parts = split_run_key(obj.key)
        if parts is None:
            continue
        grouped.setdefault(parts[:3], []).append(obj)
    runs = []
    for (build, periodicity, stamp), objs in grouped.items():
        objs.sort(key=lambda o: o.key)
        manifest = next((o.key for o in objs if o.key.endswith("/" + MANIFEST)), None)
        runs.append(RunListing(build, periodicity, stamp, tuple(objs), manifest))
    runs.sort(key=lambda r: (r.build, r.periodicity.value, r.stamp))
    return runs


def newest_stamp(runs: Iterable[RunListing]) -> str | None:
    stamps = [r.stamp for r in runs if r.committed]
    return max(stamps) if stamps else None


# ---------------------------------------------------------------- manifests


@dataclass(frozen=True)
class StoredArtifact:
    name: str  # "webroot" | "database"
    key: str  # as recorded; see StoredManifest.key_suffix
    stored_size: int
    sha256: str
    compression: str
    parts: PartDigests | None = None  # None: an older manifest, checked end to end only
    encryption: str = ""  # "age": stored as an age file (the digests are of the ciphertext)
    # The ADT layout's database (manifest.ArtifactRecord): the one member of a
    # gzip'd tar, the leading gzip member holding its header, its own bucket.
    member: str | None = None
    head: tuple[int, str] | None = None
    bucket: str | None = None
    # ``sha256`` is the composite of the part digests (an auto-mode manifest's
    # ``parts_sha256``), not the stream's: manifest.end_to_end says how to check it.
    composite: bool = False


@dataclass(frozen=True)
class StoredManifest:
    build: str
    periodicity: str
    stamp: str
    artifacts: Mapping[str, StoredArtifact]
    raw: Mapping[str, Any]
    key_suffix: str = ""  # ADT: the previous run's objects are "<key>.BACKUP"
    recipients: tuple[str, ...] = ()  # an encrypted run's age public keys

    @property
    def encrypted(self) -> bool:
        return any(a.encryption for a in self.artifacts.values())

    def key_of(self, artifact: StoredArtifact) -> str:
        return artifact.key + self.key_suffix

    def fingerprint(self) -> dict[str, tuple[int, str]]:
        """What every region must agree on: each artifact's size and hash."""
        return {a.name: (a.stored_size, a.sha256) for a in self.artifacts.values()}


def parse_manifest(data: bytes, where: str, key_suffix: str = "") -> StoredManifest:
    """Decode and check a manifest's shape (pure); IntegrityError if unusable."""
    try:
        value = json.loads(data)
        if not isinstance(value, dict) or value.get("format") != 1:
            raise ValueError("not a streamer manifest of a known format")
        artifacts = {}
        for name, a in dict(value["artifacts"]).items():
            size = int(a["stored_size"])
            parts = parse_part_digests(a.get("parts"), size)
            try:
                sha, composite = end_to_end_value(a, parts)
            except ValueError as e:
                raise ValueError(f"artifact {name}: {e}") from None
            encryption = str(a.get("encryption", ""))
            if encryption not in ("", SCHEME):
                raise ValueError(f"artifact {name}: unknown encryption {encryption!r}")
            artifacts[str(name)] = StoredArtifact(str(name), str(a["key"]), size, sha,
                                                  str(a.get("compression", "none")), parts,
                                                  encryption, *_framing(a), composite)
        recipients = tuple(str(r) for r in (value.get("encryption") or {}).get("recipients", ()))
        return StoredManifest(str(value["build_identifier"]), str(value["periodicity"]),
                              str(value["stamp"]), artifacts, value, key_suffix, recipients)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise IntegrityError(f"{where}: manifest unreadable: {e}",
                             "the run is damaged; restore another --at stamp") from None


def _framing(a: Mapping[str, Any]) -> tuple[str | None, tuple[int, str] | None, str | None]:
    """An artifact's tar member, head (stored size, SHA-256) and bucket, where recorded."""
    head = a.get("head")
    if head is not None:
        digest = str(head["sha256"])
        if len(digest) != 64 or digest.strip("0123456789abcdef"):
            raise ValueError("bad head sha256")
        head = (int(head["size"]), digest)
    member, bucket = a.get("member"), a.get("bucket")
    return (None if member is None else str(member), head,
            None if bucket is None else str(bucket))


async def read_manifest(client: ObjectStore, key: str, key_suffix: str = "") -> StoredManifest:
    found = await client.get_with_etag(key, policy=CATALOG_READS)
    if found is None:
        raise IntegrityError(f"{client.label}: {key} vanished", "the run was pruned meanwhile")
    return parse_manifest(found[0], f"{client.label}: {key}", key_suffix)


# ---------------------------------------------------------------- regions


def no_bucket(failure: StoreFailure) -> bool:
    return failure.code == "NoSuchBucket"


async def list_or_empty(client: ObjectStore, prefix: str) -> list[ObjectInfo]:
    """Objects under prefix; none if the bucket does not exist (yet) in this region."""
    try:
        return await client.list_objects(prefix, policy=CATALOG_READS)
    except StoreFailure as f:
        if no_bucket(f):
            return []
        raise


def all_series(keys: Iterable[str]) -> list[Series]:
    """Every series that has a key in the bucket (pure)."""
    found: set[Series] = set()
    for key in keys:
        pieces = key.split("/")
        if len(pieces) < 3:
            continue
        try:
            found.add(Series(pieces[0], Periodicity(pieces[1])))
        except ValueError:
            continue
    return sorted(found, key=lambda s: (s.build, s.periodicity.value))
