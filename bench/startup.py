#!/usr/bin/env python3
"""Start-up and tear-down, and many small files: streamer against the floor (issue 12, point 2).

    BENCH_SINK_PORT_BASE=... .venv/bin/python bench/startup.py [--quick] [--out PATH]
        [--reps N] [--files 100000] [--tree DIR] [--no-small]

Two tables, every contender in turns within one run (the order rotated every
repetition), each process started and measured by bench/run.py's ``execute``
(wall from the first process started to the last one exited; CPU of all):

* **one file**: a backup of a one-file webroot to the three null-sink regions
  (``streamer MANUAL startup-<n>``: bucket check, lock, cleanup, upload,
  commit, heal and retention listing, unlock), beside the interpreter's own
  start-up (``python -c pass``), streamer's command line alone (``python -m
  streamer --version``: typer and the settings) and the S3 stack's imports
  alone (``import aiobotocore.session, aiohttp``, what any streamer command
  that talks to a region pays before its first request).  Goal: at most
  0.35 s wall; the ratios say how far above the interpreter it is.
* **small files**: ``--files`` (100,000) small text files (bench/gen_webroot.py
  ``--kind cms``, or ``--tree``) to the same three regions: streamer against
  ``tar | zstd -3 -T2 | tee`` into three ``s5cmd pipe`` (the fastest tee
  pipeline of bench/RESULTS.md) and the producer alone (``tar | zstd -3 -T2
  > /dev/null``), and streamer with ``STREAMER_EARLY_START=off`` (tar started
  only when the upload starts, pipeline/early.py).  Goal: streamer ahead of
  the tee pipeline.

streamer's modules are byte-compiled first (``compileall``), as an installed
package is: with PYTHONDONTWRITEBYTECODE set nothing would be cached and
every run would compile them again.  Starts the null sink if it is not up
and stops only what it started.  Writes the bench convention's JSON to
``--out`` (bench/README.md) and prints it.
"""

from __future__ import annotations

import argparse
import compileall
import json
import re
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gen_webroot  # noqa: E402
import nullsink  # noqa: E402
import run  # noqa: E402

PY = str(run.REPO / ".venv" / "bin" / "python")
ONE_FILE_GOAL = 0.35  # seconds (issue 12)
S3_STACK = "import aiobotocore.session, aiobotocore.config, aiohttp"


def _spec(name: str, argv: list[str], env: dict[str, str] | None = None) -> run.Stage:
    return run.Stage(specs=[run.ProcSpec(name, argv, env or run.base_env())])


