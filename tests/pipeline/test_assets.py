"""`streamer assets` against the three SeaweedFS regions (README, "The assets buckets"):
two assets buckets in region 1 copied to regions 2 and 3; a second run copies
only what changed; a deletion is kept and restorable with `restore --assets`;
a run killed mid-copy and run again ends consistent."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from typing import Any

from s3util import REPO, STREAMER, RegionsEnv, run_streamer

DIRS = ("wp-content/uploads", "images")


def _setup(regions: RegionsEnv) -> tuple[dict[str, str], list[str], str]:
    tag = uuid.uuid4().hex[:8]
    url = f"www.as{tag}.example"
    env = {**os.environ, **regions.env, "WEBSITE_URL": url, "PERSIST_ASSETS_TO_DATASTORE": "1",
           "DIRECTORIES_TO_MOUNT": ":".join(DIRS), "STREAMER_BUCKET": f"as{tag}-backups"}
    buckets = [f"www-as{tag}-example-assets-wp-content-uploads", f"www-as{tag}-example-assets-images"]
    for b in buckets:
        regions.client(1).create_bucket(Bucket=b)
    return env, buckets, env["STREAMER_BUCKET"]


def _put(regions: RegionsEnv, bucket: str, key: str, body: bytes, **extra: Any) -> None:
    regions.client(1).put_object(Bucket=bucket, Key=key, Body=body, **extra)


def _objects(regions: RegionsEnv, index: int, bucket: str) -> dict[str, bytes]:
    return {k: regions.get(index, bucket, k) for k in regions.keys(index, bucket)}


def _copies(stdout: str) -> int:
    m = re.search(r"(\d+) cop(?:y|ies) made", stdout)
    assert m, stdout
    return int(m.group(1))


def _cleanup(regions: RegionsEnv, buckets: list[str], backups: str) -> None:
    for b in [*buckets, backups]:
        regions.delete_bucket_everywhere(b)


def test_copy_incremental_deletion_kept_and_restored(regions: RegionsEnv) -> None:
    env, buckets, backups = _setup(regions)
    try:
        for i in range(60):
            _put(regions, buckets[0], f"2026/{i:03d}.jpg", os.urandom(1000 + i),
                 ContentType="image/jpeg", Metadata={"owner": "wp"})
        for i in range(40):
            _put(regions, buckets[1], f"pic-{i}.png", os.urandom(500 + i))
        _put(regions, buckets[1], "big/movie.mp4", os.urandom(40 * 2**20 + 123))
        # SeaweedFS lists "big/..." before "big-..." (directory first), not in byte order
        for name in ("big-old.jpg", "big.bak"):
            _put(regions, buckets[1], name, b"x")
        first = run_streamer(["assets", "site1"], env)
        assert first.code == 0, first.stderr
        assert _copies(first.stdout) == 2 * 103
        for b in buckets:
            src = _objects(regions, 1, b)
            assert _objects(regions, 2, b) == src and _objects(regions, 3, b) == src
        head = regions.client(3).head_object(Bucket=buckets[0], Key="2026/007.jpg")
        assert head["ContentType"] == "image/jpeg" and head["Metadata"]["owner"] == "wp"

        # an object deleted at the source: kept elsewhere, listed as such
        regions.client(1).delete_object(Bucket=buckets[1], Key="pic-3.png")
        second = run_streamer(["assets", "site1"], env)
        assert second.code == 0, second.stderr
        assert _copies(second.stdout) == 0, second.stdout
        assert "pic-3.png: deleted at source since" in second.stdout
        for r in (2, 3):
            assert "pic-3.png" in regions.keys(r, buckets[1])

        # restore as of the first run: the deleted object is back in region 1
        stamp = re.search(r"index \S+/assets/(\d{8}T\d{6}Z)/", first.stdout)
        assert stamp, first.stdout
        refused = run_streamer(["restore", "daily", "site1", "--assets", "--at", stamp.group(1),
                                "--assets-bucket", f"{backups}-new"], env)
        assert refused.code == 2, refused.stderr  # the index names two buckets
        restored = run_streamer(["restore", "daily", "site1", "--assets", "--at", stamp.group(1)],
                                env)
        assert restored.code == 0, restored.stderr
        assert "1 restored, 102 already there" in restored.stdout, restored.stdout
        assert _objects(regions, 1, buckets[1]) == _objects(regions, 2, buckets[1])

        # 1% changed: one object of 103 rewritten at the source -> one copy per region
        _put(regions, buckets[0], "2026/005.jpg", b"changed")
        third = run_streamer(["assets", "site1"], env)
        assert third.code == 0, third.stderr
        assert _copies(third.stdout) == 2, third.stdout
        for r in (2, 3):
            assert regions.get(r, buckets[0], "2026/005.jpg") == b"changed"
        fourth = run_streamer(["assets", "site1"], env)
        assert _copies(fourth.stdout) == 0 and fourth.code == 0
        assert "0 checked by metadata" in fourth.stdout  # the big multipart copy: by the index
    finally:
        _cleanup(regions, buckets, backups)


def test_killed_mid_copy_then_consistent(regions: RegionsEnv) -> None:
    env, buckets, backups = _setup(regions)
    try:
        for i in range(4):
            _put(regions, buckets[0], f"large-{i}.bin", os.urandom(24 * 2**20))
        for i in range(200):
            _put(regions, buckets[1], f"s/{i:04d}", os.urandom(2000))
        env = {**env, "STREAMER_MEMORY_BUDGET": "64MiB", "STREAMER_LOCK_LEASE": "3s"}
        proc = subprocess.Popen([*STREAMER, "assets", "site1"], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not any(regions.uploads(r, buckets[0]) for r in (2, 3)):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for r in (2, 3):  # nothing half-copied is visible: every listed object is whole
            for key in regions.keys(r, buckets[0]):
                assert regions.get(r, buckets[0], key) == regions.get(1, buckets[0], key)
        time.sleep(4)  # the killed run's lock lease expires
        again = run_streamer(["assets", "site1"], env)
        assert again.code == 0, again.stderr
        for b in buckets:
            src = _objects(regions, 1, b)
            for r in (2, 3):
                assert _objects(regions, r, b) == src
                assert regions.uploads(r, b) == []
    finally:
        _cleanup(regions, buckets, backups)


def test_daily_backup_copies_assets_hourly_does_not(regions: RegionsEnv, tmp_path: Any) -> None:
    env, buckets, backups = _setup(regions)
    try:
        (tmp_path / "index.php").write_text("<?php echo 1;")
        env = {**env, "STREAMER_WEBROOT": str(tmp_path), "DATABASE_INSTALLATION_TYPE": "None"}
        _put(regions, buckets[1], "logo.png", b"png")
        hourly = run_streamer(["HOURLY", "site1"], env)
        assert hourly.code == 0, hourly.stderr
        assert regions.keys(2, buckets[1]) == []
        daily = run_streamer(["DAILY", "site1"], env)
        assert daily.code == 0, daily.stderr
        assert regions.keys(3, buckets[1]) == ["logo.png"]
        for r in (1, 2, 3):
            keys = regions.keys(r, backups, "site1/daily/")
            assert any(k.endswith("/assets.json.zst") for k in keys), keys
            assert any(k.endswith("/manifest.json") for k in keys), keys
        # a missing assets bucket is a warning: the backup's exit code is its own
        regions.delete_bucket_everywhere(buckets[0])
        again = run_streamer(["DAILY", "site1"], env)
        assert again.code == 0, again.stderr
        assert "assets not copied" in again.stdout + again.stderr
    finally:
        _cleanup(regions, buckets, backups)


def test_no_assets_buckets_is_exit_2_in_one_line(regions: RegionsEnv) -> None:
    env = {**os.environ, **regions.env, "WEBSITE_URL": "w.example", "STREAMER_BUCKET": "unused-b"}
    off = run_streamer(["assets", "site1"], {**env, "PERSIST_ASSETS_TO_DATASTORE": "0"})
    assert off.code == 2 and "PERSIST_ASSETS_TO_DATASTORE is not 1" in off.stderr
    assert len(off.stderr.strip().splitlines()) == 1 and "Traceback" not in off.stderr
    one = run_streamer(["assets", "site1"], {**env, "PERSIST_ASSETS_TO_DATASTORE": "1",
                                             "DIRECTORIES_TO_MOUNT": "images",
                                             "S3_HOST_BASE": env["S3_HOST_BASE"].split("|")[0]})
    assert one.code == 2 and "only one region" in one.stderr
    helped = run_streamer(["assets", "--help"], env)
    assert helped.code == 0
    assert "3    a region was dropped" in helped.stdout
