"""Faults while a backup uploads, through the fault proxy (tests/faultproxy.py) in
front of real SeaweedFS regions, with `streamer` run as users run it.  What
each test proves is listed in docs/RELIABILITY.md."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from faultproxy import Fault
from faultrun import (
    MiB,
    committed,
    env_for,
    leftover_uploads,
    no_traceback,
    proxies,
    random_webroot,
    region_lines,
    verified,
    via,
)
from s3util import STREAMER, RegionsEnv, run_streamer

# docs/RELIABILITY.md: a black-holed region costs at most one stall timeout (30 s
# if it goes silent at the lock claim), its abort (within the stall timeout) and
# 30 s for the lock release, beyond what the healthy regions need.
STALL = 5
BLACK_HOLE_BOUND = max(30, STALL) + STALL + 30


@pytest.mark.parametrize("seed", [1, 2])
def test_slowdown_and_resets_on_part_uploads_every_region_commits_and_verifies(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path, seed: int) -> None:
    root = tmp_path / "www"
    random_webroot(root, 96 * MiB, seed)
    with proxies(regions, (1, 2, 3), seed) as px:
        for p in px.values():
            p.add(Fault(op="UploadPart", action="status", status=503, code="SlowDown", probability=0.08))
            p.add(Fault(op="UploadPart", action="reset", probability=0.08))
        env = env_for(streamer_env, root, via(regions, px), STREAMER_MEMORY_BUDGET="64MiB")
        run = run_streamer(["hourly", "flaky"], env)
        fired = sum(p.fired["status"] + p.fired["reset"] for p in px.values())
    assert run.code == 0, run.stdout + run.stderr
    assert fired >= 2, "the faults never fired: the test proved nothing"
    assert committed(regions, bucket, "flaky") == [1, 2, 3]
    assert verified(env, regions, "hourly", "flaky") == {1: "ok", 2: "ok", 3: "ok"}
    assert leftover_uploads(regions, bucket) == []


def _black_hole_run(regions: RegionsEnv, streamer_env: dict[str, str], root: Path,
                    after_parts: int | None) -> tuple[int, str, float, int]:
    """Region 2 a black hole from the start (``after_parts`` None) or once it has
    seen that many UploadParts: (exit code, stdout + stderr, seconds, parts seen)."""
    with proxies(regions, (2,), 0) as px:
        if after_parts is None:
            px[2].add(Fault(op="*", action="blackhole"))
        env = env_for(streamer_env, root, via(regions, px), STREAMER_STALL_TIMEOUT=str(STALL),
                      STREAMER_MEMORY_BUDGET="64MiB")
        started = time.monotonic()
        proc = subprocess.Popen([*STREAMER, "hourly", "hole"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            if after_parts is not None:
                while px[2].seen["UploadPart"] < after_parts:
                    assert proc.poll() is None, proc.communicate()
                    assert time.monotonic() - started < 120, "region 2 never received parts"
                    time.sleep(0.02)
                px[2].add(Fault(op="*", action="blackhole"))
            out, err = proc.communicate(timeout=3 * BLACK_HOLE_BOUND + 120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        return proc.returncode, out + err, time.monotonic() - started, px[2].seen["UploadPart"]


@pytest.mark.parametrize("phase", ["startup", "mid-upload"])
def test_a_black_hole_is_dropped_within_the_documented_bound(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path, phase: str) -> None:
    root = tmp_path / "www"
    random_webroot(root, 64 * MiB)
    code, output, seconds, parts = _black_hole_run(regions, streamer_env, root,
                                                   None if phase == "startup" else 3)
    print(f"black hole at {phase}: exit {code} after {seconds:.1f} s (bound {BLACK_HOLE_BOUND} s)")
    assert code == 3, output
    assert committed(regions, bucket, "hole") == [1, 3]
    assert region_lines(output, 2) and "failed" in region_lines(output, 2)[0], output
    assert no_traceback(output), output
    assert seconds < 3 * BLACK_HOLE_BOUND, seconds
    assert (parts == 0) == (phase == "startup")
    assert verified(streamer_env | {"STREAMER_WEBROOT": str(root)}, regions, "hourly", "hole") == {
        1: "ok", 2: "BAD", 3: "ok"}
    assert leftover_uploads(regions, bucket, (1, 3)) == []


def test_a_region_answering_500_after_some_requests_is_dropped(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    random_webroot(root, 48 * MiB)
    with proxies(regions, (2,), 0) as px:
        px[2].add(Fault(op="*", action="status", status=500, code="InternalError", after=8))
        env = env_for(streamer_env, root, via(regions, px), STREAMER_MEMORY_BUDGET="64MiB")
        started = time.monotonic()
        run = run_streamer(["hourly", "five-hundred"], env)
        seconds = time.monotonic() - started
        assert px[2].fired["status"] >= 1
    print(f"500 after 8 requests: exit {run.code} after {seconds:.1f} s")
    assert run.code == 3, run.stdout + run.stderr
    assert committed(regions, bucket, "five-hundred") == [1, 3]
    [line] = region_lines(run.stdout, 2)
    assert "failed" in line and "InternalError" in line
    assert no_traceback(run.stderr)
    assert verified(env, regions, "hourly", "five-hundred") == {1: "ok", 2: "BAD", 3: "ok"}
    assert leftover_uploads(regions, bucket, (1, 3)) == []


@pytest.mark.parametrize("checksum,seed", [("md5", 1), ("md5", 2), ("sha256", 3), ("sha256", 4)])
def test_credentials_revoked_mid_run_leave_the_healthy_regions_exact(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        checksum: str, seed: int) -> None:
    """Issue #10's first finding: region 2 answers 403 AccessDenied after 6-8
    requests; regions 1 and 3 must commit exactly the parts' bytes."""
    root = tmp_path / "www"
    random_webroot(root, 80 * MiB, seed)
    with proxies(regions, (2,), seed) as px:
        px[2].add(Fault(op="*", action="status", status=403, code="AccessDenied", after=6 + seed % 3))
        env = env_for(streamer_env, root, via(regions, px), STREAMER_QUORUM="2",
                      STREAMER_CHECKSUM=checksum, STREAMER_MEMORY_BUDGET="64MiB")
        run = run_streamer(["hourly", "revoked"], env)
        assert px[2].fired["status"] >= 1
    assert run.code == 3, run.stdout + run.stderr
    assert committed(regions, bucket, "revoked") == [1, 3]
    assert "AccessDenied" in region_lines(run.stdout, 2)[0]
    assert verified(env, regions, "hourly", "revoked") == {1: "ok", 2: "BAD", 3: "ok"}
    assert leftover_uploads(regions, bucket, (1, 3)) == []
