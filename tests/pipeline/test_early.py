"""Early start (pipeline/early.py): the webroot's tar and its fill begun before
the S3 start-up.  The pure plan and spool sizes (unit); against the three real
regions: a backup with early start restores byte-identically, verifies, and
stores the very bytes a run without it stores; a run that finds the lock held,
or is sent SIGTERM during start-up, leaves no tar behind and uploads nothing."""

from __future__ import annotations

import filecmp
import json
import os
import random
import signal
import subprocess
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from s3util import STREAMER, RegionsEnv, run_streamer

from streamer.codec import Codec, compressor_reserve
from streamer.housekeeping.lease import Holder
from streamer.pipeline.early import (
    CompressorPlan,
    LineCounter,
    compressor_plan,
    run_streams,
    spool_limit,
    spool_sizes,
    start_early,
)
from streamer.pipeline.sizing import MiB, max_part_size
from streamer.settings.config import parse_config

REGIONS = {"S3_HOST_BASE": "http://a:1", "S3_ACCESS_KEY": "k", "S3_SECRET_KEY": "s",
           "STREAMER_BUCKET": "bkt", "DATABASE_INSTALLATION_TYPE": "None"}


# ---------------------------------------------------------------- unit


def test_spool_sizes_are_the_runs_part_sizes_within_the_limit() -> None:
    assert list(spool_sizes(30 * MiB, 16 * MiB)) == [8 * MiB] * 3
    assert list(spool_sizes(8 * MiB, 64 * MiB)) == [8 * MiB]
    assert list(spool_sizes(8 * MiB - 1, 64 * MiB)) == []  # not one part: tar only
    assert sum(spool_sizes(10_000 * MiB, 8 * MiB)) == 1250 * 8 * MiB


def test_plan_follows_the_settings_and_the_given_threads() -> None:
    config = parse_config({**REGIONS, "STREAMER_MEMORY_BUDGET": "128MiB",
                           "STREAMER_COMPRESSION_LEVEL": "3"})
    plan = compressor_plan(config, Codec("zstd", 3, False), 1, threads=2)
    reserve = compressor_reserve("zstd", 2)
    assert plan == CompressorPlan("zstd", 2, 3, (reserve,), max_part_size(128 * MiB - reserve, 1))
    assert spool_limit(config, plan) == (128 * MiB - reserve) // 2
    two = compressor_plan(config, Codec("zstd", 3, False), 2, threads=2)
    assert two.reserves == (reserve, 0) and two.max_part == max_part_size(128 * MiB - reserve, 2)
    gzip = compressor_plan(config, Codec("gzip", 6, False), 1)
    assert gzip == CompressorPlan("gzip", 0, 6, (0,), max_part_size(128 * MiB, 1))
    assert run_streams(config) == 1
    with_db = parse_config({**REGIONS, "DATABASE_INSTALLATION_TYPE": "mysql", "DB_NAME": "x",
                            "DB_USERNAME": "u"})
    assert run_streams(with_db) == 2


def test_early_start_setting() -> None:
    assert parse_config(REGIONS).early_start
    assert not parse_config({**REGIONS, "STREAMER_EARLY_START": "off"}).early_start
    with pytest.raises(Exception, match="STREAMER_EARLY_START"):
        parse_config({**REGIONS, "STREAMER_EARLY_START": "maybe"})


def test_line_counter_counts_to_eof_and_closes() -> None:
    r, w = os.pipe()
    counter = LineCounter(r)
    os.write(w, b"./a\n./b\n./c\n")
    os.close(w)
    counter.join(10)
    assert counter.count == 3
    with pytest.raises(OSError):
        os.fstat(r)  # closed at EOF


# ---------------------------------------------------------------- real regions


