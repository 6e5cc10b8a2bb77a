"""Unit tests (no I/O) of the pure logic around restore: member safety, ranges,
the catalog's grouping and manifests, retention selection, cleanup plans,
settings."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from streamer import model
from streamer.errors import IntegrityError, StoreFailure
from streamer.housekeeping.cleanup import plan_cleanup, upload_started
from streamer.housekeeping.retention import deletion_order, select_expired
from streamer.layout import streamer as layout
from streamer.layout.catalog import (
    RunListing,
    all_series,
    artifact_of,
    group_runs,
    newest_stamp,
    parse_manifest,
    split_run_key,
)
from streamer.model import Periodicity, Series
from streamer.readback.download import ObjectRef, plan_ranges, ranges_in_flight, stream_object
from streamer.readback.safety import ArchiveGuard, Kind, split_member_name
from streamer.readback.verify import disagreements
from streamer.render import age
from streamer.store.base import ObjectInfo, UploadInfo
from streamer.store.memory import MemoryStore

MiB = 1024 * 1024
H = Periodicity.HOURLY


# ---------------------------------------------------------------- safety


def test_member_names_are_normalised() -> None:
    assert split_member_name("./") == ()
    assert split_member_name(".") == ()
    assert split_member_name("./app//lib/./x.js") == ("app", "lib", "x.js")
    assert split_member_name("a/b/") == ("a", "b")


@pytest.mark.parametrize("name", ["/etc/x", "../escape", "a/../../b", "./..", "a/..", "//x"])
def test_absolute_and_dotdot_names_are_refused(name: str) -> None:
    with pytest.raises(IntegrityError, match="unsafe archive member"):
        ArchiveGuard().admit(name, Kind.FILE)


def test_a_member_below_an_archive_symlink_is_refused() -> None:
    g = ArchiveGuard()
    g.admit("./", Kind.DIR)
    g.admit("./evil", Kind.SYMLINK, "/etc")  # a symlink may point anywhere ...
    with pytest.raises(IntegrityError, match="lies below 'evil'"):
        g.admit("./evil/passwd", Kind.FILE)  # ... but nothing may pass through it
    with pytest.raises(IntegrityError, match="lies below"):
        g.admit("evil/sub/deeper", Kind.DIR)


def test_a_member_below_a_regular_file_is_refused() -> None:
    g = ArchiveGuard()
    g.admit("f", Kind.FILE)
    with pytest.raises(IntegrityError):
        g.admit("f/x", Kind.FILE)


def test_replacing_a_symlink_by_a_file_is_allowed_but_not_a_dir_by_a_file() -> None:
    g = ArchiveGuard()
    g.admit("a", Kind.SYMLINK, "elsewhere")
    assert g.admit("a", Kind.FILE).parts == ("a",)  # written after unlinking the symlink
    g.admit("d", Kind.DIR)
    with pytest.raises(IntegrityError, match="replaces a directory"):
        g.admit("d", Kind.SYMLINK, "/tmp")
    with pytest.raises(IntegrityError, match="turns a file into a directory"):
        g.admit("a", Kind.DIR)


def test_hard_links_only_to_earlier_regular_files() -> None:
    g = ArchiveGuard()
    g.admit("dir/file", Kind.FILE)
    assert g.admit("dir/link", Kind.HARDLINK, "dir/file").link == ("dir", "file")
    with pytest.raises(IntegrityError, match="hard link"):
        g.admit("x", Kind.HARDLINK, "/etc/shadow")
    with pytest.raises(IntegrityError, match="hard link"):
        g.admit("y", Kind.HARDLINK, "not/there")
    g.admit("s", Kind.SYMLINK, "/etc/shadow")
    with pytest.raises(IntegrityError, match="hard link"):
        g.admit("z", Kind.HARDLINK, "s")


def test_devices_are_refused_and_the_root_must_be_a_directory() -> None:
    with pytest.raises(IntegrityError, match="device"):
        ArchiveGuard().admit("dev/null", Kind.DEVICE)
    with pytest.raises(IntegrityError, match="target itself"):
        ArchiveGuard().admit("./", Kind.SYMLINK, "/")


def test_implied_parents_become_directories() -> None:
    g = ArchiveGuard()
    g.admit("a/b/c.txt", Kind.FILE)
    assert ("a",) in g.dirs and ("a", "b") in g.dirs
    with pytest.raises(IntegrityError):
        g.admit("a/b", Kind.FILE)


# ---------------------------------------------------------------- ranges


def test_ranges_cover_the_object_exactly() -> None:
    assert plan_ranges(0) == []
    assert plan_ranges(1, 8) == [(0, 0)]
    assert plan_ranges(16, 8) == [(0, 7), (8, 15)]
    assert plan_ranges(17, 8) == [(0, 7), (8, 15), (16, 16)]
    size = 100 * MiB + 3
    ranges = plan_ranges(size)
    assert ranges[0][0] == 0 and ranges[-1][1] == size - 1
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
    with pytest.raises(ValueError):
        plan_ranges(10, 0)


def test_ranges_in_flight_fit_half_the_budget() -> None:
    assert ranges_in_flight(256 * MiB) == 4
    assert ranges_in_flight(32 * MiB) == 2
    assert ranges_in_flight(8 * MiB) == 1


# ---------------------------------------------------------------- catalog


def obj(key: str, size: int = 10, modified: datetime | None = None) -> ObjectInfo:
    return ObjectInfo(key, size, modified)


def test_group_runs_and_commit_marker() -> None:
    objs = [obj("s/hourly/20240101T000000Z/webroot.tar.zst", 100),
            obj("s/hourly/20240101T000000Z/database.sql.zst", 50),
            obj("s/hourly/20240101T000000Z/manifest.json", 1),
            obj("s/hourly/20240102T000000Z/webroot.tar.zst", 7),  # in progress or killed
            obj("s/hourly/lock.json"), obj("stray"), obj("s/yearly/20240101T000000Z/x"),
            obj("s/daily/not-a-stamp/webroot.tar.zst"),
            obj("t/daily/20240103T000000Z/manifest.json")]
    runs = group_runs(objs)
    assert [(r.build, r.periodicity, r.stamp, r.committed) for r in runs] == [
        ("s", H, "20240101T000000Z", True), ("s", H, "20240102T000000Z", False),
        ("t", Periodicity.DAILY, "20240103T000000Z", True)]
    assert runs[0].artifact_sizes() == {"webroot": 100, "database": 50}
    assert runs[0].size == 150
    assert newest_stamp(runs) == "20240103T000000Z"
    assert newest_stamp(runs[1:2]) is None
    assert split_run_key("s/hourly/lock.json") is None
    assert all_series(["s/hourly/x/y", "s/daily/lock.json", "a/bogus/x", "b"]) == [
        Series("s", Periodicity.DAILY), Series("s", H)]


def test_artifact_names() -> None:
    assert artifact_of("webroot.tar.zst") == "webroot"
    assert artifact_of("webroot.tar.gz") == "webroot"
    assert artifact_of("webroot.tar") == "webroot"
    assert artifact_of("database.sql.zst") == "database"
    assert artifact_of("manifest.json") is None


def manifest_bytes(**over: object) -> bytes:
    m: dict[str, object] = {
        "format": 1, "build_identifier": "s", "periodicity": "hourly", "stamp": "20240101T000000Z",
        "artifacts": {"webroot": {"key": "s/hourly/20240101T000000Z/webroot.tar.zst",
                                  "stored_size": 5, "sha256": "a" * 64, "compression": "zstd"}}}
    m.update(over)
    return json.dumps(m).encode()


def test_parse_manifest() -> None:
    m = parse_manifest(manifest_bytes(), "here")
    assert m.artifacts["webroot"].stored_size == 5
    assert m.key_of(m.artifacts["webroot"]) == "s/hourly/20240101T000000Z/webroot.tar.zst"
    assert parse_manifest(manifest_bytes(), "here", ".BACKUP").key_of(m.artifacts["webroot"]) \
        .endswith(".zst.BACKUP")
    for bad in (b"not json", manifest_bytes(format=2), manifest_bytes(artifacts={"w": {}}),
                manifest_bytes(artifacts={"w": {"key": "k", "stored_size": 1, "sha256": "zz"}})):
        with pytest.raises(IntegrityError, match="manifest unreadable"):
            parse_manifest(bad, "here")


def test_disagreeing_regions_are_named() -> None:
    good = {"webroot": (5, "a" * 64)}
    assert disagreements({1: good, 2: good, 3: good}) == {}
    assert disagreements({1: {"webroot": (5, "b" * 64)}, 2: good, 3: good}) == {1: 2}
    assert disagreements({}) == {}


# ---------------------------------------------------------------- retention


def run(stamp: str, committed: bool = True, build: str = "s") -> RunListing:
    prefix = f"{build}/hourly/{stamp}/"
    objects = (obj(prefix + "webroot.tar.zst"),) + ((obj(prefix + "manifest.json"),) if committed else ())
    return RunListing(build, H, stamp, objects, prefix + "manifest.json" if committed else None)


def test_retention_keeps_the_newest_committed_runs() -> None:
    runs = [run(f"2024010{d}T000000Z") for d in range(1, 7)] + [run("20240109T000000Z", False)]
    expired = select_expired(runs, 2)
    assert [r.stamp for r in expired] == [f"2024010{d}T000000Z" for d in (4, 3, 2, 1)]
    assert select_expired(runs, 0) == select_expired(runs, 1)  # the newest always stays
    assert next(r.stamp for r in select_expired(runs, 1)) == "20240105T000000Z"
    assert select_expired(runs, 10) == []
    assert select_expired([run("20240101T000000Z", False)], 1) == []  # in progress: never


def test_retention_deletes_manifests_first() -> None:
    manifests, rest = deletion_order([run("20240101T000000Z"), run("20240102T000000Z")])
    assert manifests == ["s/hourly/20240101T000000Z/manifest.json",
                         "s/hourly/20240102T000000Z/manifest.json"]
    assert rest == ["s/hourly/20240101T000000Z/webroot.tar.zst",
                    "s/hourly/20240102T000000Z/webroot.tar.zst"]


# ---------------------------------------------------------------- cleanup


NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def test_cleanup_with_the_lock_aborts_every_upload() -> None:
    fresh = UploadInfo("s/hourly/20240601T115900Z/webroot.tar.zst", "u1", NOW - timedelta(minutes=1))
    old = UploadInfo("s/hourly/20240501T000000Z/webroot.tar.zst", "u2", NOW - 30 * DAY)
    unknown = UploadInfo("odd-key", "u3", None)
    assert plan_cleanup([fresh, old, unknown], [], NOW, DAY, holding_lock=True).abort == \
        (fresh, old, unknown)
    assert plan_cleanup([fresh, old, unknown], [], NOW, DAY, holding_lock=False).abort == (old,)
    # no Initiated: the stamp in the key dates it
    undated = UploadInfo("s/hourly/20240501T000000Z/database.sql.zst", "u4", None)
    assert upload_started(undated) == datetime(2024, 5, 1, tzinfo=UTC)
    assert plan_cleanup([undated], [], NOW, DAY, holding_lock=False).abort == (undated,)


def test_cleanup_removes_only_old_manifest_less_runs_lock_or_not() -> None:
    def r(stamp: str, modified: datetime, committed: bool = False) -> RunListing:
        prefix = f"s/hourly/{stamp}/"
        objs = (obj(prefix + "webroot.tar.zst", modified=modified),)
        return RunListing("s", H, stamp, objs, prefix + "manifest.json" if committed else None)

    abandoned = r("20240501T000000Z", NOW - 30 * DAY)
    recent = r("20240601T110000Z", NOW - timedelta(hours=1))
    old_stamp_but_touched = r("20240501T000000Z", NOW - timedelta(minutes=5))
    committed = r("20240401T000000Z", NOW - 60 * DAY, committed=True)
    for holding in (True, False):
        plan = plan_cleanup([], [abandoned, recent, old_stamp_but_touched, committed], NOW, DAY,
                            holding)
        assert plan.delete == abandoned.keys and plan.runs == ("20240501T000000Z",)


# ---------------------------------------------------------------- settings, output


def test_age() -> None:
    assert [age(s) for s in (-1, 5, 65, 3600 * 2 + 300, 86400 * 3 + 3600 * 4)] == \
        ["0s", "5s", "1m05s", "2h05m", "3d04h"]


def test_stamp_layout_round_trip() -> None:
    when = datetime(2024, 2, 29, 23, 59, 58, tzinfo=UTC)
    assert model.parse_stamp(model.stamp(when)) == when
    p = layout.run_placement("s", H, "20240101T000000Z", ".zst")
    assert p.key("webroot") == "s/hourly/20240101T000000Z/webroot.tar.zst"
    assert p.manifest_key == "s/hourly/20240101T000000Z/manifest.json"


@pytest.mark.anyio
async def test_a_range_failing_mid_download_raises_the_store_failure_itself() -> None:
    """A region that resets connections mid-download: the StoreFailure reaches
    the caller unwrapped (not an ExceptionGroup), so restore falls back to the
    next region instead of ending with an internal error."""
    store = MemoryStore(index=1)
    await store.ensure_bucket()
    data = os.urandom(5 * 1024 * 1024)
    etag = await store.put_object("k", data, content_type="application/octet-stream")
    ref = ObjectRef("k", len(data), hashlib.sha256(data).hexdigest(), etag)
    store.fail("GetObject", nth=3, transient=False, status=500)
    with pytest.raises(StoreFailure, match="GetObject"):
        await stream_object(store, ref, lambda reader: reader.read(), range_size=1024 * 1024,
                            in_flight=2)
