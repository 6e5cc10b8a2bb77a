#!/usr/bin/env python3
"""Restore against the peer pipeline: `streamer restore` vs `aws s3 cp - | zstd -d | tar -x`.

    STREAMER_REGION_PORT_BASE=... .venv/bin/python bench/restore.py [--quick] [--out PATH]
        [--size 300MiB] [--files 50000] [--reps 5] [--contenders streamer,aws,s5cmd]

Backs each tree up once (`streamer backup`, zstd, into the regions of
`scripts/regions`, started here if they are not running and stopped again),
then restores it from region 1, the contenders interleaved run by run (the
order rotated every repetition), each into a fresh empty directory on the
same filesystem (bench/work/restore-out, or ``--target``), removed between runs:

- **streamer**: `streamer restore manual B --webroot DIR --region 1`
  (every part and the whole stream checked, every member judged);
- **aws**: `aws s3 cp s3://bucket/key - | zstd -d | tar -x -C DIR`
  (Debian's aws-cli v2, /usr/bin/aws; no check but TCP's and zstd's);
- **s5cmd**: `s5cmd cat s3://bucket/key | zstd -d | tar -x -C DIR`.

Trees: the generated webroot (bench/gen_webroot.py, mixed text and media)
and a small-files tree (``--files`` PHP/HTML-like files of 200 B-4 KiB in
directories of 100, deterministic), where per-member overhead shows.  Wall
time (start to exit) and CPU seconds (user+sys of the whole process tree,
from wait4) per run; medians with min-max; the ratio is streamer's median
over aws's.  Every run's tree is checked (file count and bytes) before it
counts.  The goal (issue 12): streamer at most 0.8x the aws pipeline's wall.
Writes the bench convention's JSON with ``--out`` (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))

from run import AWS, S5CMD, TAR, ZSTD  # noqa: E402
from s3util import load_regions_env  # noqa: E402

REGIONS = str(REPO / "scripts" / "regions")
# BENCH_STREAMER: another streamer executable to measure (e.g. an older build)
STREAMER = os.environ.get("BENCH_STREAMER") or str(REPO / ".venv" / "bin" / "streamer")
WORK = HERE / "work"
OUT = WORK / "restore-out"
GOAL = 0.8
BUILD = "restorebench"


def small_files_tree(files: int, seed: int = 1) -> Path:
    """``files`` small text files (200 B-4 KiB) in directories of 100, cached."""
    root = WORK / "trees" / f"smallfiles-{files}-s{seed}"
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(seed)
    words = [f"$var{i} = function_{i}($arg);\n".encode() for i in range(400)]
    for i in range(files):
        d = root / f"cache/{i // 10000:02d}/{i // 100:04d}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        size = rng.randint(200, 4096)
        body = b"<?php\n" + b"".join(rng.choice(words) for _ in range(size // 24))
        p = d / f"page-{i:06d}.php"
        p.write_bytes(body[:size])
        os.utime(p, (1_700_000_000, 1_700_000_000))
    (root / ".complete").touch()
    return root


def tree_figures(root: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            if n == ".complete":
                continue
            st = os.lstat(os.path.join(dirpath, n))
            if not os.path.islink(os.path.join(dirpath, n)):
                files += 1
                size += st.st_size
    return files, size


def run_timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall s, CPU s of the whole process tree (reaped children), stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} ... exited {proc.returncode}: {proc.stderr[-2000:]}")
    return wall, cpu, proc.stderr


def contender_argv(kind: str, bucket: str, key: str, endpoint: str, into: Path) -> list[str]:
    url = f"s3://{bucket}/{key}"
    untar = f"{ZSTD} -d -q | {TAR} -x -C '{into}'"
    if kind == "streamer":
        return [STREAMER, "restore", "manual", BUILD, "--webroot", str(into), "--region", "1"]
    if kind == "aws":
        return ["bash", "-o", "pipefail", "-c",
                f"{AWS} s3 cp '{url}' - --endpoint-url {endpoint} --only-show-errors | {untar}"]
    return ["bash", "-o", "pipefail", "-c", f"{S5CMD} --endpoint-url {endpoint} cat '{url}' | {untar}"]


def bench_tree(name: str, tree: Path, args: argparse.Namespace, regions: Any) -> dict[str, Any]:
    bucket = f"restorebench-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "STREAMER_", "AWS_", "DB_"))}
    env.update(regions.env)
    env.update(STREAMER_BUCKET=bucket, STREAMER_WEBROOT=str(tree), DATABASE_INSTALLATION_TYPE="None",
               AWS_ACCESS_KEY_ID=regions.env["S3_ACCESS_KEY"],
               AWS_SECRET_ACCESS_KEY=regions.env["S3_SECRET_KEY"], AWS_DEFAULT_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="", AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null", NO_PROXY="127.0.0.1,localhost")
    expected = tree_figures(tree)
    try:
        run_timed([STREAMER, "backup", "manual", BUILD, "--quiet"], env)
        key = next(k for k in regions.keys(1, bucket) if k.endswith("webroot.tar.zst"))
        stored = regions.client(1).head_object(Bucket=bucket, Key=key)["ContentLength"]
        runs: dict[str, list[tuple[float, float]]] = {c: [] for c in args.contenders}
        for rep in range(args.reps):
            turn = args.contenders[rep % len(args.contenders):] + args.contenders[:rep % len(args.contenders)]
            for kind in turn:
                into = args.target / f"{name}-{kind}".replace(" ", "-")
                shutil.rmtree(into, ignore_errors=True)
                into.mkdir(parents=True)
                wall, cpu, _ = run_timed(contender_argv(kind, bucket, key, regions.endpoints[0], into),
                                         env)
                got = tree_figures(into)
                if got != expected:
                    raise SystemExit(f"{name}/{kind}: restored {got} (files, bytes), expected {expected}")
                shutil.rmtree(into)
                runs[kind].append((wall, cpu))
                print(f"{name} rep {rep + 1} {kind}: {wall:.2f} s wall, {cpu:.2f} s CPU",
                      file=sys.stderr, flush=True)
    finally:
        regions.delete_bucket_everywhere(bucket)
    return {"tree": name, "files": expected[0], "bytes": expected[1], "stored": stored, "runs": runs}


def median_span(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def render(results: list[dict[str, Any]], contenders: list[str]) -> tuple[str, list[dict[str, Any]]]:
    lines = ["| tree | contender | wall s, median (min-max) | CPU s, median | wall vs aws |",
             "|---|---|---|---|---|"]
    goals = []
    labels = {"streamer": "streamer restore", "aws": "aws s3 cp - \\| zstd -d \\| tar -x",
              "s5cmd": "s5cmd cat \\| zstd -d \\| tar -x"}
    for r in results:
        walls = {c: [w for w, _ in r["runs"][c]] for c in contenders}
        base = statistics.median(walls["aws"]) if "aws" in walls else None
        what = (f"{r['tree']}: {r['files']} files, {r['bytes'] / 1e6:.0f} MB "
                f"({r['stored'] / 1e6:.0f} MB stored)")
        for c in contenders:
            ratio = f"{statistics.median(walls[c]) / base:.2f}x" if base else "-"
            cpu = statistics.median(cpu for _, cpu in r["runs"][c])
            lines.append(f"| {what} | {labels[c]} | {median_span(walls[c])} | {cpu:.2f} | {ratio} |")
        if base and "streamer" in walls:
            ratio = statistics.median(walls["streamer"]) / base
            goals.append({"issue": 12,
                          "goal": f"restore ({r['tree']}) <= {GOAL}x aws s3 cp | zstd -d | tar -x",
                          "measured": f"{ratio:.2f}x ({statistics.median(walls['streamer']):.2f} s vs "
                                      f"{base:.2f} s, {len(walls['aws'])} runs each)",
                          "pass": ratio <= GOAL})
    return "\n".join(lines) + "\n", goals


def regions_up() -> bool:
    """Start the regions unless they run; True if this script started them."""
    status = subprocess.run([REGIONS, "status"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if status.returncode == 0:
        return False
    subprocess.run([REGIONS, "up"], check=True)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="write the bench convention's JSON here")
    ap.add_argument("--quick", action="store_true", help="100 MiB, 10,000 small files, 2 repetitions")
    ap.add_argument("--size", default=None, help="generated webroot (default 300MiB)")
    ap.add_argument("--files", type=int, default=None, help="small-files tree (default 50000)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5)")
    ap.add_argument("--contenders", default="streamer,aws,s5cmd")
    ap.add_argument("--target", type=Path, default=OUT,
                    help="where the trees are restored (default bench/work/restore-out; /dev/shm: tmpfs)")
    args = ap.parse_args()
    args.size = args.size or ("100MiB" if args.quick else "300MiB")
    args.files = args.files or (10_000 if args.quick else 50_000)
    args.reps = args.reps or (2 if args.quick else 5)
    args.contenders = args.contenders.split(",")
    webroot = subprocess.run([sys.executable, str(HERE / "gen_webroot.py"), "--size", args.size],
                             capture_output=True, text=True, check=True).stdout.strip()
    small = small_files_tree(args.files)
    started = regions_up()
    try:
        regions = load_regions_env()
        results = [bench_tree(f"webroot {args.size}", Path(webroot), args, regions),
                   bench_tree(f"{args.files} small files", small, args, regions)]
    finally:
        if started:
            subprocess.run([REGIONS, "down"], check=False)
    table, goals = render(results, args.contenders)
    doc = {"title": "Restore from one region: streamer against the peer pipeline",
           "command": "bench/restore.py" + (" --quick" if args.quick else "")
                      + f" --size {args.size} --files {args.files} --reps {args.reps}"
                      + f" --target {args.target}",
           "table_md": table, "goals": goals,
           "raw": [{**r, "runs": {c: [list(x) for x in v] for c, v in r["runs"].items()}}
                   for r in results]}
    text = json.dumps(doc, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
