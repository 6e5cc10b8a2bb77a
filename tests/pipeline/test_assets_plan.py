"""The assets copy's pure parts: ADT's bucket names, the settings, `decide`,
the index file, and the key-ordered merge of listings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from streamer.errors import ConfigError, ListingOrderError
from streamer.model import Periodicity, stamp
from streamer.pipeline.assets_plan import (
    META_ETAG,
    META_SIZE,
    Frame,
    IndexEntry,
    IndexWriter,
    copy_matches,
    decide,
    index_stamp,
    read_index,
    run_index_key,
    standalone_index_key,
)
from streamer.pipeline.assets_sync import merged
from streamer.settings.assets import assets_bucket, parse_assets
from streamer.store.s3_assets import Listed

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = 86400.0


def test_bucket_names_follow_adt() -> None:
    assert assets_bucket("www.shop.example.com", "wp-content/uploads") == \
        "www-shop-example-com-assets-wp-content-uploads"
    # sed 's/--/-/g' replaces each pair once, left to right, as str.replace does
    assert assets_bucket("a.b", "x//y") == "a-b-assets-x-y"
    assert assets_bucket("a.b", "x///y") == "a-b-assets-x--y"


def test_settings() -> None:
    a = parse_assets({"PERSIST_ASSETS_TO_DATASTORE": "1", "WEBSITE_URL": "w.example",
                      "DIRECTORIES_TO_MOUNT": "images:/media/:"})
    assert a.buckets == ("w-example-assets-images", "w-example-assets-media")
    assert a.runs_with(Periodicity.DAILY) and not a.runs_with(Periodicity.HOURLY)
    assert not a.runs_with(Periodicity.SHUTDOWN) and a.keep_deleted == 30 * DAY
    b = parse_assets({"PERSIST_ASSETS_TO_DATASTORE": "1", "WEBSITE_URL": "w.example",
                      "DIRECTORIES_TO_MOUNT": "images", "STREAMER_ASSETS_EVERY": "hourly, manual",
                      "STREAMER_ASSETS_KEEP_DELETED": "7d"})
    assert b.every == (Periodicity.HOURLY, Periodicity.MANUAL) and b.keep_deleted == 7 * DAY
    assert parse_assets({"STREAMER_ASSETS_EVERY": "none"}).every == ()
    with pytest.raises(ConfigError, match="STREAMER_ASSETS_EVERY"):
        parse_assets({"STREAMER_ASSETS_EVERY": "daily,sometimes"})
    with pytest.raises(ConfigError, match="not a valid S3 bucket name"):
        parse_assets({"PERSIST_ASSETS_TO_DATASTORE": "1", "WEBSITE_URL": "W.Example",
                      "DIRECTORIES_TO_MOUNT": "images"})


def test_decide_new_same_changed_and_multipart() -> None:
    src = Listed("k", 10, "aaa")
    v = decide(1, "b", "k", src, {2: Listed("k", 10, "aaa")}, (2, 3), None, NOW, DAY)
    assert v.copy_to == (3,) and v.check == () and v.entry is not None
    assert dict(v.entry.regions) == {1: "aaa", 2: "aaa"}
    # another ETag of the same size: by the previous index, else by the copy's metadata
    multi = {2: Listed("k", 10, "zzz-2")}
    prev = IndexEntry("b", "k", 10, "aaa", {1: "aaa", 2: "zzz-2"})
    assert decide(1, "b", "k", src, multi, (2,), prev, NOW, DAY).copy_to == ()
    assert decide(1, "b", "k", src, multi, (2,), None, NOW, DAY).check == (2,)
    changed = IndexEntry("b", "k", 10, "old", {1: "old", 2: "zzz-2"})
    assert decide(1, "b", "k", src, multi, (2,), changed, NOW, DAY).check == (2,)
    assert decide(1, "b", "k", src, {2: Listed("k", 9, "aaa")}, (2,), None, NOW, DAY).copy_to == (2,)
    assert copy_matches({META_ETAG: "aaa", META_SIZE: "10"}, src)
    assert not copy_matches({META_ETAG: "aaa", META_SIZE: "11"}, src)


def test_decide_deleted_kept_then_purged() -> None:
    held = {2: Listed("k", 5, "e"), 3: Listed("k", 5, "e")}
    first = decide(1, "b", "k", None, held, (2, 3), None, NOW, 30 * DAY)
    assert first.entry is not None and first.entry.deleted_since == stamp(NOW) and not first.purge
    later = NOW + timedelta(days=29)
    kept = decide(1, "b", "k", None, held, (2, 3), first.entry, later, 30 * DAY)
    assert kept.entry is not None and kept.entry.deleted_since == stamp(NOW)
    gone = decide(1, "b", "k", None, held, (2, 3), kept.entry, NOW + timedelta(days=31), 30 * DAY)
    assert gone.entry is None and gone.purge == (2, 3)
    assert decide(1, "b", "k", None, {}, (2, 3), kept.entry, later, DAY).entry is None


def test_index_round_trip_and_keys() -> None:
    w = IndexWriter({"build": "site"})
    entries = [IndexEntry("b", f"k{i}", i, f"e{i}", {1: f"e{i}", 3: "x"}) for i in range(3)]
    entries.append(IndexEntry("c", "gone ü", 1, "", {2: "y"}, "20261101T000000Z"))
    for bucket in ("b", "c"):  # a frame per bucket
        frame = Frame()
        for e in entries:
            if e.bucket == bucket:
                frame.add(e)
        w.append(frame)
    w.order = "paths"
    header, read = read_index(w.finish())
    assert header["build"] == "site" and header["format"] == 1 and header["order"] == "paths"
    assert list(read) == entries
    assert index_stamp(run_index_key("s", Periodicity.DAILY, "20261201T120000Z"), "s") == \
        "20261201T120000Z"
    assert index_stamp(standalone_index_key("s", "20261201T120000Z"), "s") == "20261201T120000Z"
    assert index_stamp("s/daily/20261201T120000Z/manifest.json", "s") is None
    assert index_stamp(standalone_index_key("t", "20261201T120000Z"), "s") is None


async def _gen(items: list[Listed]) -> AsyncIterator[Listed]:
    for i in items:
        yield i


@pytest.mark.anyio
async def test_merge_in_key_order() -> None:
    src = [Listed("a", 1, "1"), Listed("c", 1, "1")]
    t2 = [Listed("b", 1, "1"), Listed("c", 1, "2")]
    prev = iter([IndexEntry("b", "a", 1, "1"), IndexEntry("b", "d", 1, "1")])
    got = [(k, s is not None, sorted(t), p is not None)
           async for k, s, t, p in merged(_gen(src), {2: _gen(t2), 3: _gen([])}, prev)]
    assert got == [("a", True, [], True), ("b", False, [2], False), ("c", True, [2], False),
                   ("d", False, [], True)]


@pytest.mark.anyio
async def test_merge_in_the_order_the_server_lists_or_refuse() -> None:
    seaweed = [Listed(k, 1, "1") for k in ("a/b", "a/c", "a-c", "a.d")]  # directory first
    with pytest.raises(ListingOrderError, match="source lists 'a-c' out of order"):
        _ = [k async for k, *_ in merged(_gen(seaweed), {}, iter(()), "bytes")]
    got = [k async for k, *_ in merged(_gen(seaweed), {2: _gen(seaweed[1:])}, iter(()), "paths")]
    assert got == ["a/b", "a/c", "a-c", "a.d"]
    bytewise = sorted(seaweed, key=lambda o: o.key)
    with pytest.raises(ListingOrderError, match="2 lists"):
        _ = [k async for k, *_ in merged(_gen(seaweed), {2: _gen(bytewise)}, iter(()), "paths")]
