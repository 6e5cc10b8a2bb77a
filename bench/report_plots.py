"""bench/results-issue12.png: the standalone benches of issue 12 as ratios, for report.py.

Three panels, each drawn only when its bench ran (bench/extras.py merges them
into the results JSON):

* tree kinds (bench/scale.py, part "trees"): every contender's median wall
  time on each tree, divided by the producer alone's on the same tree, with
  the goals' lines (1.3x on the text tree, 2x elsewhere);
* cores (bench/scale.py, part "cores"): each contender's speed-up from one
  core to two (`taskset`);
* restore and the database stream (bench/restore.py, bench/scale.py part
  "db"): streamer's wall against its peer's on the same input (the aws
  pipeline for restore, dump-to-file for the database), with the goals
  (at most 0.8x; at least 0.95x the dump's speed, i.e. at most 1/0.95x).

Ratios, not seconds: on a shared machine the ratio of runs interleaved in one
session is what means something (bench/README.md).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

ORDER = ("producer", "streamer", "aws", "s5cmd", "rclone")
COLORS = {"producer": "#7f7f7f", "streamer": "#1f77b4", "aws": "#ff7f0e", "s5cmd": "#2ca02c",
          "rclone": "#d62728", "streamer-zstd2": "#6baed6"}
# bench/scale.py's cores part also runs streamer with STREAMER_COMPRESSION_THREADS=2
CORES = (*ORDER, "streamer-zstd2")


def _median(runs: list[dict[str, Any]], **match: Any) -> float | None:
    vals = [r["wall"] for r in runs if r.get("ok") and all(r.get(k) == v for k, v in match.items())]
    return statistics.median(vals) if vals else None


def tree_ratios(scale: dict[str, Any]) -> dict[str, dict[str, float]]:
    """tree kind -> contender -> median wall / the producer's median wall."""
    runs = [r for r in scale.get("runs") or [] if r.get("part") == "trees"]
    out: dict[str, dict[str, float]] = {}
    for kind in dict.fromkeys(r.get("tree_kind") for r in runs):
        p = _median(runs, tree_kind=kind, contender="producer")
        if not p:
            continue
        w = {c: _median(runs, tree_kind=kind, contender=c) for c in ORDER}
        out[str(kind)] = {c: v / p for c, v in w.items() if v}
    return out


def core_speedups(scale: dict[str, Any]) -> dict[str, float]:
    runs = [r for r in scale.get("runs") or [] if r.get("part") == "cores"]
    out = {}
    for c in CORES:
        one, two = (_median(runs, base=c, cpus=x) for x in ("0", "0,1"))
        if one and two:
            out[c] = one / two
    return out


def peer_ratios(extras: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(what, streamer wall / peer wall, goal) for restore's trees and the database engines."""
    out = []
    for r in (extras.get("restore") or {}).get("raw") or []:
        walls = {c: [w for w, _ in v] for c, v in (r.get("runs") or {}).items()}
        if walls.get("streamer") and walls.get("aws"):
            out.append((f"restore\n{r['tree']}", statistics.median(walls["streamer"])
                        / statistics.median(walls["aws"]), 0.8))
    runs = (extras.get("scale") or {}).get("runs") or []
    for engine in dict.fromkeys(r.get("engine") for r in runs if r.get("part") == "db"):
        d = _median(runs, part="db", engine=engine, contender="dump")
        s = _median(runs, part="db", engine=engine, contender=f"streamer-db-{engine}")
        if d and s:
            out.append((f"database\n{engine}", s / d, 1 / 0.95))
    return out


def has_any(doc: dict[str, Any]) -> bool:
    extras = doc.get("extras") or {}
    scale = extras.get("scale") or {}
    return bool(tree_ratios(scale) or core_speedups(scale) or peer_ratios(extras))


def render_issue12(doc: dict[str, Any], path: Path) -> bool:
    """Draw what the extras of ``doc`` hold; False (and no file) when none of them ran."""
    extras = doc.get("extras") or {}
    scale = extras.get("scale") or {}
    trees, cores, peers = tree_ratios(scale), core_speedups(scale), peer_ratios(extras)
    panels = [p for p, has in (("trees", trees), ("cores", cores), ("peers", peers)) if has]
    if not panels:
        path.unlink(missing_ok=True)
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel == "trees":
            _trees(ax, trees)
        elif panel == "cores":
            _bars(ax, cores, "speed-up from 1 to 2 cores (higher is better)")
        else:
            _peers(ax, peers)
    fig.suptitle("issue 12: streamer against the floor and its peers (ratios of medians, one session)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _trees(ax: Any, trees: dict[str, dict[str, float]]) -> None:
    kinds = list(trees)
    width = 0.8 / len(ORDER)
    for i, c in enumerate(ORDER):
        xs = [k + (i - (len(ORDER) - 1) / 2) * width for k in range(len(kinds))]
        vals = [trees[kind].get(c, 0.0) for kind in kinds]
        ax.bar(xs, vals, width * 0.95, color=COLORS[c], label=c)
    for k, kind in enumerate(kinds):
        goal = 1.3 if kind == "text" else 2.0
        ax.hlines(goal, k - 0.45, k + 0.45, colors="black", linestyles="dashed", linewidth=1)
    ax.set_xticks(range(len(kinds)))
    ax.set_xticklabels(kinds)
    ax.set_title("wall / producer alone, per tree (goal: dashed)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _bars(ax: Any, values: dict[str, float], title: str) -> None:
    names = list(values)
    ax.bar(range(len(names)), [values[n] for n in names], color=[COLORS[n] for n in names])
    for i, n in enumerate(names):
        ax.text(i, values[n], f"{values[n]:.2f}x", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace("-", "\n") for n in names], fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def _peers(ax: Any, peers: list[tuple[str, float, float]]) -> None:
    for i, (_what, ratio, goal) in enumerate(peers):
        ax.bar(i, ratio, 0.6, color=COLORS["streamer"] if ratio <= goal else "#9ecae1")
        ax.hlines(goal, i - 0.4, i + 0.4, colors="black", linestyles="dashed", linewidth=1)
        ax.text(i, ratio, f"{ratio:.2f}x", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(peers)))
    ax.set_xticklabels([p[0] for p in peers], fontsize=8)
    ax.set_title("streamer wall / peer's (restore: aws pipeline;\ndatabase: dump to file); "
                 "goal: dashed", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
