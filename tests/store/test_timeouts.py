"""Unit tests for the request timeouts (store/timeouts.py): pure arithmetic."""

from __future__ import annotations

from streamer.settings.config import parse_config
from streamer.store.timeouts import LARGEST_PART, RequestTimeouts

MiB = 1024 * 1024


def test_a_part_gets_the_control_timeout_plus_its_bytes_at_the_minimum_rate() -> None:
    t = RequestTimeouts(control=30.0, min_rate=128 * 1024)
    assert t.data(0) == 30.0
    assert t.data(8 * MiB) == 30.0 + 64.0
    assert t.data(64 * MiB) == 30.0 + 512.0
    assert t.data(16 * MiB) > t.data(8 * MiB) > t.control


def test_complete_grows_with_the_parts_the_server_assembles() -> None:
    t = RequestTimeouts(control=20.0)
    assert t.complete(1) < t.complete(1000) < t.complete(10_000)
    assert t.complete(1) >= 20.0
    assert t.complete(10_000) == 20.0 + 1000.0


def test_the_socket_read_timeout_never_cuts_a_request_before_its_own() -> None:
    t = RequestTimeouts(control=5.0, min_rate=1024)
    read = t.socket_read()
    assert read >= t.data(LARGEST_PART) and read >= t.complete(10_000) and read >= t.copy()


def test_the_defaults_come_from_the_settings() -> None:
    base = {"S3_HOST_BASE": "http://a", "S3_ACCESS_KEY": "k", "S3_SECRET_KEY": "s",
            "STREAMER_BUCKET": "bucket"}
    config = parse_config(base)
    assert (config.request_timeout, config.min_part_rate) == (30.0, 128 * 1024)
    config = parse_config({**base, "STREAMER_REQUEST_TIMEOUT": "10",
                           "STREAMER_MIN_PART_RATE": "1MiB"})
    t = RequestTimeouts(config.request_timeout, config.min_part_rate)
    assert t.data(8 * MiB) == 18.0
