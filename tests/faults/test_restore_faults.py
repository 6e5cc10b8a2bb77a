"""Faults while reading a backup back: region 1 cuts a GET body short or flips a
byte in it, through the fault proxy.  `restore` falls back to another region and
restores the right bytes; `verify` names region 1 (docs/RELIABILITY.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from faultproxy import Fault
from faultrun import MiB, committed, env_for, host_base, no_traceback, proxies, random_webroot, via
from s3util import RegionsEnv, run_streamer
from treeutil import snapshot


@pytest.fixture
def backed_up(regions: RegionsEnv, bucket: str, streamer_env: dict[str, str],
              tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A 40 MiB incompressible webroot committed in every region: several ranged GETs."""
    root = tmp_path / "www"
    random_webroot(root, 40 * MiB, seed=5)
    env = env_for(streamer_env, root, host_base(regions, {}))
    run = run_streamer(["hourly", "readback"], env)
    assert run.code == 0, run.stdout + run.stderr
    assert committed(regions, bucket, "readback") == [1, 2, 3]
    return env, root


FAULTS = {"cut": Fault(op="GetObject", action="cut", at=20 * MiB + 12345),
          "flip": Fault(op="GetObject", action="flip", at=30 * MiB + 777)}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_restore_falls_back_to_another_region_and_restores_the_right_bytes(
        regions: RegionsEnv, backed_up: tuple[dict[str, str], Path], tmp_path: Path, fault: str) -> None:
    env, root = backed_up
    with proxies(regions, (1,), 3) as px:
        px[1].add(FAULTS[fault])
        target = tmp_path / "restored"
        run = run_streamer(["restore", "hourly", "readback", "--webroot", str(target)],
                           {**env, "S3_HOST_BASE": via(regions, px)})
        assert px[1].fired[fault] >= 1
    assert run.code == 0, run.stdout + run.stderr
    # the restore resumes in region 2 from the first part not yet handed to tar
    assert "webroot from region 1" in run.stderr
    assert "resuming there from the next region" in run.stderr
    assert "then region 2" in run.stdout or "from region 2" in run.stdout
    assert no_traceback(run.stderr)
    assert snapshot(target) == snapshot(root)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_verify_reports_region_1_bad_and_the_others_ok(
        regions: RegionsEnv, backed_up: tuple[dict[str, str], Path], fault: str) -> None:
    env, _ = backed_up
    with proxies(regions, (1,), 3) as px:
        px[1].add(FAULTS[fault])
        run = run_streamer(["verify", "hourly", "readback"], {**env, "S3_HOST_BASE": via(regions, px)})
        assert px[1].fired[fault] >= 1
    assert run.code == 1, run.stdout + run.stderr  # `streamer verify --help`: 1, a hash does not match
    lines = run.stdout.strip().splitlines()
    assert [ln.split(":")[0].split(" (")[0] for ln in lines] == ["region 1", "region 2", "region 3"]
    assert ": BAD" in lines[0] and ": ok: " in lines[1] and ": ok: " in lines[2]
    assert "verify failed: region 1" in run.stderr and no_traceback(run.stderr)
