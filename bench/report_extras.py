"""RESULTS.md's sections of the standalone benches (bench/extras.py) and the
table of the goals of issue 12 (with issue 11's and issue 13's), for report.py."""

from __future__ import annotations

from typing import Any

from extras import EXTRAS

# what each standalone bench measures, for the "not run" rows
ABOUT = {
    "integrity": "integrity negotiation: per-byte integrity CPU per GB (point 1)",
    "startup": "start-up and tear-down: a one-file webroot (point 2)",
    "adaptive": "adaptive compression on a capped and an uncapped sink (point 3)",
    "restore": "restore against aws s3 cp | zstd -d | tar -x (point 5)",
    "gentle": "bandwidth limit held, and what a backup costs a neighbour (point 4)",
    "scale": "tree kinds, 1 to 2 cores, the database stream (point 6)",
    "assets": "the assets buckets at scale (issue 13)",
}


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def sections(doc: dict[str, Any]) -> list[str]:
    """Each extra's title, command and table, or why it is missing."""
    extras = doc.get("extras") or {}
    out = ["## Standalone benches\n",
           "Run by `scripts/bench --full` after the contenders above (bench/extras.py; "
           "`scripts/bench --only NAME` reruns one and merges it here).\n"]
    for name in EXTRAS:
        e = extras.get(name)
        if e is None:
            out.append(f"### bench/{name}.py: not run\n\n{ABOUT[name]}.\n")
            continue
        if "error" in e:
            out.append(f"### bench/{name}.py: failed ({e['error']})\n")
            out += ["```", (e.get("stderr_tail") or "").strip()[-2000:], "```", ""]
            continue
        out.append(f"### {e.get('title', name)}\n")
        out.append(f"`{e.get('command', f'bench/{name}.py')}` — {e.get('ran', '?')}, "
                   f"{e.get('seconds', '?')} s\n")
        out.append((e.get("table_md") or "").strip() + "\n")
    import report_plots

    if report_plots.has_any(doc):
        out.append("![issue 12: tree kinds, cores, restore and the database stream as ratios]"
                   "(results-issue12.png)\n")
    return out


def goal_rows(doc: dict[str, Any], main_rows: list[tuple[int, str, str, str]]
              ) -> list[tuple[int, str, str, str]]:
    """(issue, goal, measured, verdict): the main run's, then every extra's."""
    rows = list(main_rows)
    extras = doc.get("extras") or {}
    for name in EXTRAS:
        e = extras.get(name)
        issue = 13 if name == "assets" else 12
        if e is None:
            rows.append((issue, f"bench/{name}.py: {ABOUT[name]}", "not run", "not run"))
        elif "error" in e:
            rows.append((issue, f"bench/{name}.py: {ABOUT[name]}", e["error"], "FAIL (bench failed)"))
        else:
            for g in e.get("goals") or []:
                rows.append((int(g.get("issue", issue)), f"{g.get('goal', '?')}",
                             str(g.get("measured", "-")), "PASS" if g.get("pass") else "FAIL"))
    return sorted(rows, key=lambda r: (r[0] != 12, r[0]))


def table(rows: list[tuple[int, str, str, str]]) -> list[str]:
    out = ["## Goals of issue 12 (and of issues 11 and 13)\n",
           "| issue | goal | measured | verdict |", "|---|---|---|---|"]
    out += [f"| #{i} | {_md(g)} | {_md(m)} | {v} |" for i, g, m, v in rows]
    return [*out, ""]


def floor_rows(doc: dict[str, Any], streamer: Any, producer: Any, tee: tuple[str, Any] | None
               ) -> list[tuple[int, str, str, str]]:
    """The two null-sink ratios of issue 5, each with the floor (bench/README.md)."""
    import scale_floor

    floor = ((doc.get("extras") or {}).get("scale") or {}).get("floor")
    tree = doc["meta"].get("tree") or {}
    fl = None
    if floor and producer is not None and tree.get("zstd_bytes"):
        fl = scale_floor.floor_of(floor, producer.cpu.med, producer.wall.med, tree["zstd_bytes"])
    rows = []
    for limit, name, g in ((0.5, f"the fastest tee pipeline ({tee[0] if tee else '?'})",
                            tee[1] if tee else None), (2.0, "the producer alone", producer)):
        goal = f"null sink, 3 regions, mixed tree: streamer wall ≤ {limit}x {name}"
        if streamer is None or g is None:
            rows.append((12, goal, "-", "n/a (a contender failed or did not run)"))
            continue
        r = streamer.wall.med / g.wall.med
        measured = f"{streamer.wall.med:.2f} s / {g.wall.med:.2f} s = {r:.2f}x"
        verdict = "PASS" if r <= limit else "FAIL"
        if fl is not None:
            f = fl / g.wall.med
            measured += f"; floor {fl:.2f} s = {f:.2f}x"
            if r > limit and f > limit:
                verdict = f"FAIL (the floor, {f:.2f}x, is above the goal)"
        else:
            measured += "; floor not measured (bench/scale.py)"
        rows.append((12, goal, measured, verdict))
    ahead = tee[1] if tee else None
    if streamer is not None and ahead is not None:
        r = streamer.wall.med / ahead.wall.med
        rows.append((12, "mixed tree, null sink: streamer ahead of the fastest tee pipeline",
                     f"{r:.2f}x", "PASS" if r < 1 else "FAIL"))
    return rows
