"""S3 Object Lock against the real regions (SeaweedFS 4.48 enforces
COMPLIANCE) and moto: every committed object of a run carries the retain-until
date, its own keys cannot delete those versions, retention keeps such a run
with a warning, a healed copy gets the same date, and ``config check`` reports
Object Lock per region (README, docs/SECURITY.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from s3util import RegionsEnv, run_streamer

from streamer import model

LOCKED = {"STREAMER_OBJECT_LOCK_DAYS": "1", "STREAMER_OBJECT_LOCK_MODE": "COMPLIANCE"}


def _webroot(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.php").write_text("<?php echo 'locked'; ?>\n")
    (root / "data.bin").write_bytes(bytes(range(256)) * 4096)
    return root


def _runs(regions: RegionsEnv, index: int, bucket: str, build: str) -> list[str]:
    return sorted(k.split("/")[2] for k in regions.keys(index, bucket, f"{build}/hourly/")
                  if k.endswith("/manifest.json"))


def _versions(regions: RegionsEnv, index: int, bucket: str, prefix: str) -> list[dict[str, str]]:
    listing = regions.client(index).list_object_versions(Bucket=bucket, Prefix=prefix)
    return list(listing.get("Versions", []))


def test_a_locked_run_leaves_versions_its_own_keys_cannot_delete_and_prune_keeps_it(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    env = {**streamer_env, **LOCKED, "STREAMER_WEBROOT": str(_webroot(tmp_path)),
           "STREAMER_KEEP_HOURLY": "1"}
    first = run_streamer(["hourly", "locked"], env, timeout=300)
    assert first.code == 0, first.stdout + first.stderr
    [stamp] = _runs(regions, 1, bucket, "locked")
    expected = model.parse_stamp(stamp) + timedelta(days=1)
    for index in (1, 2, 3):
        c = regions.client(index)
        assert c.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"][
            "ObjectLockEnabled"] == "Enabled"  # the backup created the bucket with it
        versions = _versions(regions, index, bucket, f"locked/hourly/{stamp}/")
        assert sorted(v["Key"].rsplit("/", 1)[1] for v in versions) == [
            "manifest.json", "webroot.tar.zst"]
        for v in versions:
            head = c.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
            assert head["ObjectLockMode"] == "COMPLIANCE"
            assert abs(head["ObjectLockRetainUntilDate"] - expected) < timedelta(minutes=1)
            with pytest.raises(ClientError) as refused:
                c.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
            assert refused.value.response["Error"]["Code"] == "AccessDenied"
        # The backup lock is never locked: its versions carry no retention.
        for v in _versions(regions, index, bucket, "locked/hourly/lock.json"):
            head = c.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
            assert "ObjectLockMode" not in head

    # Retention (keep 1) after the next run would remove the first: it is kept, with a warning.
    second = run_streamer(["hourly", "locked"], env, timeout=300)
    assert second.code == 0, second.stdout + second.stderr
    warnings = [ln for ln in second.stderr.splitlines() if "under Object Lock until" in ln]
    assert len(warnings) == 3 and all(stamp in ln for ln in warnings), second.stderr
    assert f"{expected:%Y-%m-%d %H:%M}Z" in warnings[0] or \
        f"{expected + timedelta(minutes=1):%Y-%m-%d %H:%M}Z" in warnings[0]
    for index in (1, 2, 3):
        assert len(_runs(regions, index, bucket, "locked")) == 2
    pruned = run_streamer(["prune", "hourly", "locked"], env, timeout=300)
    assert pruned.code == 0, pruned.stdout + pruned.stderr
    assert pruned.stderr.count("under Object Lock until") == 3
    assert len(_runs(regions, 1, bucket, "locked")) == 2


def test_lock_days_against_a_bucket_without_object_lock_is_one_line_before_any_upload(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    for index in (1, 2, 3):
        regions.client(index).create_bucket(Bucket=bucket)
    env = {**streamer_env, **LOCKED, "STREAMER_WEBROOT": str(_webroot(tmp_path))}
    run = run_streamer(["hourly", "unlockable"], env, timeout=300)
    assert run.code == 2, run.stdout + run.stderr
    [line] = run.stderr.strip().splitlines()
    assert "STREAMER_OBJECT_LOCK_DAYS" in line and "no Object Lock" in line
    assert "region 1" in line and "region 3" in line
    assert all(regions.keys(i, bucket) == [] and regions.uploads(i, bucket) == [] for i in (1, 2, 3))


def _checks(run_stdout: str) -> dict[str, dict[str, object]]:
    data = json.loads(run_stdout)
    return {f"{c['subject']} {c['check']}": c for c in data["checks"]}


def test_config_check_reports_object_lock_per_region_and_creates_buckets_with_it(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str]) -> None:
    regions.client(2).create_bucket(Bucket=bucket)  # region 2: an existing bucket without it
    env = {**streamer_env, **LOCKED}
    run = run_streamer(["config", "check", "--create-buckets", "--json"], env, timeout=120)
    assert run.code == 2, run.stdout + run.stderr  # region 2 cannot hold locked runs
    checks = _checks(run.stdout)
    lock = {i: checks[next(k for k in checks if k.startswith(f"region {i} (")
                           and k.endswith("object lock"))] for i in (1, 2, 3)}
    assert [lock[i]["ok"] for i in (1, 2, 3)] == [True, False, True]
    assert str(lock[1]["detail"]).startswith("enabled")
    assert "not enabled" in str(lock[2]["detail"])
    assert "object lock" in run.stderr and "region 2" in run.stderr

    plain = {k: v for k, v in env.items() if not k.startswith("STREAMER_OBJECT_LOCK")}
    again = run_streamer(["config", "check", "--json"], plain, timeout=120)
    assert again.code == 0, again.stdout + again.stderr  # without lock days: reported, no problem
    assert "not enabled" in str(_checks(again.stdout)[
        next(k for k in _checks(again.stdout) if k.startswith("region 2 (") and
             k.endswith("object lock"))]["detail"])


def test_config_check_against_moto_reports_object_lock(
        moto_endpoint: str, streamer_env: dict[str, str]) -> None:
    env = {**streamer_env, **LOCKED, "S3_HOST_BASE": moto_endpoint, "S3_ACCESS_KEY": "testing",
           "S3_SECRET_KEY": "testing-secret", "STREAMER_BUCKET": "moto-locked"}
    run = run_streamer(["config", "check", "--create-buckets", "--json"], env, timeout=120)
    assert run.code == 0, run.stdout + run.stderr
    checks = _checks(run.stdout)
    [lock] = [c for k, c in checks.items() if k.endswith("object lock")]
    assert lock["ok"] is True and str(lock["detail"]).startswith("enabled")
    [made] = [c for k, c in checks.items() if k.endswith(" bucket")]
    assert "created with Object Lock" in str(made["detail"])


def test_a_healed_copy_gets_the_same_retention(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    two = "|".join(regions.endpoints[:2])
    env = {**streamer_env, **LOCKED, "STREAMER_WEBROOT": str(_webroot(tmp_path)),
           "STREAMER_HEAL_LIMIT": "off"}
    run = run_streamer(["hourly", "healed"], {**env, "S3_HOST_BASE": two}, timeout=300)
    assert run.code == 0, run.stdout + run.stderr
    regions.client(3).create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    healed = run_streamer(["heal", "hourly", "healed"], env, timeout=300)
    assert healed.code == 0, healed.stdout + healed.stderr
    [stamp] = _runs(regions, 3, bucket, "healed")
    prefix = f"healed/hourly/{stamp}/"
    source = {k: regions.client(1).head_object(Bucket=bucket, Key=k)
              for k in regions.keys(1, bucket, prefix)}
    assert len(source) == 2
    for key, head in source.items():
        copy = regions.client(3).head_object(Bucket=bucket, Key=key)
        assert copy["ObjectLockMode"] == head["ObjectLockMode"] == "COMPLIANCE"
        assert copy["ObjectLockRetainUntilDate"] == head["ObjectLockRetainUntilDate"]
        assert copy["ObjectLockRetainUntilDate"] > datetime.now(UTC)
