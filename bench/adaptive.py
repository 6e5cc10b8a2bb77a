#!/usr/bin/env python3
"""Adaptive compression, measured: ``STREAMER_COMPRESSION_LEVEL=auto`` against level 3.

    BENCH_SINK_PORT_BASE=... .venv/bin/python bench/adaptive.py [--quick] [--out PATH]
        [--reps N] [--cap 2MiB] [--text-size 512MiB] [--tree-size 1GiB]

Two scenarios, to three null-sink regions (bench/nullsink.py, started here if
it is not running, and stopped again only then):

* **capped**: every region behind a bandwidth cap outside streamer
  (bench/throttle.py, a TCP forwarder per port, ``--cap`` bytes/s each), and
  a text-only webroot (bench/gen_webroot.py ``--text-fraction 1``: PHP, JS,
  CSS, HTML as a CMS has them, media excluded).  The network is the
  bottleneck: ``auto`` should raise the level and send fewer bytes sooner.
* **uncapped**: the null sink as it is and the default 1 GiB tree (15% text,
  85% incompressible media).  The CPU is the bottleneck: ``auto`` must not
  cost more than 5% of level 3's wall time.

The contenders run interleaved (A/B, then B/A, ...), ``--reps`` times each;
the figures are medians.  Bytes sent are the stored bytes times the regions
that committed (from the run's ``--json`` summary), which also gives the
levels ``auto`` used.  Writes the bench convention's JSON (bench/README.md)
to ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
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
sys.path.insert(0, str(REPO))

import nullsink  # noqa: E402

from streamer.settings.values import parse_size  # noqa: E402

CONTENDERS = {"auto": "auto", "level 3": "3"}


def tree(size: str, text_fraction: float) -> Path:
    out = subprocess.run([sys.executable, str(HERE / "gen_webroot.py"), "--size", size,
                          "--text-fraction", str(text_fraction)], capture_output=True, text=True,
                         check=True)
    return Path(out.stdout.strip())


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class Throttle:
    """bench/throttle.py in front of every null-sink port, ``rate`` bytes/s each."""

    def __init__(self, rate: int) -> None:
        self.ports = [p + 20 for p in nullsink.ports()]
        busy = [p for p in self.ports if not port_free(p)]
        if busy:
            raise SystemExit(f"adaptive: throttle port(s) {busy} in use; set BENCH_SINK_PORT_BASE")
        pairs = [f"{p + 20}:{p}" for p in nullsink.ports()]
        self.proc = subprocess.Popen([sys.executable, str(HERE / "throttle.py"), "--rate", str(rate),
                                      *pairs], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "throttle: ready":
            raise SystemExit("adaptive: the throttle did not start")

    def endpoints(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run_once(endpoints: list[str], root: Path, level: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "STREAMER_", "DB_"))}
    env.update({"S3_HOST_BASE": "|".join(endpoints), "S3_ACCESS_KEY": nullsink.ACCESS_KEY,
                "S3_SECRET_KEY": nullsink.SECRET_KEY, "STREAMER_BUCKET": "bench-adaptive",
                "STREAMER_WEBROOT": str(root), "DATABASE_INSTALLATION_TYPE": "None",
                "STREAMER_COMPRESSION_LEVEL": level, "STREAMER_HEAL_LIMIT": "0"})
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "streamer", "backup", "manual",
                          f"adapt-{uuid.uuid4().hex[:8]}", "--json"], env=env, capture_output=True,
                         text=True, cwd=REPO)
    wall = time.monotonic() - started
    if run.returncode != 0:
        raise SystemExit(f"adaptive: streamer exited {run.returncode}: {run.stderr[-1500:]}")
    summary = json.loads(run.stdout)
    art = summary["artifacts"]["webroot"]
    row = {"wall_s": wall, "bytes_sent": art["stored_bytes"] * summary["regions_committed"],
           "stored_bytes": art["stored_bytes"], "source_bytes": art["source_bytes"],
           "levels": art["compression_levels"]}
    print(f"  {level:>4}: {wall:6.2f} s, {row['bytes_sent'] / 1e6:8.1f} MB sent, "
          f"levels {row['levels']}", file=sys.stderr, flush=True)
    return row


def scenario(name: str, endpoints: list[str], root: Path, reps: int) -> dict[str, Any]:
    print(f"{name}: {root.name}", file=sys.stderr, flush=True)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTENDERS}
    for rep in range(reps):
        order = list(CONTENDERS) if rep % 2 == 0 else list(reversed(CONTENDERS))
        for contender in order:
            runs[contender].append(run_once(endpoints, root, CONTENDERS[contender]))
    med = {c: {"wall_s": statistics.median(r["wall_s"] for r in rs),
               "bytes_sent": statistics.median(r["bytes_sent"] for r in rs),
               "source_bytes": rs[0]["source_bytes"],
               "levels": [r["levels"] for r in rs]} for c, rs in runs.items()}
    return {"name": name, "tree": root.name, "medians": med, "runs": runs}


def table(results: list[dict[str, Any]], cap: str) -> str:
    lines = ["| scenario | contender | wall s (median) | wall vs level 3 | MB sent (median) "
             "| sent vs level 3 | levels used (min-max, final) |",
             "|---|---|---|---|---|---|---|"]
    for res in results:
        base = res["medians"]["level 3"]
        for c, m in res["medians"].items():
            lv = m["levels"]
            used = ", ".join(f"{x['min']}-{x['max']} ({x['final']})" for x in lv)
            label = f"{res['name']} ({cap}/region)" if res["name"] == "capped" else res["name"]
            lines.append(f"| {label}, {res['tree']} | {c} | {m['wall_s']:.2f} | "
                         f"{m['wall_s'] / base['wall_s']:.3f}x | {m['bytes_sent'] / 1e6:.1f} | "
                         f"{m['bytes_sent'] / base['bytes_sent']:.3f}x | {used} |")
    return "\n".join(lines)


def goals(capped: dict[str, Any], uncapped: dict[str, Any]) -> list[dict[str, Any]]:
    ca, c3 = capped["medians"]["auto"], capped["medians"]["level 3"]
    ua, u3 = uncapped["medians"]["auto"], uncapped["medians"]["level 3"]
    wall_c, sent_c = ca["wall_s"] / c3["wall_s"], ca["bytes_sent"] / c3["bytes_sent"]
    wall_u = ua["wall_s"] / u3["wall_s"]
    return [
        {"issue": 12, "goal": "capped sink: auto beats fixed level 3 in wall time AND bytes sent",
         "measured": f"wall {wall_c:.3f}x, bytes sent {sent_c:.3f}x of level 3",
         "pass": wall_c < 1.0 and sent_c < 1.0},
        {"issue": 12, "goal": "uncapped sink: auto within 5% of level 3's wall time",
         "measured": f"wall {wall_u:.3f}x of level 3", "pass": wall_u <= 1.05},
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--quick", action="store_true", help="smaller trees, 2 repetitions (else 5)")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--cap", default="2MiB", help="bytes/s of each capped region (default 2MiB)")
    ap.add_argument("--text-size", help="the text-only tree (default 512MiB, quick 64MiB)")
    ap.add_argument("--tree-size", help="the default tree (default 1GiB, quick 256MiB)")
    args = ap.parse_args()
    reps = args.reps or (2 if args.quick else 5)
    text_size = args.text_size or ("64MiB" if args.quick else "512MiB")
    tree_size = args.tree_size or ("256MiB" if args.quick else "1GiB")
    cap = parse_size("--cap", args.cap)
    text_tree, default_tree = tree(text_size, 1.0), tree(tree_size, 0.15)
    started_sink = nullsink.status() != 0
    if started_sink and nullsink.up() != 0:
        raise SystemExit("adaptive: the null sink did not start")
    throttle = None
    try:
        throttle = Throttle(cap)
        capped = scenario("capped", throttle.endpoints(), text_tree, reps)
        throttle.stop()
        throttle = None
        uncapped = scenario("uncapped", nullsink.endpoints(), default_tree, reps)
    finally:
        if throttle is not None:
            throttle.stop()
        if started_sink:
            nullsink.down()
    command = "bench/adaptive.py" + (" --quick" if args.quick else "") + f" --reps {reps} --cap {args.cap}"
    doc = {"title": "Adaptive compression: STREAMER_COMPRESSION_LEVEL=auto against level 3",
           "command": command, "table_md": table([capped, uncapped], args.cap),
           "goals": goals(capped, uncapped), "raw": {"capped": capped, "uncapped": uncapped},
           "load": os.getloadavg()}
    print(doc["table_md"])
    for g in doc["goals"]:
        print(f"{'PASS' if g['pass'] else 'FAIL'}: {g['goal']}: {g['measured']}")
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
