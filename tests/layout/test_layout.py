"""The layout strategies without servers: which one the config picks, and what
each says about buckets, codecs, names, locks, cleanup and retention."""

from __future__ import annotations

import pytest

from streamer.codec import Codec
from streamer.errors import ConfigError
from streamer.layout.adt import AdtLayout
from streamer.layout.base import CleanupPrefix
from streamer.layout.choice import layout_for
from streamer.layout.streamer import StreamerLayout
from streamer.model import Periodicity, Series
from streamer.settings.config import parse_config

BASE = {"S3_HOST_BASE": "h", "S3_ACCESS_KEY": "a", "S3_SECRET_KEY": "s"}
H, D = Periodicity.HOURLY, Periodicity.DAILY


def test_layout_for_picks_the_streamer_layout_by_default() -> None:
    layout = layout_for(parse_config({**BASE, "STREAMER_BUCKET": "backups",
                                      "STREAMER_COMPRESSION": "gzip",
                                      "STREAMER_COMPRESSION_LEVEL": "4"}))
    assert isinstance(layout, StreamerLayout) and layout.name == "streamer"
    assert layout.bucket(H) == layout.bucket(None) == "backups"
    assert layout.codec == Codec("gzip", 4)  # the configured codec
    assert layout.scopes(None) == [None] and layout.scopes(D) == [D]
    assert layout.no_retention is None


def test_streamer_layout_names() -> None:
    layout = layout_for(parse_config({**BASE, "STREAMER_BUCKET": "backups"}))
    s = Series("www-1", H)
    p = layout.placement(s, "20240101T000000Z", ".zst")
    assert p.key("webroot") == "www-1/hourly/20240101T000000Z/webroot.tar.zst"
    assert p.key("database") == "www-1/hourly/20240101T000000Z/database.sql.zst"
    assert p.manifest_key == "www-1/hourly/20240101T000000Z/manifest.json"
    assert not p.keep_on_failure
    assert layout.lock_key(s) == "www-1/hourly/lock.json"
    assert layout.cleanup_prefixes(s) == [CleanupPrefix("www-1/hourly/", with_runs=True)]


def test_layout_for_picks_the_adt_layout() -> None:
    cfg = parse_config({**BASE, "WEBSITE_URL": "shop.example.org", "WEBSITE_NAME": "Shop",
                        "STREAMER_LAYOUT": "adt"})
    layout = layout_for(cfg)
    assert isinstance(layout, AdtLayout) and layout.name == "adt"
    assert layout.codec == Codec("gzip", 6)  # zstd configured: ADT's tar.gz all the same
    assert [layout.bucket(p) for p in (H, D)] == ["shop-example-org-hourly", "shop-example-org-daily"]
    assert layout.scopes(D) == [D] and layout.scopes(None) == list(Periodicity)
    s = Series("b", D)
    assert layout.lock_key(s) == "streamer-lock.json"
    assert layout.cleanup_prefixes(s) == [CleanupPrefix("applicationsourcecode.tar.gz", with_runs=False)]
    with_db = layout_for(parse_config({**BASE, "WEBSITE_URL": "shop.example.org", "WEBSITE_NAME": "Shop",
                                       "STREAMER_LAYOUT": "adt", "DATABASE_INSTALLATION_TYPE": "Postgres",
                                       "DB_NAME": "d", "DB_USERNAME": "u"}))
    assert with_db.cleanup_prefixes(s) == [  # the database object is in its own bucket
        CleanupPrefix("applicationsourcecode.tar.gz", with_runs=False),
        CleanupPrefix("Shop-DB-backup.tar.gz", with_runs=False, bucket="shop-example-org-db-daily")]
    assert layout.no_retention is not None and "nothing to prune" in layout.no_retention
    # The config is not rewritten: it keeps what was configured.
    assert cfg.compression == "zstd" and cfg.bucket == "shop-example-org-backups"


def test_adt_layout_keeps_a_configured_gzip_level() -> None:
    cfg = parse_config({**BASE, "WEBSITE_URL": "a.b.c", "STREAMER_LAYOUT": "adt",
                        "STREAMER_COMPRESSION": "gzip", "STREAMER_COMPRESSION_LEVEL": "9"})
    assert layout_for(cfg).codec == Codec("gzip", 9)


@pytest.mark.anyio
async def test_adt_layout_needs_a_website_url_and_a_build_for_cleanup() -> None:
    layout = layout_for(parse_config({**BASE, "STREAMER_BUCKET": "backups", "STREAMER_LAYOUT": "adt"}))
    with pytest.raises(ConfigError, match="WEBSITE_URL"):
        layout.bucket(H)
    with pytest.raises(ConfigError, match="BUILD_IDENTIFIER"):
        await layout.find_series([], H, None)
    assert await layout.find_series([], H, "b") == [Series("b", H)]


@pytest.mark.anyio
async def test_streamer_layout_series_given_need_no_listing() -> None:
    layout = layout_for(parse_config({**BASE, "STREAMER_BUCKET": "backups"}))
    assert await layout.find_series([], D, "b") == [Series("b", D)]


def test_the_checksum_probe_goes_under_the_series_cleanup_prefix() -> None:
    """A probe upload a kill left behind is aborted with the series' other uploads."""
    from streamer.pipeline.run import probe_prefix
    s = Series("www-1", H)
    assert probe_prefix(layout_for(parse_config({**BASE, "STREAMER_BUCKET": "backups"})), s) == \
        "www-1/hourly/streamer-probe-"
    adt = layout_for(parse_config({**BASE, "WEBSITE_URL": "shop.example.org", "STREAMER_LAYOUT": "adt"}))
    assert probe_prefix(adt, s) == "applicationsourcecode.tar.gz.streamer-probe-"
