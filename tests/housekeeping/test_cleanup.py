"""Integration: what killed runs leave behind, and `streamer cleanup`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from s3util import STREAMER, RegionsEnv, run_streamer

from streamer import model
from streamer.housekeeping.lease import Holder

MiB = 1024 * 1024


def random_webroot(root: Path, total: int) -> None:
    root.mkdir()
    block = os.urandom(MiB)
    for i in range(total // (8 * MiB)):
        with open(root / f"media-{i}.bin", "wb") as f:
            for j in range(8):
                f.write(block[j * 997:] + block[:j * 997] + i.to_bytes(4, "big"))


def test_a_backup_killed_mid_upload_is_invisible_and_cleaned_up(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    random_webroot(root, 64 * MiB)
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "STREAMER_MEMORY_BUDGET": "32MiB"}
    proc = subprocess.Popen([*STREAMER, "hourly", "killme"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not any("webroot" in k for k in regions.uploads(1, bucket)):  # past the probe
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no multipart upload appeared"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    left = sum(len(regions.uploads(i, bucket)) for i in (1, 2, 3))
    assert left >= 1
    assert "killme/hourly/lock.json" in regions.keys(1, bucket)  # the dead run's lock

    run = run_streamer(["list", "--json"], env)
    assert run.code == 0, run.stderr
    listed = json.loads(run.stdout)["regions"]
    assert [(r["index"], r["ok"], r["backups"]) for r in listed] == [(i, True, []) for i in (1, 2, 3)]
    run = run_streamer(["restore", "hourly", "killme", "--webroot", str(tmp_path / "r")], env)
    assert run.code == 1 and "no committed backup" in run.stderr

    # Its lock is on this machine and its process is gone: cleanup takes the lock
    # at once and aborts every unfinished upload.
    run = run_streamer(["cleanup", "hourly", "killme"], env)
    assert run.code == 0, run.stdout + run.stderr
    assert "aborted" in run.stdout
    for i in (1, 2, 3):
        assert regions.uploads(i, bucket) == []
        assert "killme/hourly/lock.json" not in regions.keys(i, bucket)


def test_cleanup_without_the_lock_touches_only_what_is_older_than_the_horizon(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    env = {**streamer_env, "STREAMER_WEBROOT": str(tmp_path)}
    stamp = model.stamp(datetime.now(UTC) - timedelta(seconds=5))
    key = f"cl/hourly/{stamp}/webroot.tar.zst"
    other = Holder("t", "web-other", 1, "b", 1, "r", datetime.now(UTC),
                   datetime.now(UTC) + timedelta(minutes=10))
    for i in (1, 2, 3):
        c = regions.client(i)
        c.create_bucket(Bucket=bucket)
        c.create_multipart_upload(Bucket=bucket, Key=key)
        c.put_object(Bucket=bucket, Key=f"cl/hourly/{stamp}/database.sql.zst", Body=b"half a run")
        c.put_object(Bucket=bucket, Key="cl/hourly/lock.json", Body=other.encode())
    time.sleep(1.1)

    run = run_streamer(["cleanup", "hourly", "cl"], env)  # a backup may be running: hands off
    assert run.code == 0, run.stdout + run.stderr
    assert "lock not taken" in run.stdout and "web-other" in run.stdout
    for i in (1, 2, 3):
        assert len(regions.uploads(i, bucket)) == 1
        assert f"cl/hourly/{stamp}/database.sql.zst" in regions.keys(i, bucket)

    run = run_streamer(["cleanup", "hourly", "cl", "--horizon", "0"], env)
    assert run.code == 0, run.stdout + run.stderr
    for i in (1, 2, 3):
        assert regions.uploads(i, bucket) == []
        assert regions.keys(i, bucket) == ["cl/hourly/lock.json"]  # another's lock: left alone

    # With the lock free, every upload goes, but a fresh manifest-less run stays (it
    # could be a run about to commit whose holder lost its lease).
    for i in (1, 2, 3):
        c = regions.client(i)
        c.delete_object(Bucket=bucket, Key="cl/hourly/lock.json")
        c.create_multipart_upload(Bucket=bucket, Key=key)
        c.put_object(Bucket=bucket, Key=key, Body=b"fresh")
    run = run_streamer(["cleanup"], env)  # every build and periodicity in the bucket
    assert run.code == 0, run.stdout + run.stderr
    for i in (1, 2, 3):
        assert regions.uploads(i, bucket) == []
        assert regions.keys(i, bucket) == [key]
