#!/usr/bin/env python3
"""Gentle on a live host, measured: STREAMER_BWLIMIT held, and what a backup costs a neighbour.

    STREAMER_REGION_PORT_BASE=... scripts/regions up
    .venv/bin/python bench/gentle.py bwlimit [--size 120MiB] [--limit 20MiB] [--reps 3]
    .venv/bin/python bench/gentle.py neighbour [--size 300MiB] [--text 0.8] [--cpus 0] [--window 15]

``bwlimit`` backs up an incompressible webroot to the three local regions with
``STREAMER_BWLIMIT``, streamer running under this script so that every chunk
its meters send (store/throttle.py) is timed: the upload phase runs from the
first chunk handed to a socket to the last, and the rate held is the bytes
sent in it over its length.  Prints each run's rate against the limit, its
deviation (goal: within 5%), and each region's bytes and phase.

``neighbour`` runs a CPU-bound neighbour (SHA-256 over a 1 MiB buffer in a
loop, in C) on the given CPUs (``taskset``) for ``--window`` seconds, alone
and started together with a backup of a text-heavy webroot pinned to the same
CPUs, with ``STREAMER_NICE=off`` and ``on``, in turns.  The neighbour's
throughput beside a backup, as a share of its throughput alone, is what the
backup costs it; the backup's wall time (alone, and beside the neighbour for
the window) is what being gentle costs the backup.  Both print JSON (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from s3util import load_regions_env  # noqa: E402

from streamer.settings.values import parse_size  # noqa: E402

MiB = 1024 * 1024
NEIGHBOUR = """
import hashlib, signal, sys, time
buf, n, stop = bytes(1 << 20), 0, []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
t0 = time.monotonic()
while not stop:
    hashlib.sha256(buf).digest()
    n += 1
print(n / (time.monotonic() - t0))
"""


def traced_streamer(trace: Path, args: list[str]) -> None:
    """Run the CLI in this process with every meter's chunk timed into ``trace``."""
    from streamer.store import throttle

    sends: list[tuple[int, float, float, int]] = []
    original = throttle.Meter.send

    async def timed(self: Any, data: memoryview, write: Any) -> None:
        started = time.monotonic()
        await original(self, data, write)
        sends.append((self.flow, started, time.monotonic(), len(data)))

    throttle.Meter.send = timed  # type: ignore[method-assign]
    sys.argv = ["streamer", *args]
    from streamer.cli import main
    try:
        main()
    finally:
        trace.write_text(json.dumps(sends))


BUCKETS: list[str] = []  # removed from every region at the end


def _env(bucket: str, root: Path, **extra: str) -> dict[str, str]:
    BUCKETS.append(bucket)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "STREAMER_", "DB_"))}
    env.update(load_regions_env().env)
    env.update({"STREAMER_BUCKET": bucket, "STREAMER_WEBROOT": str(root),
                "DATABASE_INSTALLATION_TYPE": "None", **extra})
    return env


