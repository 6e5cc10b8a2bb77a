"""Unit tests (no I/O) for the compression settings: the adaptive level and threads."""

from __future__ import annotations

import pytest

from streamer.errors import ConfigError
from streamer.layout.choice import layout_for
from streamer.settings.config import parse_config

BASE = {"S3_HOST_BASE": "a.example.com", "S3_ACCESS_KEY": "AK", "S3_SECRET_KEY": "SK",
        "STREAMER_BUCKET": "my-bucket"}


def cfg(**kw: str):  # type: ignore[no-untyped-def]
    return parse_config({**BASE, **kw})


def test_zstd_adapts_by_default_from_level_3_with_threads_left_to_the_host() -> None:
    c = cfg()
    assert (c.compression, c.compression_level, c.compression_auto) == ("zstd", 3, True)
    assert c.compression_threads is None
    assert c.describe()["compression_level"] == "auto"
    assert c.describe()["compression_threads"] == "auto"
    codec = layout_for(c).codec
    assert (codec.compression, codec.level, codec.auto) == ("zstd", 3, True)


@pytest.mark.parametrize("raw", ["auto", "AUTO", " Auto ", ""])
def test_auto_in_any_case_or_empty(raw: str) -> None:
    assert cfg(STREAMER_COMPRESSION_LEVEL=raw).compression_auto


def test_a_number_fixes_the_level() -> None:
    c = cfg(STREAMER_COMPRESSION_LEVEL="7", STREAMER_COMPRESSION_THREADS="2")
    assert (c.compression_level, c.compression_auto, c.compression_threads) == (7, False, 2)
    assert c.describe()["compression_level"] == 7
    assert not layout_for(c).codec.auto


def test_gzip_and_none_never_adapt() -> None:
    g = cfg(STREAMER_COMPRESSION="gzip")
    assert (g.compression_level, g.compression_auto) == (6, False)
    assert g.describe()["compression_level"] == 6
    n = cfg(STREAMER_COMPRESSION="none")
    assert not n.compression_auto
    adt = layout_for(cfg(STREAMER_LAYOUT="adt", WEBSITE_URL="www.example.com")).codec
    assert (adt.compression, adt.level, adt.auto) == ("gzip", 6, False)


@pytest.mark.parametrize("env,message", [
    ({"STREAMER_COMPRESSION_LEVEL": "20"}, "zstd takes 1-19 or auto"),
    ({"STREAMER_COMPRESSION": "gzip", "STREAMER_COMPRESSION_LEVEL": "0"}, "gzip takes 1-9 or auto"),
    ({"STREAMER_COMPRESSION_LEVEL": "fast"}, "STREAMER_COMPRESSION_LEVEL"),
    ({"STREAMER_COMPRESSION_THREADS": "2", "STREAMER_MEMORY_BUDGET": "64MiB"}, "96MiB"),
    ({"STREAMER_COMPRESSION_THREADS": "many"}, "STREAMER_COMPRESSION_THREADS"),
])
def test_bad_values_are_one_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, **env})
    assert message in str(e.value) + (e.value.hint or "")


def test_auto_threads_under_a_small_budget_is_no_error() -> None:
    c = cfg(STREAMER_MEMORY_BUDGET="64MiB")
    assert c.compression_threads is None  # decided at the start of a backup (codec.auto_threads)
