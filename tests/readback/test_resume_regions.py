"""Integration: a restore that loses its region half-way resumes in the next
one from the first part not yet handed to tar, against real SeaweedFS regions
(a damaged copy; a GET body cut short and a flipped byte through the fault
proxy, tests/faultproxy.py).  docs/RELIABILITY.md, restore rows."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Fault, FaultProxy
from s3util import RegionsEnv, Run, run_streamer
from treeutil import corrupt, manifests_of, snapshot

MiB = 1024 * 1024


@pytest.fixture
def checksum() -> str:
    """STREAMER_CHECKSUM of the backup (a test parametrizes it to read an older manifest)."""
    return "auto"


@pytest.fixture
def backed_up(regions: RegionsEnv, bucket: str, streamer_env: dict[str, str],
              tmp_path: Path, checksum: str) -> tuple[dict[str, str], Path, dict[str, Any]]:
    """A committed backup of 40 MB that does not compress: five 8 MiB parts."""
    root = tmp_path / "www"
    (root / "media").mkdir(parents=True)
    for i in range(4):
        (root / "media" / f"clip{i}.bin").write_bytes(os.urandom(10 * MiB))
    (root / "index.php").write_text("<?php echo 'hello';\n")
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "STREAMER_CHECKSUM": checksum}
    run = run_streamer(["hourly", "resumed"], env)
    assert run.code == 0, run.stdout + run.stderr
    [manifest] = manifests_of(regions, bucket, 1, "resumed")
    art = manifest["artifacts"]["webroot"]
    assert len(art["parts"]["sizes"]) >= 5, art
    return env, root, art


def resumed_at(run: Run) -> int:
    [at] = re.findall(r"webroot from region 1 \(.*\) failed at byte (\d+): .*; resuming there "
                      r"from the next region", run.stderr)
    return int(at)


def read_in_all(run: Run, stored: int) -> float:
    """Bytes downloaded over the stored size, as restore reports it."""
    found = re.search(r"read in all \((\d+\.\d+)x the stored size\)", run.stdout)
    return float(found.group(1)) if found else 1.0


def restore(env: dict[str, str], target: Path) -> Run:
    """With a 32 MiB budget two ranges are in flight, so a part past the second
    is fetched only once the first was handed to tar: a fault there finds
    bytes already delivered, whatever the timing."""
    return run_streamer(["restore", "hourly", "resumed", "--webroot", str(target)],
                        {**env, "STREAMER_MEMORY_BUDGET": "32MiB"})


@pytest.mark.parametrize("checksum", ["auto", "md5"])  # md5: a manifest as before auto
def test_a_copy_damaged_half_way_is_resumed_from_the_next_region(
        backed_up: tuple[dict[str, str], Path, dict[str, Any]], regions: RegionsEnv, bucket: str,
        tmp_path: Path, checksum: str) -> None:
    env, root, art = backed_up
    corrupt(regions, bucket, 1, art["key"])  # 64 bytes in the middle of region 1's copy
    run = restore(env, tmp_path / "out")
    assert run.code == 0, run.stdout + run.stderr
    at, middle = resumed_at(run), art["stored_size"] // 2
    assert 0 < at <= middle  # parts before the damage came from region 1 and stayed
    assert at in {sum(art["parts"]["sizes"][:n]) for n in range(len(art["parts"]["sizes"]))}
    assert re.search(r"from region 1 \(.*\) then region 2 \(", run.stdout), run.stdout
    assert snapshot(tmp_path / "out") == snapshot(root)
    assert read_in_all(run, art["stored_size"]) < 1.5

    run = run_streamer(["verify", "hourly", "resumed"], env)
    assert run.code == 1
    [bad] = [ln for ln in run.stdout.splitlines() if "BAD" in ln]
    part = next(n for n in range(len(art["parts"]["sizes"]))
                if sum(art["parts"]["sizes"][:n + 1]) > middle)
    algorithm = {"auto": "crc32c", "md5": "md5"}[checksum]
    assert art["parts"]["algorithm"] == algorithm
    assert ("sha256" in art, "parts_sha256" in art) == (checksum == "md5", checksum == "auto")
    assert bad.startswith("region 1") and f"part {part + 1} at byte " in bad and algorithm.upper() in bad


def test_a_get_cut_half_way_through_the_proxy_resumes_in_region_2(
        backed_up: tuple[dict[str, str], Path, dict[str, Any]], regions: RegionsEnv,
        tmp_path: Path) -> None:
    env, root, art = backed_up
    stored = art["stored_size"]
    with FaultProxy(upstream=regions.endpoints[0], seed=7) as proxy:
        through = {**env, "S3_HOST_BASE": "|".join([proxy.endpoint, *regions.endpoints[1:]])}
        proxy.add(Fault(op="GetObject", action="cut", at=stored // 2, path="webroot"))
        run = restore(through, tmp_path / "cut")
        assert run.code == 0, run.stdout + run.stderr
        assert proxy.fired["cut"] >= 1
        assert 0 < resumed_at(run) <= stored // 2
        assert snapshot(tmp_path / "cut") == snapshot(root)
        assert read_in_all(run, stored) < 1.5  # well under twice the stored size

        proxy.clear()
        proxy.add(Fault(op="GetObject", action="flip", at=stored // 2 + 12345, path="webroot"))
        run = restore(through, tmp_path / "flip")
        assert run.code == 0, run.stdout + run.stderr
        assert "does not match the manifest" in run.stderr and resumed_at(run) > 0
        assert snapshot(tmp_path / "flip") == snapshot(root)
        run = run_streamer(["verify", "hourly", "resumed"], through)
        assert run.code == 1
        [bad] = [ln for ln in run.stdout.splitlines() if "BAD" in ln]
        assert bad.startswith("region 1") and re.search(r"part \d+ at byte \d+", bad)
