#!/usr/bin/env python3
"""The time to drop a black-holed region, phase by phase.

    scripts/regions up
    .venv/bin/python bench/blackhole.py [--stall 10] [--size 32MiB]

Region 2 sits behind the fault proxy (tests/faultproxy.py).  For each phase
of a backup the proxy turns region 2 into a black hole (it accepts and never
answers) for exactly that phase's requests: the bucket check, the lock claim,
the cleanup listing, creating the upload, a part, completing, the manifest,
and retention's listing.  Each run is timed beside a run with no fault, in the
same invocation; "cost" is the difference: what one silent region adds to a
run.  docs/RELIABILITY.md gives the bound it is checked against: one stall
timeout, plus the abort (at most 30 s) and the lock release (30 s) where
region 2 still holds them.
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

# phase -> the fault that silences region 2 there ("after": requests of that
# op let through first, counted from the start of the run)
PHASES: dict[str, Fault | None] = {
    "none": None,
    "bucket check": Fault(op="HeadBucket", action="blackhole"),
    "lock claim": Fault(op="PutObject", action="blackhole", path="lock.json"),
    "cleanup": Fault(op="ListMultipartUploads", action="blackhole"),
    "create": Fault(op="CreateMultipartUpload", action="blackhole"),
    "a part": Fault(op="UploadPart", action="blackhole", after=1),
    "complete": Fault(op="CompleteMultipartUpload", action="blackhole"),
    "manifest": Fault(op="PutObject", action="blackhole", path="manifest.json"),
    "retention": Fault(op="ListObjectsV2", action="blackhole", after=1),  # the first: cleanup
}


def _tree(root: Path, size: int) -> None:
    root.mkdir(parents=True)
    left, i = size, 0
    while left > 0:
        n = min(8 * MiB, left)
        (root / f"media-{i}.bin").write_bytes(os.urandom(n))
        left, i = left - n, i + 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stall", default="10", help="STREAMER_STALL_TIMEOUT for every run")
    ap.add_argument("--size", default="32MiB")
    args = ap.parse_args()
    regions = load_regions_env()
    work = Path(tempfile.mkdtemp(prefix="streamer-blackhole-"))
    buckets: list[str] = []
    rows = []
    try:
        _tree(work / "tree", parse_size("--size", args.size))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "STREAMER_", "DB_"))}
        base.update(regions.env)
        base.update({"DATABASE_INSTALLATION_TYPE": "None", "STREAMER_WEBROOT": str(work / "tree"),
                     "STREAMER_STALL_TIMEOUT": args.stall, "STREAMER_HEAL_LIMIT": "0",
                     "TMPDIR": str(work)})
        for phase, fault in PHASES.items():
            bucket = f"bh-{uuid.uuid4().hex[:12]}"
            buckets.append(bucket)
            with FaultProxy(upstream=regions.endpoints[1], seed=1) as proxy:
                endpoints = list(regions.endpoints)
                endpoints[1] = proxy.endpoint
                env = {**base, "S3_HOST_BASE": "|".join(endpoints), "STREAMER_BUCKET": bucket}
                if fault is not None:
                    proxy.add(fault)
                started = time.monotonic()
                run = run_streamer(["backup", "hourly", "bh", "--quiet"], env, timeout=1800)
                wall = time.monotonic() - started
                fired = sum(proxy.fired.values())
            rows.append({"phase": phase, "exit": run.code, "wall_s": round(wall, 1),
                         "fault_fired": fired})
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for bucket in buckets:
            regions.delete_bucket_everywhere(bucket)
    clean = rows[0]["wall_s"]
    for row in rows:
        row["cost_s"] = round(float(row["wall_s"]) - float(clean), 1)
    print(json.dumps({"stall_timeout": float(args.stall), "size": args.size, "phases": rows},
                     indent=2))


if __name__ == "__main__":
    main()
