"""Encryption settings and the sealed manifest section (pure, plus a key file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.age.keys import generate_identity
from streamer.errors import ConfigError
from streamer.layout.catalog import artifact_of, parse_manifest
from streamer.manifest import ArtifactRecord, build_manifest, encode, seal_content, unseal_content
from streamer.process import inherited_environment
from streamer.settings.config import parse_config

BASE = {"S3_HOST_BASE": "http://127.0.0.1:1", "S3_ACCESS_KEY": "a", "S3_SECRET_KEY": "b",
        "STREAMER_BUCKET": "site-backups"}


def test_recipients_from_the_setting_or_a_file(tmp_path: Path) -> None:
    a, b = (str(generate_identity().recipient) for _ in range(2))
    cfg = parse_config({**BASE, "STREAMER_AGE_RECIPIENTS": f"{a},{b}"})
    assert [str(r) for r in cfg.encryption.recipients] == [a, b] and cfg.encryption.enabled
    listing = tmp_path / "recipients.txt"
    listing.write_text(f"# backup keys\n{a}\n\n{b}\n")
    cfg = parse_config({**BASE, "STREAMER_AGE_RECIPIENTS": str(listing),
                        "STREAMER_AGE_IDENTITY": "/root/key.txt"})
    assert [str(r) for r in cfg.encryption.recipients] == [a, b]
    assert cfg.describe()["age_recipients"] == [a, b]
    assert cfg.describe()["age_identity"] == "/root/key.txt"
    assert not parse_config(BASE).encryption.enabled


@pytest.mark.parametrize(("value", "message"), [
    ("age1qqqq", "not an age X25519 public key"),
    ("/nonexistent/recipients", "cannot read"),
])
def test_bad_recipients_are_a_configuration_error(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        parse_config({**BASE, "STREAMER_AGE_RECIPIENTS": value})
    assert e.value.exit_code == 2


def test_the_adt_layout_refuses_encryption() -> None:
    with pytest.raises(ConfigError, match="STREAMER_LAYOUT=adt"):
        parse_config({**BASE, "STREAMER_LAYOUT": "adt", "WEBSITE_URL": "www.example.com",
                      "STREAMER_AGE_RECIPIENTS": str(generate_identity().recipient)})


def test_the_sealed_section_hides_content_and_opens_with_the_identity() -> None:
    identity = generate_identity()
    record = ArtifactRecord("webroot", "b/hourly/20260101T000000Z/webroot.tar.zst.age", 100,
                            "0" * 64, "zstd", 3, 100, 1, 120, encryption="age")
    manifest = build_manifest(
        build="b", periodicity="hourly", stamp="20260101T000000Z", started="s", ended="e",
        host="h", version="v", artifacts=[record],
        webroot={"files": 3, "excludes": ["private-uploads"], "path": "/var/www/shop"},
        database={"tables": {"customer_orders": 12}}, warnings=["tar: cart.php: file changed"])
    stored = encode(seal_content(manifest, [identity.recipient])).decode()
    for revealing in ("private-uploads", "/var/www/shop", "customer_orders", "cart.php"):
        assert revealing not in stored
    parsed = parse_manifest(stored.encode(), "test")
    assert parsed.encrypted and parsed.recipients == (str(identity.recipient),)
    assert parsed.artifacts["webroot"].encryption == "age"
    opened = unseal_content(json.loads(stored), [identity])
    assert opened["database"] == {"tables": {"customer_orders": 12}}
    assert opened["webroot"]["path"] == "/var/www/shop"


def test_encrypted_object_names_are_still_artifacts() -> None:
    assert artifact_of("webroot.tar.zst.age") == "webroot"
    assert artifact_of("database.sql.age") == "database"
    assert artifact_of("manifest.json.age") is None


def test_no_child_inherits_the_identity_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMER_AGE_IDENTITY", "/root/backup-key.txt")
    monkeypatch.setenv("STREAMER_AGE_RECIPIENTS", "age1public")
    env = inherited_environment()
    assert "STREAMER_AGE_IDENTITY" not in env
    assert env["STREAMER_AGE_RECIPIENTS"] == "age1public"  # public keys are no secret
