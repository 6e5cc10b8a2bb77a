#!/usr/bin/env python3
"""Run the standalone benches (the bench convention, bench/README.md) and merge
their JSON into the main results, then re-render bench/RESULTS.md.

    bench/extras.py [--quick] [--only NAME[,NAME]] [--results bench/work/results-latest.json]

Each bench/<NAME>.py of EXTRAS that exists is run as
`bench/<NAME>.py --out bench/work/extras/<NAME>.json [--quick]`; its document
(title, command, table_md, goals) is stored under "extras" in the results
JSON, replacing an earlier one of the same name, so that one extra can be
rerun and merged without rerunning the rest. A bench that exits non-zero or
writes no JSON is recorded with its exit code and the end of its stderr.
Started by `scripts/bench` after bench/run.py (--full) or alone (--only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
# in the order they run; the issue each one's goals belong to is in its JSON
EXTRAS = ("integrity", "startup", "adaptive", "restore", "gentle", "scale", "assets")


def run_one(name: str, quick: bool, timeout: float) -> dict[str, Any]:
    out = WORK / "extras" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    argv = [sys.executable, str(HERE / f"{name}.py"), "--out", str(out), *(["--quick"] if quick else [])]
    print(f"[extras {time.strftime('%H:%M:%S')}] {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    env = {**os.environ, "BENCH_COMMAND": f"bench/{name}.py{' --quick' if quick else ''}"}
    try:
        p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           timeout=timeout, env=env)
        code, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        code, err = -1, f"timed out after {timeout:.0f} s\n{(e.stderr or b'')[-2000:]!r}"
    seconds = round(time.monotonic() - started, 1)
    doc: dict[str, Any] = {}
    if code == 0 and out.is_file():
        try:
            doc = json.loads(out.read_text())
        except ValueError as e:
            code, err = -2, f"{out}: not JSON ({e})"
    if code != 0 or not doc:
        doc = {"title": name, "error": f"exit {code}", "stderr_tail": (err or "")[-3000:]}
    doc.update(seconds=seconds, ran=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    return doc


def merge(results: Path, docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if results.exists():
        doc = json.loads(results.read_text())
    else:  # no main run yet: the report shows the extras alone
        doc = {"session": "extras-only", "meta": {"command": "bench/extras.py"}, "runs": []}
    doc.setdefault("extras", {}).update(docs)
    # results-latest.json is a symlink to the session's file: write through it
    results.resolve().write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick to every bench")
    ap.add_argument("--only", help=f"comma-separated names (of {', '.join(EXTRAS)})")
    ap.add_argument("--results", type=Path, default=WORK / "results-latest.json")
    ap.add_argument("--timeout", type=float, default=3 * 3600.0, help="seconds per bench")
    a = ap.parse_args()
    names = [n for n in (a.only.split(",") if a.only else EXTRAS) if n]
    for n in names:
        if n not in EXTRAS:
            ap.error(f"unknown extra {n!r} (known: {', '.join(EXTRAS)})")
    docs: dict[str, dict[str, Any]] = {}
    for n in names:
        if not (HERE / f"{n}.py").is_file():
            print(f"[extras] bench/{n}.py does not exist: not run", file=sys.stderr)
            continue
        docs[n] = run_one(n, a.quick, a.timeout)
        merge(a.results, {n: docs[n]})  # each as it ends: a bench cut short keeps the rest
    doc = merge(a.results, {})
    import report

    report.render(doc, HERE)
    print(f"wrote {HERE / 'RESULTS.md'} ({len(docs)} extras run)", file=sys.stderr)
    return 0 if all("error" not in d for d in docs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
