#!/usr/bin/env python3
"""`streamer assets` at scale: N small objects in one assets bucket of region 1,
copied to regions 2 and 3; then 1% rewritten and copied again.

    STREAMER_REGION_PORT_BASE=... .venv/bin/python bench/assets.py [--objects 20000] [--size 2048]

Uses the regions of `scripts/regions` (started if they are not running).
Prints one Markdown table: per run its wall time, objects listed per second,
copies made, bytes copied, and the peak RSS of the streamer process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from s3util import RegionsEnv, load_regions_env, run_streamer  # noqa: E402

from streamer.settings.values import parse_size  # noqa: E402


def populate(regions: RegionsEnv, bucket: str, keys: list[str], size: int, tag: bytes) -> None:
    client = regions.client(1)

    def put(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=tag + os.urandom(size - len(tag)))

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put, keys))


def empty(regions: RegionsEnv, bucket: str) -> None:
    """Delete a bucket in every region, its objects a thousand at a time."""
    for i in range(1, len(regions.endpoints) + 1):
        c = regions.client(i)
        keys = regions.keys(i, bucket)
        for n in range(0, len(keys), 1000):
            c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[n:n + 1000]]})
    regions.delete_bucket_everywhere(bucket)


def measure(name: str, env: dict[str, str], objects: int) -> dict[str, object]:
    """One run under GNU time, for the CPU seconds and peak RSS of the streamer
    process alone (wait4's figure would carry the large harness's own peak)."""
    with tempfile.NamedTemporaryFile("r") as times:
        started = time.monotonic()
        run = run_streamer(["assets", "bench"], env, timeout=7200,
                           prefix=["/usr/bin/time", "-o", times.name, "-f", "%U %S %M"])
        seconds = time.monotonic() - started
        user, system, rss_kib = times.read().split()[-3:]
    if run.code != 0:
        print(f"{name}: exit {run.code}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}", file=sys.stderr)
    m = re.search(r"(\d+) cop(?:y|ies) made \(([\d.]+) MB\)", run.stdout)
    assert m, run.stdout
    row = {"run": name, "exit": run.code, "seconds": seconds, "objects_per_s": objects / seconds,
           "copies": int(m.group(1)), "copied_mb": float(m.group(2)), "cpu_s": float(user) + float(system),
           "rss_mib": int(rss_kib) / 1024}
    print(f"{row}", file=sys.stderr, flush=True)  # each run as it ends: a long bench cut short keeps it
    return row


def baseline_rss(env: dict[str, str]) -> float:
    """Peak RSS (MiB) of backing up a one-file webroot: the baseline the budget adds to."""
    with tempfile.TemporaryDirectory() as root, tempfile.NamedTemporaryFile("r") as times:
        Path(root, "index.html").write_text("hello\n")
        run = run_streamer(["backup", "manual", "baseline", "--quiet"],
                           {**env, "STREAMER_WEBROOT": root, "DATABASE_INSTALLATION_TYPE": "None"},
                           prefix=["/usr/bin/time", "-o", times.name, "-f", "%M"])
        if run.code != 0:
            raise SystemExit(f"baseline backup exited {run.code}: {run.stderr[-500:]}")
        return int(times.read().split()[-1]) / 1024


def convention(args: argparse.Namespace, rows: list[dict[str, object]], table: list[str],
               baseline: float) -> dict[str, object]:
    """The bench convention's document (bench/README.md): the goals of issue 13."""
    first, second = rows[0], rows[1]
    budget = parse_size("--budget", args.budget) / (1 << 20)
    peak = max(float(str(r["rss_mib"])) for r in rows)
    share = float(str(second["seconds"])) / float(str(first["seconds"]))
    want = 2 * len(range(0, args.objects, 100))
    ok = all(r["exit"] == 0 for r in rows)
    goals = [
        {"issue": 13, "goal": f"{args.objects:,} objects: peak RSS ≤ baseline + STREAMER_MEMORY_BUDGET",
         "measured": f"peak {peak:.0f} MiB; limit {baseline:.0f} + {budget:.0f} MiB",
         "pass": ok and peak <= baseline + budget},
        {"issue": 13, "goal": "after 1% rewritten: about 1% copied (exactly those, into 2 regions)",
         "measured": f"{second['copies']} copies of {want} expected",
         "pass": ok and second["copies"] == want},
        {"issue": 13, "goal": "after 1% rewritten: the run takes a small fraction (≤ 25%) of the first",
         "measured": f"{second['seconds']:.1f} s / {first['seconds']:.1f} s = {100 * share:.1f}%",
         "pass": ok and share <= 0.25},
    ]
    return {"title": "The assets buckets at scale (issue 13)",
            "command": os.environ.get("BENCH_COMMAND") or " ".join(["bench/assets.py", *sys.argv[1:]]),
            "table_md": "\n".join(table), "goals": goals, "rows": rows, "baseline_rss_mib": baseline}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, help="default 20000; with --out 100000, with --quick 2000")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--budget", default="64MiB")
    ap.add_argument("--out", type=Path, help="also write the bench convention's JSON with issue 13's goals")
    ap.add_argument("--quick", action="store_true", help="2,000 objects")
    args = ap.parse_args()
    args.objects = args.objects or (2000 if args.quick else 100_000 if args.out else 20000)
    regions = load_regions_env()
    tag = uuid.uuid4().hex[:8]
    url = f"bench{tag}.example"
    bucket = f"bench{tag}-example-assets-media"
    backups = f"bench{tag}-backups"
    env = {**os.environ, **regions.env, "WEBSITE_URL": url, "PERSIST_ASSETS_TO_DATASTORE": "1",
           "DIRECTORIES_TO_MOUNT": "media", "STREAMER_BUCKET": backups,
           "STREAMER_MEMORY_BUDGET": args.budget}
    keys = [f"uploads/{i // 1000:03d}/{i:07d}.jpg" for i in range(args.objects)]
    try:
        regions.client(1).create_bucket(Bucket=bucket)
        t = time.monotonic()
        populate(regions, bucket, keys, args.size, b"v1")
        print(f"populated {args.objects} objects in {time.monotonic() - t:.0f} s", file=sys.stderr,
              flush=True)
        rows = [measure("first (all new)", env, args.objects)]
        populate(regions, bucket, keys[::100], args.size, b"v2")
        rows.append(measure("second (1% rewritten)", env, args.objects))
        rows.append(measure("third (unchanged)", env, args.objects))
    finally:
        for b in (bucket, backups):
            empty(regions, b)
    table = [f"{args.objects} objects of {args.size} B, 2 target regions, budget {args.budget}\n",
             "| run | exit | wall s | CPU s | objects/s | copies | MB copied | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|"]
    table += [f"| {r['run']} | {r['exit']} | {r['seconds']:.1f} | {r['cpu_s']:.1f} | "
              f"{r['objects_per_s']:.0f} | {r['copies']} | {r['copied_mb']:.1f} | {r['rss_mib']:.0f} |"
              for r in rows]
    print("\n" + "\n".join(table))
    if args.out:
        baseline = baseline_rss({**env, "STREAMER_BUCKET": backups})
        empty(regions, backups)
        args.out.write_text(json.dumps(convention(args, rows, table, baseline), indent=1) + "\n")


if __name__ == "__main__":
    main()
