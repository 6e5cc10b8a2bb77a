"""The assets copy's decisions and its catalogue, without I/O (docs/ARCHITECTURE.md,
"The assets buckets").

For every key of an assets bucket, ``decide`` takes what the source region
lists, what each other region lists, and the previous run's index entry, and
says which regions need a copy, whose copy must be checked by its metadata (a
multipart ETag differs between regions), and which regions may drop an object
deleted at the source longer than ``STREAMER_ASSETS_KEEP_DELETED`` ago.

The index is JSON lines, zstd-compressed: a header, then one line per object
in (bucket, key) order: ``b`` bucket, ``k`` key, ``s`` size, ``e`` the
source's ETag, ``r`` region -> ETag of the bytes that region holds, ``d`` the
stamp since which the object is missing at the source (absent: present).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import zstandard

from streamer.model import Periodicity, parse_stamp, stamp
from streamer.store.s3_assets import Listed

INDEX_NAME = "assets.json.zst"
INDEX_FORMAT = 1
META_ETAG = "streamer-source-etag"  # x-amz-meta- of every copy: the source's ETag and size
META_SIZE = "streamer-source-size"


def run_index_key(build: str, periodicity: Periodicity, run_stamp: str) -> str:
    """The index written by a backup run, beside its manifest."""
    return f"{build}/{periodicity.value}/{run_stamp}/{INDEX_NAME}"


def standalone_index_key(build: str, run_stamp: str) -> str:
    """The index written by ``streamer assets BUILD``."""
    return f"{build}/assets/{run_stamp}/{INDEX_NAME}"


def index_stamp(key: str, build: str) -> str | None:
    """The stamp of an index key of ``build`` (either kind), or None."""
    pieces = key.split("/")
    if len(pieces) != 4 or pieces[0] != build or pieces[3] != INDEX_NAME:
        return None
    try:
        parse_stamp(pieces[2])
    except ValueError:
        return None
    return pieces[2]


@dataclass(frozen=True)
class IndexEntry:
    bucket: str
    key: str
    size: int
    etag: str  # the source's ETag ("" if never seen at the source)
    regions: Mapping[int, str] = field(default_factory=dict)  # region -> ETag held there
    deleted_since: str | None = None  # stamp

    def line(self) -> bytes:
        d: dict[str, object] = {"b": self.bucket, "k": self.key, "s": self.size, "e": self.etag,
                                "r": {str(i): e for i, e in sorted(self.regions.items())}}
        if self.deleted_since:
            d["d"] = self.deleted_since
        return json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"

    @classmethod
    def parse(cls, d: Mapping[str, object]) -> IndexEntry:
        regions = d.get("r") or {}
        assert isinstance(regions, dict)
        since = d.get("d")
        return cls(str(d["b"]), str(d["k"]), int(str(d.get("s", 0))), str(d.get("e", "")),
                   {int(i): str(e) for i, e in regions.items()}, str(since) if since else None)


@dataclass(frozen=True)
class Verdict:
    entry: IndexEntry | None  # what the index records before this run's copies (None: dropped)
    copy_to: tuple[int, ...] = ()
    check: tuple[int, ...] = ()  # same size, other ETag: its metadata says whether it matches
    purge: tuple[int, ...] = ()


def same_copy(source: Listed, target: Listed, previous: IndexEntry | None, region: int) -> bool:
    """Whether a region's object is the source's bytes, from the listings and
    the previous index alone."""
    if target.size != source.size:
        return False
    if target.etag == source.etag:
        return True
    return (previous is not None and previous.etag == source.etag
            and previous.regions.get(region) == target.etag)


def decide(source_region: int, bucket: str, key: str, source: Listed | None,
           targets: Mapping[int, Listed], live: tuple[int, ...], previous: IndexEntry | None,
           now: datetime, keep_deleted: float) -> Verdict:
    """What to do about one key (``live``: the target regions still in the run)."""
    if source is not None:
        regions = {source_region: source.etag}
        copy_to: list[int] = []
        check: list[int] = []
        for r in live:
            target = targets.get(r)
            if target is not None and same_copy(source, target, previous, r):
                regions[r] = target.etag
            elif target is not None and target.size == source.size:
                check.append(r)
            else:
                copy_to.append(r)
        return Verdict(IndexEntry(bucket, key, source.size, source.etag, regions),
                       tuple(copy_to), tuple(check))
    held = {r: t for r, t in targets.items() if r in live}
    if not held:
        return Verdict(None)
    since = previous.deleted_since if previous and previous.deleted_since else stamp(now)
    if now - parse_stamp(since) > timedelta(seconds=keep_deleted):
        return Verdict(None, purge=tuple(sorted(held)))
    size = next(iter(held.values())).size
    return Verdict(IndexEntry(bucket, key, size, previous.etag if previous else "",
                              {r: t.etag for r, t in held.items()}, since))


def copy_matches(metadata: Mapping[str, str], source: Listed) -> bool:
    """Whether a copy's metadata names the source's current ETag and size."""
    return metadata.get(META_ETAG) == source.etag and metadata.get(META_SIZE) == str(source.size)


# ---------------------------------------------------------------- the index file


# The key orders listings come in: S3 lists in byte order (AWS, MinIO); SeaweedFS
# directory by directory ("a/b" before "a-c").  Each run tries the order its
# previous index recorded first (docs/ARCHITECTURE.md, "The assets buckets").
ORDERS: dict[str, Callable[[str], Any]] = {"bytes": lambda k: k, "paths": lambda k: k.split("/")}


class Frame:
    """Index lines compressed as they come, into one zstd frame."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._z = zstandard.ZstdCompressor(level=9).stream_writer(self._out, closefd=False)
        self.entries = 0

    def add(self, entry: IndexEntry) -> None:
        self._z.write(entry.line())
        self.entries += 1

    def write(self, data: bytes) -> None:
        self._z.write(data)

    def finish(self) -> bytes:
        self._z.flush(zstandard.FLUSH_FRAME)
        return self._out.getvalue()


class IndexWriter:
    """The index file: a header frame, then one frame per bucket once it is whole."""

    def __init__(self, header: Mapping[str, object]) -> None:
        self.header = dict(header)
        self.order = "bytes"  # the key order the listings came in (ORDERS)
        self._frames: list[bytes] = []

    def append(self, frame: Frame) -> None:
        self._frames.append(frame.finish())

    def finish(self) -> bytes:
        first = Frame()
        first.write(json.dumps({"format": INDEX_FORMAT, **self.header, "order": self.order}).encode()
                    + b"\n")
        return b"".join([first.finish(), *self._frames])


def read_index(data: bytes) -> tuple[dict[str, object], Iterator[IndexEntry]]:
    """The header and the entries of an index file, decompressed as they are read."""
    reader = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(
        io.BytesIO(data), read_across_frames=True))
    header = json.loads(reader.readline() or b"{}")

    def entries() -> Iterator[IndexEntry]:
        for line in reader:
            if line.strip():
                yield IndexEntry.parse(json.loads(line))
    return header, entries()
