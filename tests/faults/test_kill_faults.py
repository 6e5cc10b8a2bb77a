"""SIGKILL at seeded moments, mid-upload and mid-commit (one region's
CompleteMultipartUpload or manifest held by the fault proxy), and SIGINT
mid-upload: `streamer list` never shows a partial run, `streamer cleanup`
leaves no multipart upload behind (docs/RELIABILITY.md)."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from faultproxy import Fault, FaultProxy
from faultrun import (
    MiB,
    env_for,
    host_base,
    leftover_uploads,
    listed_runs,
    no_traceback,
    proxies,
    random_webroot,
    verified,
    via,
)
from s3util import STREAMER, RegionsEnv, run_streamer

# (name, region held, the fault holding it, what the proxy must have seen before the kill)
MOMENTS = {
    "mid-upload": (2, None, "UploadPart"),
    "region 2 completing": (2, Fault(op="CompleteMultipartUpload", action="blackhole"),
                            "CompleteMultipartUpload"),
    "region 3 writing its manifest": (3, Fault(op="PutObject", action="blackhole", path="manifest.json"),
                                      "PutObject"),
}


def _wait_for(proxy: FaultProxy, op: str, count: int, proc: subprocess.Popen[bytes]) -> None:
    """Until ``count`` of the run's own ``op`` requests passed (the checksum
    probe's UploadParts, sent during start-up, are not the run's parts)."""
    deadline = time.monotonic() + 180
    while proxy.seen[op] - proxy.seen[f"{op} probe"] < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{op} never reached {count}"
        time.sleep(0.01)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_sigkill_never_leaves_a_partial_run_and_cleanup_leaves_no_upload(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        moment: str, seed: int) -> None:
    held, fault, op = MOMENTS[moment]
    rng = random.Random(seed)
    root = tmp_path / "www"
    random_webroot(root, 40 * MiB, seed)
    with proxies(regions, (held,), seed) as px:
        if fault is not None:
            px[held].add(fault)
        env = env_for(streamer_env, root, via(regions, px), STREAMER_MEMORY_BUDGET="32MiB")
        proc = subprocess.Popen([*STREAMER, "hourly", "killed"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            # mid-upload: a seeded number of parts; mid-commit: the held request arrived
            _wait_for(px[held], op, rng.randint(1, 4) if fault is None else 1, proc)
            time.sleep(rng.uniform(0, 0.3))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    env = {**env, "S3_HOST_BASE": host_base(regions, {})}
    shown = {i: [r for r in runs if r["build"] == "killed"] for i, runs in listed_runs(env, regions).items()}
    if any(shown.values()):  # a region that wrote its manifest holds a whole run
        states = verified(env, regions, "hourly", "killed")
        assert all(states[i] == "ok" for i, runs in shown.items() if runs), states
    if fault is not None:
        assert shown[held] == []

    run = run_streamer(["cleanup", "hourly", "killed"], env)
    assert run.code == 0, run.stdout + run.stderr
    assert leftover_uploads(regions, bucket) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_mid_upload_exit_130_within_seconds(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        signum: signal.Signals) -> None:
    """Region 2 throttled to 2 MB/s so the run is surely mid-upload when the signal comes."""
    root = tmp_path / "www"
    random_webroot(root, 64 * MiB)
    with proxies(regions, (2,), 0) as px:
        px[2].add(Fault(op="UploadPart", action="throttle", rate=2_000_000))
        env = env_for(streamer_env, root, via(regions, px), STREAMER_MEMORY_BUDGET="32MiB")
        proc = subprocess.Popen([*STREAMER, "hourly", "stopped"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(px[2], "UploadPart", 2, proc)  # type: ignore[arg-type]
            sent = time.monotonic()
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=120)
            seconds = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    print(f"{signum.name}: exit {proc.returncode} {seconds:.1f} s after the signal")
    assert proc.returncode == 130, out + err
    assert seconds < 30
    assert "interrupted" in err and no_traceback(err)
    assert leftover_uploads(regions, bucket) == []
