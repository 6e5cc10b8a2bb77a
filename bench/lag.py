#!/usr/bin/env python3
"""The lag limit measured: one region at a tenth of the others' speed.

    STREAMER_REGION_PORT_BASE=... scripts/regions up
    .venv/bin/python bench/lag.py [--size 128MiB] [--rate 16000000] [--limit 5] [--budget 64MiB]

Every region sits behind the fault proxy (tests/faultproxy.py), regions 1 and
3 throttled to ``--rate`` bytes/s and region 2 to a tenth of it, so the ratio
is exact whatever the machine.  The same incompressible webroot is backed up
with ``STREAMER_LAG_LIMIT=0`` (wait for the slow region) and ``=--limit``
(drop it once the others waited on it alone that long), and a tiny webroot
gives the baseline RSS.  Prints wall times, exit codes, peak RSS and their
ratios, from the same run (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from faultproxy import Fault, FaultProxy  # noqa: E402
from s3util import load_regions_env, run_streamer  # noqa: E402

from streamer.settings.values import parse_size  # noqa: E402

MiB = 1024 * 1024


def _tree(root: Path, size: int) -> None:
    root.mkdir(parents=True)
    left, i = size, 0
    while left > 0:
        n = min(16 * MiB, left)
        (root / f"media-{i}.bin").write_bytes(os.urandom(n))
        left, i = left - n, i + 1


def _run(env: dict[str, str], root: Path, limit: str, build: str) -> dict[str, float | int]:
    started = time.monotonic()
    run = run_streamer(["backup", "hourly", build, "--quiet"], {**env, "STREAMER_WEBROOT": str(root),
                                           "STREAMER_LAG_LIMIT": limit}, timeout=1800)
    wall = time.monotonic() - started
    return {"exit": run.code, "wall_s": round(wall, 1), "peak_rss_mib": round(run.max_rss_kib / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="128MiB")
    ap.add_argument("--rate", type=int, default=16_000_000,
                    help="bytes/s of the fast regions (the slow one: a tenth)")
    ap.add_argument("--limit", default="5", help="STREAMER_LAG_LIMIT of the run with the limit")
    ap.add_argument("--budget", default="64MiB")
    args = ap.parse_args()
    size, rate = parse_size("--size", args.size), args.rate
    regions = load_regions_env()
    bucket = f"lag-{uuid.uuid4().hex[:12]}"
    work = Path(tempfile.mkdtemp(prefix="streamer-lag-"))
    results: dict[str, object] = {"size": size, "fast_rate": rate, "slow_rate": rate // 10,
                                  "budget": args.budget, "limit": args.limit}
    try:
        _tree(work / "big", size)
        _tree(work / "tiny", 64 * 1024)
        proxies = [FaultProxy(upstream=e, seed=7) for e in regions.endpoints]
        for i, proxy in enumerate(proxies):
            proxy.__enter__()
            proxy.add(Fault(op="*", action="throttle", rate=rate // 10 if i == 1 else rate))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "STREAMER_", "DB_"))}
        env.update(regions.env)
        env.update({"S3_HOST_BASE": "|".join(p.endpoint for p in proxies), "STREAMER_BUCKET": bucket,
                    "DATABASE_INSTALLATION_TYPE": "None", "STREAMER_MEMORY_BUDGET": args.budget,
                    "TMPDIR": str(work)})
        results["baseline"] = _run(env, work / "tiny", "0", "baseline")
        results["without_limit"] = _run(env, work / "big", "0", "without")
        results["with_limit"] = _run(env, work / "big", args.limit, "with")
        for proxy in proxies:
            proxy.__exit__(None, None, None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        regions.delete_bucket_everywhere(bucket)
    base, without, with_ = (results[k] for k in ("baseline", "without_limit", "with_limit"))
    assert isinstance(base, dict) and isinstance(without, dict) and isinstance(with_, dict)
    budget_mib = parse_size("--budget", args.budget) / MiB
    results["wall_ratio_with_over_without"] = round(with_["wall_s"] / without["wall_s"], 3)
    results["rss_bound_mib"] = round(base["peak_rss_mib"] + budget_mib, 1)
    results["rss_within_bound"] = max(with_["peak_rss_mib"], without["peak_rss_mib"]) <= \
        results["rss_bound_mib"]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