def _measure(contenders: dict[str, Callable[[int], list[run.Stage]]], reps: int,
             timeout: float) -> dict[str, list[run.Measurement]]:
    """Every contender once per repetition, the order rotated; a failure stops the bench."""
    names = list(contenders)
    out: dict[str, list[run.Measurement]] = {n: [] for n in names}
    for rep in range(reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
            m = run.execute(contenders[name](rep), timeout, f"startup-{slug}")
            if not m.ok:
                raise SystemExit(f"startup bench: {name} failed: {m.error}")
            out[name].append(m)
            print(f"[startup] {name} rep {rep + 1}: {m.wall:.3f} s wall, {m.cpu:.3f} s CPU",
                  file=sys.stderr, flush=True)
    return out


def _median(ms: list[run.Measurement], what: str = "wall") -> float:
    return statistics.median(getattr(m, what) for m in ms)


def _row(label: str, ms: list[run.Measurement], ref: float, ref_name: str) -> str:
    walls = [m.wall for m in ms]
    return (f"| {label} | {_median(ms):.3f} ({min(walls):.3f}-{max(walls):.3f}) | "
            f"{_median(ms, 'cpu'):.3f} | {_median(ms) / ref:.2f}x {ref_name} |")


def one_file(reps: int, work: Path) -> tuple[str, dict[str, Any]]:
    tree = work / "one"
    tree.mkdir(parents=True, exist_ok=True)
    (tree / "index.php").write_text("<?php echo 'hello';\n")
    env = run.streamer_env(run.nullsink_target(), tree, "256MiB")
    stamp = int(time.time())
    contenders: dict[str, Callable[[int], list[run.Stage]]] = {
        "python -c pass": lambda _r: [_spec("python", [PY, "-c", "pass"])],
        "python -m streamer --version": lambda _r: [_spec("version", [PY, "-m", "streamer",
                                                                      "--version"])],
        "S3 stack imports alone": lambda _r: [_spec("imports", [PY, "-c", S3_STACK])],
        "streamer, one-file webroot": lambda r: [_spec("streamer", [
            run.STREAMER, "MANUAL", f"startup-{stamp}-{r}", "--quiet"], env)],
    }
    got = _measure(contenders, reps, 120)
    base = _median(got["python -c pass"])
    lines = ["| one-file webroot, 3 null-sink regions | wall s, median (min-max) | CPU s | "
             "ratio |", "|---|---|---|---|"]
    lines += [_row(name, ms, base, "`python -c pass`") for name, ms in got.items()]
    backup = _median(got["streamer, one-file webroot"])
    version = _median(got["python -m streamer --version"])
    stack = _median(got["S3 stack imports alone"])
    lines.append(f"\nstreamer's backup is {backup / version:.2f}x its own `--version` and "
                 f"{backup / stack:.2f}x the S3 stack's imports alone.")
    figures = {"backup": backup, "python": base, "version": version, "s3_stack": stack,
               "cpu": _median(got["streamer, one-file webroot"], "cpu")}
    return "\n".join(lines), figures


def small_files(reps: int, files: int, tree_arg: Path | None) -> tuple[str, dict[str, Any]]:
    if tree_arg is not None:
        tree = tree_arg
    elif hasattr(gen_webroot, "ensure_kind"):
        tree, _stats = gen_webroot.ensure_kind("cms", None, files, 1, False, gen_webroot.CACHE)
    else:
        raise SystemExit("startup bench: bench/gen_webroot.py has no --kind cms; give --tree DIR")
    info = _tree_info(Path(tree))
    target = run.nullsink_target()
    env = run.streamer_env(target, Path(tree), "256MiB")
    stamp = int(time.time())
    contenders: dict[str, Callable[[int], list[run.Stage]]] = {
        "producer alone: tar|zstd -3 -T2 >/dev/null": lambda _r: run.build_producer(Path(tree)),
        "tar|zstd|tee -> 3x s5cmd pipe": lambda r: run.build_tee(
            "s5cmd", target, Path(tree), f"startup/s5cmd-{stamp}-{r}.tar.zst"),
        "streamer": lambda r: [_spec("streamer", [run.STREAMER, "MANUAL",
                                                  f"startup-small-{stamp}-{r}", "--quiet"], env)],
        # tar started when the upload does, as before pipeline/early.py
        "streamer, STREAMER_EARLY_START=off": lambda r: [_spec("streamer-late", [
            run.STREAMER, "MANUAL", f"startup-late-{stamp}-{r}", "--quiet"],
            {**env, "STREAMER_EARLY_START": "off"})],
    }
    got = _measure(contenders, reps, 600)
    tee = _median(got["tar|zstd|tee -> 3x s5cmd pipe"])
    lines = [f"| {info} | wall s, median (min-max) | CPU s | ratio |", "|---|---|---|---|"]
    lines += [_row(name, ms, tee, "tee -> s5cmd") for name, ms in got.items()]
    producer = _median(got["producer alone: tar|zstd -3 -T2 >/dev/null"])
    streamer = _median(got["streamer"])
    lines.append(f"\nstreamer: {streamer / tee:.2f}x the tee -> 3x s5cmd pipeline, "
                 f"{streamer / producer:.2f}x the producer alone.")
    late = _median(got["streamer, STREAMER_EARLY_START=off"])
    lines.append(f"Early start: {streamer / late:.2f}x the wall of the same build with "
                 "STREAMER_EARLY_START=off.")
    return "\n".join(lines), {"streamer": streamer, "tee": tee, "producer": producer,
                              "streamer_late": late}


def _tree_info(tree: Path) -> str:
    files = size = 0
    for p in tree.rglob("*"):
        if p.is_file() and not p.is_symlink():
            files += 1
            size += p.stat().st_size
    return f"{files:,} small files, {size / 1e6:.0f} MB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the bench convention's JSON here")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, 20,000 small files")
    ap.add_argument("--reps", type=int, help="repetitions (default 9 one-file, 5 small; quick 5, 3)")
    ap.add_argument("--files", type=int, help="small files (default 100,000; quick 20,000)")
    ap.add_argument("--tree", type=Path, help="a small-files tree to use instead of generating one")
    ap.add_argument("--no-small", action="store_true", help="only the one-file table")
    ap.add_argument("--no-one-file", action="store_true", help="only the small-files table")
    a = ap.parse_args()
    compileall.compile_dir(str(run.REPO / "streamer"), quiet=1)
    started_sink = nullsink.status() != 0
    if started_sink and nullsink.up() != 0:
        raise SystemExit("startup bench: cannot start the null sink (bench/nullsink.py up)")
    try:
        table, goals = "", []
        if not a.no_one_file:
            with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
                table, one = one_file(a.reps or (5 if a.quick else 9), Path(tmp))
            goals.append({"issue": 12, "goal": f"one-file webroot to 3 null-sink regions <= "
                                               f"{ONE_FILE_GOAL} s",
                          "measured": f"{one['backup']:.3f} s wall, {one['cpu']:.3f} s CPU "
                                      f"({one['backup'] / one['python']:.1f}x "
                                      f"`python -c pass`, {one['backup'] / one['version']:.2f}x "
                                      f"`streamer --version`; the S3 stack's imports alone "
                                      f"{one['s3_stack']:.3f} s)",
                          "pass": one["backup"] <= ONE_FILE_GOAL})
        if not a.no_small:
            files = a.files or (20_000 if a.quick else 100_000)
            small_table, small = small_files(a.reps or (3 if a.quick else 5), files, a.tree)
            table = (table + "\n\n" + small_table).strip()
            goals.append({"issue": 12, "goal": f"{files // 1000}k small files: streamer ahead "
                                               "of the fastest tee pipeline",
                          "measured": f"{small['streamer']:.2f} s against {small['tee']:.2f} s "
                                      f"({small['streamer'] / small['tee']:.2f}x); producer "
                                      f"alone {small['producer']:.2f} s",
                          "pass": small["streamer"] < small["tee"]})
    finally:
        if started_sink:
            nullsink.down(quiet=True)
    doc = {"title": "Start-up, tear-down and small files (issue 12)",
           "command": shlex.join([".venv/bin/python", "bench/startup.py", *sys.argv[1:]]),
           "table_md": table, "goals": goals}
    text = json.dumps(doc, indent=2)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