def small_files(root: Path, files: int = 3000, media: int = 40 * MiB, seed: int = 7) -> None:
    """Many small text files (a CMS) and some incompressible media, so the
    stream is longer than the spool (parts filled early, then by the run)."""
    rng = random.Random(seed)
    words = [f"word{i}" for i in range(500)]
    for i in range(files):
        path = root / f"d{i % 40}" / f"page{i}.php"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(" ".join(rng.choices(words, k=rng.randint(20, 400))))
    (root / "media").mkdir()
    for i in range(4):
        (root / "media" / f"m{i}.bin").write_bytes(rng.randbytes(media // 4))


def tars_of(webroot: Path) -> list[int]:
    """Live tar processes archiving ``webroot`` (whoever their parent is)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cmdline[0] == b"tar" and f"--directory={webroot}".encode() in cmdline and state != "Z":
            found.append(int(pid))
    return found


def webroot_part(regions: RegionsEnv, bucket: str, index: int,
                 build: str) -> tuple[dict, bytes]:  # type: ignore[type-arg]
    [key] = [k for k in regions.keys(index, bucket, f"{build}/") if k.endswith("/manifest.json")]
    art = json.loads(regions.get(index, bucket, key))["artifacts"]["webroot"]
    return art, regions.get(index, bucket, art["key"])


@pytest.mark.parametrize("extra", [{}, {"STREAMER_CHECKSUM": "sha256"}], ids=["auto", "sha256"])
def test_early_start_stores_the_same_bytes_restores_and_verifies(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        extra: dict[str, str]) -> None:
    root = tmp_path / "www"
    small_files(root)
    env = {**streamer_env, **extra, "STREAMER_WEBROOT": str(root), "STREAMER_MEMORY_BUDGET": "48MiB",
           "STREAMER_COMPRESSION_LEVEL": "3", "STREAMER_COMPRESSION_THREADS": "0"}
    # The spool holds 3 parts of 8 MiB (half the 48 MiB budget): the run fills the rest.
    stored = {}
    for build, early in (("early", "on"), ("late", "off")):
        run = run_streamer(["hourly", build, "--json"], {**env, "STREAMER_EARLY_START": early})
        assert run.code == 0, run.stderr
        memory = json.loads(run.stdout)["memory"]
        assert 0 < memory["peak_bytes"] <= memory["budget_bytes"] == 48 * MiB
        stored[build] = webroot_part(regions, bucket, 2, build)
    (early_art, early_bytes), (late_art, late_bytes) = stored["early"], stored["late"]
    assert early_art["part_count"] >= 4 and early_art["parts"] == late_art["parts"]
    assert early_bytes == late_bytes  # byte-identical to a run without early start
    assert early_art.get("sha256") == late_art.get("sha256")
    assert early_art["stored_size"] == late_art["stored_size"]

    verify = run_streamer(["verify", "hourly", "early"], env)
    assert verify.code == 0, verify.stdout + verify.stderr
    target = tmp_path / "restored"
    restore = run_streamer(["restore", "hourly", "early", "--webroot", str(target)], env)
    assert restore.code == 0, restore.stderr
    compare = filecmp.dircmp(root, target)
    assert not compare.left_only and not compare.right_only and not compare.diff_files
    for sub in ("d0", "d39", "media"):
        _, mismatch, errors = filecmp.cmpfiles(root / sub, target / sub,
                                               os.listdir(root / sub), shallow=False)
        assert not mismatch and not errors


def test_lock_held_elsewhere_exits_4_with_tar_gone_and_nothing_uploaded(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    small_files(root, files=500, media=64 * MiB)  # longer than the spool: tar blocks on it
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "STREAMER_MEMORY_BUDGET": "32MiB"}
    now = datetime.now(UTC)
    live = Holder("tok", "web-other", 100, "boot-1", 555, "20240601T115500Z",
                  now - timedelta(minutes=1), now + timedelta(minutes=10))
    key = "lk/hourly/lock.json"
    for i in (1, 2, 3):
        regions.client(i).create_bucket(Bucket=bucket)
        regions.client(i).put_object(Bucket=bucket, Key=key, Body=live.encode())
    proc = subprocess.Popen([*STREAMER, "hourly", "lk"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen: set[int] = set()
    while proc.poll() is None:  # the early tar runs during start-up
        seen.update(tars_of(root))
        time.sleep(0.005)
    out, err = proc.communicate()
    assert proc.returncode == 4, out + err
    assert "another host holds the backup lock for lk/hourly: web-other" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert seen, "no early tar was seen"
    assert tars_of(root) == []
    for pid in seen:
        assert not Path(f"/proc/{pid}").exists()  # reaped: no zombie either
    for i in (1, 2, 3):
        assert regions.keys(i, bucket) == [key] and regions.uploads(i, bucket) == []


def test_sigterm_during_start_up_exits_130_with_tar_gone(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    small_files(root, files=200, media=64 * MiB)
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "STREAMER_MEMORY_BUDGET": "32MiB"}
    proc = subprocess.Popen([*STREAMER, "hourly", "term"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (seen := tars_of(root)):  # tar has started: the S3 start-up has not ended
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.002)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out + err
    assert "interrupted" in err and "Traceback" not in err
    assert tars_of(root) == [] and not any(Path(f"/proc/{p}").exists() for p in seen)
    for i in (1, 2, 3):
        assert regions.uploads(i, bucket) == []
        assert not [k for k in regions.keys(i, bucket) if "/term/" in k or k.startswith("term/")]


def test_an_early_source_spools_parts_and_closes_without_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "www"
    small_files(root, files=300, media=40 * MiB)
    config = parse_config({**REGIONS, "STREAMER_WEBROOT": str(root), "STREAMER_MEMORY_BUDGET": "32MiB",
                           "STREAMER_COMPRESSION_LEVEL": "1", "STREAMER_COMPRESSION_THREADS": "0"})
    fds = len(os.listdir("/proc/self/fd"))
    early = start_early(config)
    assert early is not None and early.plan.max_part == 16 * MiB
    deadline = time.monotonic() + 60
    while len(early.spool) < 2:  # 16 MiB: two 8 MiB parts, then tar waits on its pipe
        assert time.monotonic() < deadline
        time.sleep(0.01)
    early.stop_filling()
    assert [(len(b), n) for b, n in early.spooled()] == [(8 * MiB, 8 * MiB)] * 2
    assert early.child.returncode is None and tars_of(root) == [early.child.pid]
    early.close()
    early.close()  # idempotent
    assert early.child.returncode is not None and tars_of(root) == []
    assert early.spool == deque() and len(os.listdir("/proc/self/fd")) == fds
    assert early.filler.stored_bytes == 16 * MiB


def test_no_early_start_where_it_is_off_or_for_the_adt_layout(tmp_path: Path) -> None:
    base = {**REGIONS, "STREAMER_WEBROOT": str(tmp_path)}
    assert start_early(parse_config({**base, "STREAMER_EARLY_START": "off"})) is None
    assert start_early(parse_config({**base, "STREAMER_LAYOUT": "adt",
                                     "WEBSITE_URL": "example.com"})) is None
