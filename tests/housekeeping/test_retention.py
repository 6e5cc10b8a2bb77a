"""Integration: retention after every commit, and `streamer prune`."""

from __future__ import annotations

import time
from pathlib import Path

from s3util import RegionsEnv, run_streamer

from streamer import model


def committed(regions: RegionsEnv, bucket: str, index: int, prefix: str) -> list[str]:
    return sorted(k.split("/")[2] for k in regions.keys(index, bucket, prefix)
                  if k.endswith("/manifest.json"))


def test_after_n_plus_3_backups_exactly_n_remain_in_every_region(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    env = {**streamer_env, "STREAMER_WEBROOT": str(root), "STREAMER_KEEP_HOURLY": "2"}
    stamps = []
    for n in range(5):  # N + 3 with N = 2
        (root / "n.txt").write_text(str(n))
        run = run_streamer(["hourly", "ret"], env)
        assert run.code == 0, run.stdout + run.stderr
        stamps.append(run.stdout.split("committed ret/hourly/")[1].split()[0])
        time.sleep(1.05)  # stamps have one-second resolution
    assert len(set(stamps)) == 5
    # A run in progress (no manifest) is never retention's business.
    partial = f"ret/hourly/{model.stamp(model.parse_stamp(stamps[0]).replace(year=2000))}/x"
    for i in (1, 2, 3):
        regions.client(i).put_object(Bucket=bucket, Key=partial, Body=b"p")
    run = run_streamer(["hourly", "ret"], env)  # the 6th: retention again
    assert run.code == 0
    stamps.append(run.stdout.split("committed ret/hourly/")[1].split()[0])
    for i in (1, 2, 3):
        assert committed(regions, bucket, i, "ret/") == stamps[-2:]
        keys = regions.keys(i, bucket, "ret/")
        assert partial in keys
        assert {k.split("/")[2] for k in keys} == {*stamps[-2:], partial.split("/")[2]}
    assert "retention ret/hourly (keep 2)" in run.stdout and "removed 1" in run.stdout

    # streamer prune applies the setting now in force, and never removes the newest.
    run = run_streamer(["prune", "hourly", "ret"], {**env, "STREAMER_KEEP_HOURLY": "1"})
    assert run.code == 0, run.stderr
    for i in (1, 2, 3):
        assert committed(regions, bucket, i, "ret/") == stamps[-1:]
    run = run_streamer(["prune"], {**env, "STREAMER_KEEP_HOURLY": "1"})
    assert run.code == 0 and "removed none" in run.stdout
    for i in (1, 2, 3):
        assert committed(regions, bucket, i, "ret/") == stamps[-1:]
