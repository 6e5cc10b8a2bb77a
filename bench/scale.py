#!/usr/bin/env python3
"""Scale, and the webroots users have (issue 12, point 6), on the null sink.

    bench/scale.py [--quick] [--out PATH] [--parts trees,cores,db,floor] [--trees cms,text]
                   [--reps N] [--cms-files N] [--text-size SIZE] [--mixed-size SIZE]

Runs bench/run.py's contenders with its harness (every process under GNU
time, wait4, the null sink's log checked) against the three null-sink regions
(bench/nullsink.py; started here if it is not running, and stopped again):

- trees: on each tree kind of bench/gen_webroot.py (cms: 300,000 small files
  of a CMS with caches; text: code and cached pages, media excluded; mixed:
  the main bench's tree) streamer, the tee pipelines into aws, s5cmd and
  rclone, and the producer alone (tar | zstd -3 -T2 > /dev/null).
- cores: the same contenders on one tree (--cores-tree) pinned with
  `taskset -c 0` and `taskset -c 0,1`; each one's speed-up from 1 to 2 cores.
- db: a generated PostgreSQL and MariaDB database (scratch database
  streamer_bench, dropped after): streamer backing up only the database (an
  empty webroot) against the dump tool writing to a file.
- floor: the CPU a backup of the stored stream cannot avoid beside the
  producer's (a checksum pass, the copy to three sockets), per GB, which gives
  each tree's floor on wall time (bench/README.md, "The floor").

Writes the bench convention's JSON (--out; bench/README.md) with a markdown
table and the goal rows of issue 12; the raw runs go in it too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gen_webroot  # noqa: E402
import nullsink  # noqa: E402
import run  # noqa: E402
import scale_db  # noqa: E402
import scale_floor  # noqa: E402

TEES = ("aws", "s5cmd", "rclone")
CONTENDERS = ("producer", "streamer", *TEES)
PARTS = ("trees", "cores", "db", "floor")
# the cores part's extra row: the same streamer compressing with two zstd worker threads
THREADED = "streamer-zstd2"
THREADED_ENV = {"STREAMER_COMPRESSION_THREADS": "2"}
THREADED_LABEL = "streamer, STREAMER_COMPRESSION_THREADS=2"


class ScaleBench(run.Bench):
    """run.Bench without its results-latest.json: this bench writes --out."""

    def save(self) -> None:
        pass

    def measure(self, rep: int, target: run.Target, contender: str, tree: run.TreeInfo,
                variant: str, **tags: Any) -> None:
        before = len(self.runs)
        self.one(rep, None if contender == "producer" else target, contender, tree,
                 variant=variant)
        for r in self.runs[before:]:
            r.update(tags)


def med(runs: list[dict[str, Any]], what: str = "wall", **match: Any) -> float | None:
    """The median wall (or ``what``: cpu) of the successful runs matching ``match``."""
    vals = [r[what] for r in runs if r.get("ok") and all(r.get(k) == v
                                                         for k, v in match.items())]
    return statistics.median(vals) if vals else None


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def rotated(items: tuple[str, ...], rep: int) -> list[str]:
    k = (rep - 1) % len(items)
    return list(items[k:] + items[:k])


def prepare(kind: str, a: argparse.Namespace) -> run.TreeInfo:
    if kind == "mixed":
        return run.prepare_tree(gen_webroot.parse_size(a.mixed_size), a.seed)
    size = gen_webroot.parse_size(a.text_size) if kind == "text" else None
    path, stats = gen_webroot.ensure_kind(kind, size, a.cms_files, a.seed)
    return run.tree_info(path, stats)


def trees_part(b: ScaleBench, a: argparse.Namespace, t: run.Target,
               floor: dict[str, float] | None) -> tuple[list[str], list[dict[str, Any]]]:
    md = ["#### Tree kinds: 3 null-sink regions, wall s (median)\n",
          "| tree | files | MB | zstd MB | producer | streamer | aws | s5cmd | rclone | "
          "streamer / fastest tee | streamer / producer | floor s (floor / producer) | "
          "CPU s: producer, streamer, fastest tee |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    goals: list[dict[str, Any]] = []
    for kind in a.trees:
        tree = prepare(kind, a)
        b.failed.clear()
        for rep in range(1, a.reps + 1):
            for c in rotated(CONTENDERS, rep):
                b.measure(rep, t, c, tree, c, part="trees", tree_kind=kind)
        w = {c: med(b.runs, part="trees", tree_kind=kind, contender=c) for c in CONTENDERS}
        tees = {c: w[c] for c in TEES if w[c] is not None}
        best = min(tees.items(), key=lambda x: x[1]) if tees else None
        s, p = w["streamer"], w["producer"]
        r_tee = s / best[1] if s and best else None
        r_prod = s / p if s and p else None
        fl = scale_floor.floor_wall(floor, tree, b.runs, kind) if floor else None
        md.append(f"| {kind} | {tree.files} | {tree.bytes / 1e6:.0f} | {tree.zstd_bytes / 1e6:.1f} "
                  f"| {fmt(p)} | {fmt(s)} | {fmt(w['aws'])} | {fmt(w['s5cmd'])} | "
                  f"{fmt(w['rclone'])} | {fmt(r_tee)}x{f' ({best[0]})' if best else ''} | "
                  f"{fmt(r_prod)}x | {fmt(fl)} ({fmt(fl / p if fl and p else None)}x) | "
                  + ", ".join(fmt(med(b.runs, "cpu", part="trees", tree_kind=kind, contender=c))
                              for c in ("producer", "streamer", best[0] if best else "-"))
                  + " |")
        name = f"{kind} tree ({tree.files} files, {tree.bytes / 1e6:.0f} MB)"
        goals.append(goal(f"{name}: streamer ahead of the fastest tee pipeline",
                          f"{fmt(s)} s vs {best[0]} {fmt(best[1])} s = {fmt(r_tee)}x" if best
                          else "-", r_tee is not None and r_tee < 1))
        limit = 1.3 if kind == "text" else 2.0
        goals.append(goal(f"{name}: streamer ≤ {limit}x the producer alone",
                          f"{fmt(s)} s / {fmt(p)} s = {fmt(r_prod)}x"
                          + (f" (floor {fmt(fl / p)}x)" if fl and p else ""),
                          r_prod is not None and r_prod <= limit))
    return [*md, ""], goals


def cores_part(b: ScaleBench, a: argparse.Namespace, t: run.Target
               ) -> tuple[list[str], list[dict[str, Any]]]:
    tree = prepare(a.cores_tree, a)
    b.failed.clear()
    for rep in range(1, a.reps + 1):
        for cpus in ("0", "0,1") if rep % 2 else ("0,1", "0"):
            b.pin = cpus
            for c in rotated((*CONTENDERS, THREADED), rep):
                b.streamer_env = THREADED_ENV if c == THREADED else {}
                b.measure(rep, t, "streamer" if c == THREADED else c, tree, f"{c}@cpus{cpus}",
                          part="cores", cpus=cpus, base=c)
    b.pin, b.streamer_env = None, {}
    md = [f"#### From 1 to 2 cores (`taskset -c 0` / `-c 0,1`), {a.cores_tree} tree "
          f"({tree.bytes / 1e6:.0f} MB), wall s (median)\n",
          "| contender | 1 core | 2 cores | speed-up |", "|---|---|---|---|"]
    up: dict[str, float | None] = {}
    for c in (*CONTENDERS, THREADED):
        one, two = (med(b.runs, part="cores", base=c, cpus=x) for x in ("0", "0,1"))
        up[c] = one / two if one and two else None
        md.append(f"| {THREADED_LABEL if c == THREADED else run.LABELS[c]} | {fmt(one)} | "
                  f"{fmt(two)} | {fmt(up[c])}x |")
    md += ["", "streamer's default (`STREAMER_COMPRESSION_THREADS=auto`) compresses in one "
           "thread on a host without more than 2 free cores (docs/ARCHITECTURE.md, "
           "\"Compression\"), while the producer runs `zstd -T2`; the row with two zstd "
           "worker threads shows what the same build does when it compresses on both cores."]
    s, p, t2 = up["streamer"], up["producer"], up[THREADED]
    g = goal("from 1 to 2 cores: streamer's speed-up ≥ the producer's own",
             f"streamer {fmt(s)}x (with 2 zstd threads {fmt(t2)}x), producer {fmt(p)}x",
             s is not None and p is not None and s >= p)
    return [*md, ""], [g]


def goal(text: str, measured: str, ok: bool) -> dict[str, Any]:
    return {"issue": 12, "goal": text, "measured": measured, "pass": bool(ok)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller trees and database, 2 repetitions: about 15 minutes")
    ap.add_argument("--out", type=Path, help="write the bench convention's JSON here")
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--trees", default="cms,text", help="tree kinds (mixed, cms, text)")
    ap.add_argument("--cores-tree", default="text", choices=gen_webroot.KINDS)
    ap.add_argument("--reps", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cms-files", type=int)
    ap.add_argument("--text-size")
    ap.add_argument("--mixed-size")
    ap.add_argument("--db-mb", type=int, help="size of each generated database's dump, MB")
    ap.add_argument("--engines", default="postgres,mariadb")
    ap.add_argument("--budget", default="256MiB")
    ap.add_argument("--timeout", type=float, default=900.0)
    a = ap.parse_args()
    q = a.quick
    a.reps = a.reps or (2 if q else 3)
    a.cms_files = a.cms_files or (50_000 if q else gen_webroot.DEFAULT_CMS_FILES)
    a.text_size = a.text_size or ("100MiB" if q else gen_webroot.DEFAULT_TEXT_SIZE)
    a.mixed_size = a.mixed_size or ("200MiB" if q else "1GiB")
    a.db_mb = a.db_mb or (100 if q else 300)
    a.parts = [x for x in a.parts.split(",") if x]
    a.trees = [x for x in a.trees.split(",") if x]
    for x in a.parts:
        if x not in PARTS:
            ap.error(f"unknown part {x} (known: {', '.join(PARTS)})")
    for x in a.trees:
        if x not in gen_webroot.KINDS:
            ap.error(f"unknown tree kind {x} (known: {', '.join(gen_webroot.KINDS)})")
    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    started_sink = False
    if nullsink.running_pid() is None:
        subprocess.run([sys.executable, str(HERE / "nullsink.py"), "up"], check=True)
        started_sink = True
    try:
        doc = measure_all(a)
    except KeyboardInterrupt:
        run.log("interrupted")
        for pid in run._descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return 130
    finally:
        if started_sink:
            subprocess.run([sys.executable, str(HERE / "nullsink.py"), "down"], check=False)
    text = json.dumps(doc, indent=1) + "\n"
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    print(doc["table_md"])
    for g in doc["goals"]:
        print(f"{'PASS' if g['pass'] else 'FAIL'}  {g['goal']}: {g['measured']}")
    return 0


def measure_all(a: argparse.Namespace) -> dict[str, Any]:
    run._set_subreaper()
    b = ScaleBench(argparse.Namespace(timeout=a.timeout, budget=a.budget))
    t = run.nullsink_target()
    b.admin.ensure_bucket(t)
    b.admin.wipe(t)
    md: list[str] = []
    goals: list[dict[str, Any]] = []
    floor = scale_floor.measure() if "floor" in a.parts else None
    if floor:
        md += scale_floor.table(floor)
    if "trees" in a.parts:
        m, g = trees_part(b, a, t, floor)
        md, goals = md + m, goals + g
    if "cores" in a.parts:
        m, g = cores_part(b, a, t)
        md, goals = md + m, goals + g
    if "db" in a.parts:
        m, g = scale_db.db_part(b, a, t)
        md, goals = md + m, goals + g
    failed = sorted({f"{r['contender']}: {(r.get('error') or '?').splitlines()[0][:160]}"
                     for r in b.runs if not r.get("ok")})
    if failed:
        md += ["Failed runs (logs in bench/work/logs/):", ""] + [f"- {f}" for f in failed] + [""]
    return {"title": "Scale, and the webroots users have (issue 12, point 6)",
            "command": os.environ.get("BENCH_COMMAND") or shlex.join(["bench/scale.py", *sys.argv[1:]]),
            "table_md": "\n".join(md), "goals": goals, "floor": floor,
            "loadavg": run.loadavg(), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "runs": b.runs}


if __name__ == "__main__":
    sys.exit(main())
