"""The security settings, parsed without I/O (settings/security.py, docs/SECURITY.md)."""

from __future__ import annotations

import pytest

from streamer.errors import ConfigError
from streamer.settings.config import parse_config
from streamer.settings.security import plain_http_warnings

BASE = {"S3_HOST_BASE": "https://a.example|https://b.example", "S3_ACCESS_KEY": "k",
        "S3_SECRET_KEY": "s", "STREAMER_BUCKET": "site-backups"}


def test_defaults_lock_nothing_and_prune() -> None:
    config = parse_config(BASE)
    assert (config.object_lock_days, config.object_lock_mode, config.prune) == (0, "GOVERNANCE", True)
    assert [r.ca_bundle for r in config.regions] == ["", ""]
    assert config.describe()["object_lock"] is None


def test_object_lock_prune_and_per_region_ca_bundles() -> None:
    config = parse_config({**BASE, "STREAMER_OBJECT_LOCK_DAYS": "30",
                           "STREAMER_OBJECT_LOCK_MODE": "compliance", "STREAMER_PRUNE": "off",
                           "STREAMER_CA_BUNDLE": "|/etc/ssl/b.pem"})
    assert (config.object_lock_days, config.object_lock_mode, config.prune) == (30, "COMPLIANCE", False)
    assert [r.ca_bundle for r in config.regions] == ["", "/etc/ssl/b.pem"]
    assert config.describe()["object_lock"] == {"days": 30, "mode": "COMPLIANCE"}
    one = parse_config({**BASE, "STREAMER_CA_BUNDLE": "/etc/ssl/all.pem"})
    assert [r.ca_bundle for r in one.regions] == ["/etc/ssl/all.pem"] * 2


@pytest.mark.parametrize(("name", "value", "says"), [
    ("STREAMER_OBJECT_LOCK_DAYS", "-1", "too small"),
    ("STREAMER_OBJECT_LOCK_DAYS", "40000", "beyond 100 years"),
    ("STREAMER_OBJECT_LOCK_MODE", "forever", "governance, compliance"),
    ("STREAMER_PRUNE", "sometimes", "lifecycle"),
    ("STREAMER_CA_BUNDLE", "a|b|c", "3 values for 2 regions"),
])
def test_bad_values_are_one_line_naming_the_setting(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, name: value})
    assert name in str(info.value) and says in str(info.value)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_plain_http_is_warned_only_for_hosts_that_are_not_this_machine() -> None:
    warnings = plain_http_warnings(enumerate([
        "http://127.0.0.1:8333", "http://localhost:9000", "http://[::1]:9000",
        "https://s3.example.com", "http://s3.example.com", "http://10.0.0.5:8333",
        "http://[2001:db8::1]:80"], 1))
    assert [w.split(" ", 2)[:2] for w in warnings] == [["region", "5"], ["region", "6"],
                                                      ["region", "7"]]
    assert all("plain http" in w and "https://" in w for w in warnings)
