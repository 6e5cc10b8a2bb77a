"""Unit tests (no I/O) for configuration parsing and precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.errors import ConfigError
from streamer.model import Periodicity, parse_build_identifier
from streamer.settings.config import parse_config
from streamer.settings.values import MiB, load_file, merge_sources, parse_size, split_endpoints

BASE = {"S3_HOST_BASE": "a.example.com", "S3_ACCESS_KEY": "AK", "S3_SECRET_KEY": "SK",
        "STREAMER_BUCKET": "my-bucket"}


def cfg(**kw: str):  # type: ignore[no-untyped-def]
    return parse_config({**BASE, **kw})


@pytest.mark.parametrize("text,expected", [
    ("nl-ams-1.linodeobjects.com:us-southeast-1.linodeobjects.com:in-maa-1.linodeobjects.com",
     ["nl-ams-1.linodeobjects.com", "us-southeast-1.linodeobjects.com", "in-maa-1.linodeobjects.com"]),
    ("a.com:8080:b.com", ["a.com:8080", "b.com"]),
    ("http://127.0.0.1:8333|http://127.0.0.1:8334", ["http://127.0.0.1:8333", "http://127.0.0.1:8334"]),
    ("http://127.0.0.1:8333:http://127.0.0.1:8334", ["http://127.0.0.1:8333", "http://127.0.0.1:8334"]),
    ("single.host", ["single.host"]),
    (" a.com | b.com ", ["a.com", "b.com"]),
])
def test_split_endpoints(text: str, expected: list[str]) -> None:
    assert split_endpoints(text) == expected


def test_bare_host_means_https_and_urls_are_kept() -> None:
    c = cfg(S3_HOST_BASE="a.com:9000|http://127.0.0.1:8333/")
    assert [r.endpoint for r in c.regions] == ["https://a.com:9000", "http://127.0.0.1:8333"]
    assert [r.index for r in c.regions] == [1, 2]


def test_per_region_credentials_and_locations() -> None:
    c = cfg(S3_HOST_BASE="a|b|c", S3_ACCESS_KEY="k1|k2|k3", S3_SECRET_KEY="s",
            S3_LOCATION="nl-ams-1|us-southeast-1|in-maa-1")
    assert [str(r.access_key) for r in c.regions] == ["k1", "k2", "k3"]
    assert [str(r.secret_key) for r in c.regions] == ["s", "s", "s"]
    assert [r.location for r in c.regions] == ["nl-ams-1", "us-southeast-1", "in-maa-1"]


def test_credential_count_mismatch_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="S3_ACCESS_KEY has 2 values for 3 regions"):
        cfg(S3_HOST_BASE="a|b|c", S3_ACCESS_KEY="k1|k2")


def test_secrets_are_masked_in_repr_and_describe() -> None:
    c = cfg(S3_SECRET_KEY="very-secret", DATABASE_INSTALLATION_TYPE="Postgres", DB_NAME="d",
            DB_USERNAME="u", DB_PASSWORD="db-secret")
    text = repr(c) + str(c.describe())
    assert "very-secret" not in text and "db-secret" not in text
    assert c.describe()["database"]["password"] == "****"  # type: ignore[index]


def test_missing_settings_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="S3_HOST_BASE is not set"):
        parse_config({})
    with pytest.raises(ConfigError, match="no bucket configured"):
        parse_config({k: v for k, v in BASE.items() if k != "STREAMER_BUCKET"})


def test_bucket_defaults_from_website_url() -> None:
    settings = {k: v for k, v in BASE.items() if k != "STREAMER_BUCKET"}
    c = parse_config({**settings, "WEBSITE_URL": "www.example.com"})
    assert c.bucket == "www-example-com-backups"


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('STREAMER_MEMORY_BUDGET = "64MiB"\nstreamer_quorum = 1\nS3_HOST_BASE = ["a", "b"]\n'
                 'STREAMER_COMPRESSION = "gzip"\n')
    file_settings = load_file(f)
    assert file_settings["S3_HOST_BASE"] == "a|b"
    env = {**BASE, "STREAMER_MEMORY_BUDGET": "128MiB", "S3_HOST_BASE": ""}
    merged = merge_sources(file_settings, env, {"STREAMER_MEMORY_BUDGET": "96MiB",
                                                "STREAMER_QUORUM": None})
    c = parse_config(merged)
    assert c.memory_budget == 96 * MiB  # flag wins
    assert c.quorum == 1  # file, not overridden
    assert c.compression == "gzip"
    assert len(c.regions) == 2  # empty env value does not hide the file's


def test_bad_toml_is_one_config_error(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="unreadable"):
        load_file(f)


@pytest.mark.parametrize("text,value", [("256MiB", 256 * MiB), ("64M", 64 * MiB), ("1GiB", 1024 * MiB),
                                        ("1048576", MiB), ("0.5GiB", 512 * MiB)])
def test_sizes(text: str, value: int) -> None:
    assert parse_size("X", text) == value


@pytest.mark.parametrize("bad", [{"STREAMER_MEMORY_BUDGET": "lots"}, {"STREAMER_MEMORY_BUDGET": "8MiB"},
                                 {"STREAMER_QUORUM": "4"}, {"STREAMER_COMPRESSION": "lz4"},
                                 {"STREAMER_COMPRESSION_LEVEL": "30"}, {"STREAMER_STALL_TIMEOUT": "-1"},
                                 {"DATABASE_INSTALLATION_TYPE": "Oracle"},
                                 {"DATABASE_INSTALLATION_TYPE": "Maria"},
                                 {"S3_HOST_BASE": "ftp://x"}, {"STREAMER_BUCKET": "Bad_Bucket"},
                                 {"EXCLUDE_FROM_BACKUP": "../etc"}, {"STREAMER_KEEP_HOURLY": "0"},
                                 {"STREAMER_LAG_LIMIT": "-5"}, {"STREAMER_LAG_LIMIT": "soon"},
                                 {"STREAMER_MIN_PART_RATE": "100"}, {"STREAMER_MIN_PART_RATE": "fast"},
                                 {"STREAMER_REQUEST_TIMEOUT": "0"}])
def test_bad_values_are_config_errors(bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        cfg(**bad)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_lag_limit_is_seconds_or_a_duration_and_zero_turns_it_off() -> None:
    assert cfg().lag_limit == 300.0
    assert cfg(STREAMER_LAG_LIMIT="90").lag_limit == 90.0
    assert cfg(STREAMER_LAG_LIMIT="10m").lag_limit == 600.0
    assert cfg(STREAMER_LAG_LIMIT="0").lag_limit == 0.0


def test_excludes_merge_and_strip() -> None:
    c = cfg(EXCLUDE_FROM_BACKUP="/cache:tmp/", DIRECTORIES_TO_MOUNT="images:cache")
    assert c.excludes == ("cache", "tmp", "images")


def test_periodicity_and_build_identifier() -> None:
    assert Periodicity.parse("hourly") is Periodicity.HOURLY
    assert Periodicity.parse("BiMonthly") is Periodicity.BIMONTHLY
    with pytest.raises(ConfigError):
        Periodicity.parse("yearly")
    assert parse_build_identifier("prod-1.web_2") == "prod-1.web_2"
    for bad in ["", "-x", "a/b", "x" * 64, "a b"]:
        with pytest.raises(ConfigError):
            parse_build_identifier(bad)


def test_quorum_defaults_to_one_and_all_means_every_region() -> None:
    three = {"S3_HOST_BASE": "a|b|c"}
    assert cfg(**three).effective_quorum == 1  # commit wherever possible
    assert cfg(**three, STREAMER_QUORUM="all").effective_quorum == 3
    assert cfg(**three, STREAMER_QUORUM="2").effective_quorum == 2
    with pytest.raises(ConfigError, match="exceeds the 3 configured regions"):
        cfg(**three, STREAMER_QUORUM="4")


def test_defaults() -> None:
    c = cfg()
    assert c.memory_budget == 256 * MiB and c.compression == "zstd" and c.checksum == "auto"
    assert c.effective_quorum == 1 and c.keep[Periodicity.HOURLY] == 24
    assert c.stall_timeout == 300 and c.layout == "streamer"
