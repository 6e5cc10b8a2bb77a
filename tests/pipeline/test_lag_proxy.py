"""The lag limit and the request timeouts against real SeaweedFS regions,
one of them throttled by the fault proxy (tests/faultproxy.py); see
docs/RELIABILITY.md."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from faultproxy import Fault, FaultProxy
from s3util import RegionsEnv, run_streamer

from streamer.errors import StoreFailure
from streamer.settings.config import Region, Secret
from streamer.store.base import PartBody
from streamer.store.retry import RetryPolicy
from streamer.store.s3 import open_store

pytestmark = pytest.mark.anyio
MiB = 1024 * 1024
ONCE = RetryPolicy(max_attempts=1)


def _manifests(regions: RegionsEnv, bucket: str, index: int) -> list[str]:
    return [k for k in regions.keys(index, bucket) if k.endswith("/manifest.json")]


def test_a_throttled_region_is_dropped_past_the_lag_limit(regions: RegionsEnv, bucket: str,
                                                          streamer_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    """Region 2 behind a proxy at 1 MB/s, the others at full speed, 64 MiB of
    incompressible data and a 32 MiB budget: waiting for region 2 would take
    over a minute; past the 3 s lag limit it is dropped, its upload aborted,
    and regions 1 and 3 commit (exit 3)."""
    root = tmp_path / "www"
    root.mkdir()
    for i in range(4):
        (root / f"media-{i}.bin").write_bytes(os.urandom(16 * MiB))
    with FaultProxy(upstream=regions.endpoints[1], seed=7) as proxy:
        proxy.add(Fault(op="*", action="throttle", rate=1_000_000))
        endpoints = [regions.endpoints[0], proxy.endpoint, regions.endpoints[2]]
        env = {**streamer_env, "S3_HOST_BASE": "|".join(endpoints), "STREAMER_WEBROOT": str(root),
               "STREAMER_MEMORY_BUDGET": "32MiB", "STREAMER_LAG_LIMIT": "3"}
        run = run_streamer(["hourly", "lag"], env, timeout=300)
        assert proxy.seen["UploadPart"] >= 1  # region 2 was really sent parts, slowly
    assert run.code == 3, run.stdout + run.stderr
    assert re.search(r"region 2 \(.*\): failed: .*too slow.*STREAMER_LAG_LIMIT=3", run.stdout), run.stdout
    assert len(_manifests(regions, bucket, 1)) == 1 and len(_manifests(regions, bucket, 3)) == 1
    assert _manifests(regions, bucket, 2) == [] and regions.uploads(2, bucket) == []


async def test_a_part_slower_than_the_control_timeout_is_not_cut_off(regions: RegionsEnv,
                                                                     bucket: str) -> None:
    """An 8 MiB part through a 2 MB/s proxy takes about 4 s.  With a 2 s control
    timeout and a 512 KiB/s minimum rate its own timeout is 18 s, and it
    goes through; with a flat 2 s timeout (a minimum rate too high to add
    anything) it is cut off.  A black-holed control request still times out
    after the short control timeout."""
    with FaultProxy(upstream=regions.endpoints[0], seed=7) as proxy:
        region = Region(1, proxy.endpoint, Secret(regions.env["S3_ACCESS_KEY"]),
                        Secret(regions.env["S3_SECRET_KEY"]))
        part = PartBody(os.urandom(8 * MiB))
        async with open_store(region, bucket, "md5", 2.0, ONCE, min_part_rate=512 * 1024) as s3:
            await s3.ensure_bucket()
            upload = await s3.create_multipart("slow/part.bin", "application/octet-stream")
            proxy.add(Fault(op="UploadPart", action="throttle", rate=2_000_000))
            assert await s3.upload_part("slow/part.bin", upload, 1, part)
            proxy.add(Fault(op="HeadObject", action="blackhole"))
            started = time.monotonic()
            with pytest.raises(StoreFailure, match="timed out"):
                await s3.head_object("slow/part.bin")
            assert time.monotonic() - started < 30  # the control timeout, not a part's
            await s3.abort_multipart("slow/part.bin", upload)
        async with open_store(region, bucket, "md5", 2.0, ONCE, min_part_rate=1024**4) as flat:
            upload = await flat.create_multipart("slow/flat.bin", "application/octet-stream")
            with pytest.raises(StoreFailure, match="timed out"):
                await flat.upload_part("slow/flat.bin", upload, 1, part)
            proxy.clear()
            await flat.abort_multipart("slow/flat.bin", upload)