def _random_tree(root: Path, size: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    left, i = size, 0
    while left > 0:
        n = min(16 * MiB, left)
        (root / f"media-{i}.bin").write_bytes(os.urandom(n))
        left, i = left - n, i + 1
    return root


def bwlimit(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    limit = parse_size("--limit", args.limit)
    root = _random_tree(work / "tree", parse_size("--size", args.size))
    runs = []
    for rep in range(args.reps):
        trace = work / f"trace-{rep}.json"
        env = _env(f"gentle-{uuid.uuid4().hex[:10]}", root, STREAMER_BWLIMIT=args.limit)
        started = time.monotonic()
        code = subprocess.run([sys.executable, __file__, "--as-streamer", str(trace),
                               "backup", "manual", f"bw-{rep}", "--quiet"], env=env).returncode
        wall = time.monotonic() - started
        sends = json.loads(trace.read_text())
        first, last = min(s[1] for s in sends), max(s[2] for s in sends)
        sent = sum(s[3] for s in sends)
        rate = sent / (last - first)
        regions = {}
        for flow in sorted({s[0] for s in sends}):
            mine = [s for s in sends if s[0] == flow]
            regions[flow] = {"bytes": sum(s[3] for s in mine),
                             "phase_s": round(max(s[2] for s in mine) - min(s[1] for s in mine), 2)}
        runs.append({"exit": code, "wall_s": round(wall, 2), "bytes_sent": sent,
                     "upload_phase_s": round(last - first, 2), "rate_mib_s": round(rate / MiB, 3),
                     "deviation_pct": round(100 * (rate / limit - 1), 2), "regions": regions})
    worst = max(abs(r["deviation_pct"]) for r in runs)
    return {"limit": args.limit, "size": args.size, "runs": runs, "worst_deviation_pct": worst,
            "within_5pct": worst <= 5.0}


def _neighbour(cpus: str, window: float, beside: list[str] | None,
               env: dict[str, str] | None) -> tuple[float, float]:
    """The neighbour's hashes/s over ``window`` s, alone or beside ``beside`` started
    with it; and the wall time of ``beside`` (which may outlast the window)."""
    pin = ["taskset", "-c", cpus]
    backup = None
    started = time.monotonic()
    if beside is not None:
        backup = subprocess.Popen([*pin, *beside], env=env, stdout=subprocess.DEVNULL)
    hog = subprocess.Popen([*pin, sys.executable, "-c", NEIGHBOUR], stdout=subprocess.PIPE, text=True)
    time.sleep(window)
    hog.send_signal(signal.SIGTERM)
    out, _ = hog.communicate()
    wall = 0.0
    if backup is not None:
        if backup.wait() != 0:
            raise SystemExit(f"backup beside the neighbour exited {backup.returncode}")
        wall = time.monotonic() - started
    return float(out), wall


def neighbour(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    tree = subprocess.run([sys.executable, str(REPO / "bench" / "gen_webroot.py"), "--size", args.size,
                           "--text-fraction", str(args.text)], capture_output=True, text=True,
                          check=True).stdout.strip()
    streamer = [sys.executable, "-m", "streamer", "backup", "manual", "hog", "--quiet"]
    figures: dict[str, list[float]] = {"alone": [], "off": [], "on": []}
    walls: dict[str, list[float]] = {"off": [], "on": [], "alone": []}
    for rep in range(args.reps):
        figures["alone"].append(_neighbour(args.cpus, args.window, None, None)[0])
        for mode in (("off", "on") if rep % 2 == 0 else ("on", "off")):
            env = _env(f"gentle-{uuid.uuid4().hex[:10]}", Path(tree), STREAMER_NICE=mode)
            rate, wall = _neighbour(args.cpus, args.window, streamer, env)
            figures[mode].append(rate)
            walls[mode].append(wall)
        env = _env(f"gentle-{uuid.uuid4().hex[:10]}", Path(tree))
        started = time.monotonic()
        subprocess.run(["taskset", "-c", args.cpus, *streamer], env=env, check=True)
        walls["alone"].append(time.monotonic() - started)
    alone = statistics.median(figures["alone"])
    return {"tree": tree, "cpus": args.cpus, "reps": args.reps, "window_s": args.window,
            "neighbour_alone_hashes_s": round(alone, 1),
            **{f"neighbour_beside_nice_{m}_pct": round(100 * statistics.median(figures[m]) / alone, 1)
               for m in ("off", "on")},
            **{f"backup_wall_{m}_s": round(statistics.median(walls[m]), 2)
               for m in ("alone", "off", "on")},
            "raw": {"neighbour": figures, "backup_wall": walls}}


def convention(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The bench convention's document (bench/README.md) of the parts that ran."""
    md: list[str] = []
    goals = []
    bw = parts.get("bwlimit")
    if bw:
        md += [f"STREAMER_BWLIMIT={bw['limit']}, {bw['size']} incompressible, 3 SeaweedFS regions\n",
               "| run | exit | wall s | upload phase s | MiB/s held | deviation % |",
               "|---|---|---|---|---|---|"]
        md += [f"| {i + 1} | {r['exit']} | {r['wall_s']} | {r['upload_phase_s']} | {r['rate_mib_s']} | "
               f"{r['deviation_pct']:+.2f} |" for i, r in enumerate(bw["runs"])]
        md.append("")
        goals.append({"issue": 12, "goal": f"STREAMER_BWLIMIT ({bw['limit']}/s) held within ±5% over the "
                      "upload phase", "measured": f"worst {bw['worst_deviation_pct']:+.2f}% of "
                      f"{len(bw['runs'])} runs", "pass": bool(bw["within_5pct"]) and
                      all(r["exit"] == 0 for r in bw["runs"])})
    nb = parts.get("neighbour")
    if nb:
        on, off = nb["neighbour_beside_nice_on_pct"], nb["neighbour_beside_nice_off_pct"]
        md += [f"A CPU-bound neighbour on CPU {nb['cpus']} for {nb['window_s']} s, beside a backup of "
               f"{Path(nb['tree']).name} on the same CPU (median of {nb['reps']})\n",
               "| | neighbour's rate, % of alone | backup wall s |", "|---|---|---|",
               f"| backup alone | — | {nb['backup_wall_alone_s']} |",
               f"| beside a backup, STREAMER_NICE=off | {off} | {nb['backup_wall_off_s']} |",
               f"| beside a backup, STREAMER_NICE=on | {on} | {nb['backup_wall_on_s']} |", ""]
        goals.append({"issue": 12, "goal": "what a backup costs a CPU-bound neighbour: less with "
                      "STREAMER_NICE=on than off", "measured": f"the neighbour keeps {on}% of its rate "
                      f"(nice on) vs {off}% (off)", "pass": on > off})
    return {"title": "Gentle on a live host: bandwidth limit and neighbour cost (issue 12, point 4)",
            "command": os.environ.get("BENCH_COMMAND") or " ".join(["bench/gentle.py", *sys.argv[1:]]),
            "table_md": "\n".join(md), "goals": goals, "raw": parts}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--as-streamer":
        traced_streamer(Path(sys.argv[2]), sys.argv[3:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="write the bench convention's JSON (both parts when no "
                    "part is named)")
    ap.add_argument("--quick", action="store_true", help="with --out and no part: smaller and fewer runs")
    sub = ap.add_subparsers(dest="what")
    bw = sub.add_parser("bwlimit")
    bw.add_argument("--size", default="120MiB")
    bw.add_argument("--limit", default="20MiB")
    bw.add_argument("--reps", type=int, default=3)
    nb = sub.add_parser("neighbour")
    nb.add_argument("--size", default="300MiB")
    nb.add_argument("--text", type=float, default=0.8, help="text fraction of the webroot")
    nb.add_argument("--cpus", default="0", help="CPUs both share (taskset -c)")
    nb.add_argument("--reps", type=int, default=3)
    nb.add_argument("--window", type=float, default=15.0, help="seconds the neighbour runs")
    args = ap.parse_args()
    if args.what is None and args.out is None:
        ap.error("name a part (bwlimit, neighbour), or give --out to run both")
    q = args.quick
    jobs = {args.what: args} if args.what else {
        "bwlimit": argparse.Namespace(size="60MiB" if q else "120MiB", limit="20MiB", reps=2 if q else 3),
        "neighbour": argparse.Namespace(size="100MiB" if q else "300MiB", text=0.8, cpus="0",
                                        reps=1 if q else 3, window=10.0 if q else 15.0)}
    regions = load_regions_env()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="streamer-gentle-") as tmp:
        try:
            for what, a in jobs.items():
                results[what] = (bwlimit if what == "bwlimit" else neighbour)(a, Path(tmp))
        finally:
            for name in BUCKETS:
                regions.delete_bucket_everywhere(name)
    if args.out:
        args.out.write_text(json.dumps(convention(results), indent=1) + "\n")
    print(json.dumps(results[args.what] if args.what else results, indent=2))


if __name__ == "__main__":
    main()
