"""Unit tests for STREAMER_BWLIMIT and STREAMER_NICE parsing (settings/limits.py)."""

from __future__ import annotations

import pytest

from streamer.errors import ConfigError
from streamer.settings.config import parse_config
from streamer.settings.limits import Priority, parse_bwlimit, parse_nice
from streamer.store.timeouts import RequestTimeouts

MiB = 1024 * 1024
BASE = {"S3_HOST_BASE": "http://a|http://b|http://c", "S3_ACCESS_KEY": "k",
        "S3_SECRET_KEY": "s", "STREAMER_BUCKET": "bucket"}


def test_bwlimit_values() -> None:
    assert parse_bwlimit("") == 0 and parse_bwlimit("off") == 0 and parse_bwlimit("0") == 0
    assert parse_bwlimit("50MiB") == 50 * MiB
    assert parse_bwlimit("50MiB/s") == 50 * MiB
    assert parse_bwlimit("1048576") == MiB
    for bad in ("fast", "-1", "10 apples", "512"):
        with pytest.raises(ConfigError, match="STREAMER_BWLIMIT"):
            parse_bwlimit(bad)


def test_nice_values() -> None:
    assert parse_nice("off") == Priority() and not parse_nice("").active
    assert parse_nice("on") == Priority(19, 2, 7) == parse_nice("1") == parse_nice("true")
    assert parse_nice("idle") == Priority(19, 3, 0)
    assert parse_nice("10") == Priority(10, 2, 6)  # the kernel's own (nice + 20) // 5
    assert parse_nice("on").describe() == "nice 19, io best-effort 7"
    for bad in ("20", "-5", "very", "on please", "2.5"):
        with pytest.raises(ConfigError, match="STREAMER_NICE"):
            parse_nice(bad)


def test_a_part_at_its_share_of_the_limit_never_times_out() -> None:
    config = parse_config({**BASE, "STREAMER_BWLIMIT": "1MiB"})
    assert config.bwlimit == MiB
    # 3 regions x 1 stream x 4 parts in flight share 1 MiB/s
    share = MiB / 12
    assert config.min_part_rate <= share
    timeouts = RequestTimeouts(config.request_timeout, config.min_part_rate)
    for size in (8 * MiB, 16 * MiB, 64 * MiB):
        assert timeouts.data(size) > size / share
    # a database doubles the streams, so halves each part's share
    with_db = parse_config({**BASE, "STREAMER_BWLIMIT": "1MiB", "DATABASE_INSTALLATION_TYPE": "Maria",
                            "DB_NAME": "x", "DB_USERNAME": "u"})
    assert with_db.min_part_rate <= share / 2
    # a generous limit leaves STREAMER_MIN_PART_RATE as it is
    assert parse_config({**BASE, "STREAMER_BWLIMIT": "1GiB"}).min_part_rate == 128 * 1024
    assert parse_config(BASE).bwlimit == 0


def test_a_limit_that_would_stall_every_part_is_refused() -> None:
    # 12 parts in flight, 8 MiB each, must each finish within the 300 s stall timeout
    with pytest.raises(ConfigError, match="too low"):
        parse_config({**BASE, "STREAMER_BWLIMIT": "256KiB"})
    assert parse_config({**BASE, "STREAMER_BWLIMIT": "256KiB",
                         "STREAMER_PARTS_IN_FLIGHT": "1"}).bwlimit == 256 * 1024
    assert parse_config({**BASE, "STREAMER_BWLIMIT": "256KiB",
                         "STREAMER_STALL_TIMEOUT": "1200"}).bwlimit == 256 * 1024


def test_config_check_shows_both() -> None:
    shown = parse_config({**BASE, "STREAMER_BWLIMIT": "20MiB", "STREAMER_NICE": "idle"}).describe()
    assert shown["bwlimit"] == 20 * MiB and shown["nice"] == "nice 19, io idle"
    shown = parse_config(BASE).describe()
    assert shown["bwlimit"] == "unlimited" and shown["nice"] == "off"
