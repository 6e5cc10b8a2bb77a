"""The bench's own logic (bench/README.md): the new tree kinds are deterministic
and what they claim to be, the floor is the bound it is documented as, and the
report shows an extra that did not run as "not run" rather than failing."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import gen_webroot
import report_extras
import scale_floor


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
            h.update(str(os.stat(p).st_mtime_ns).encode())
    return h.hexdigest()


def test_the_cms_tree_is_small_files_in_deep_directories_and_the_same_every_time(tmp_path: Path) -> None:
    one, stats = gen_webroot.ensure_kind("cms", files=600, cache=tmp_path / "a", quiet=True)
    two, _ = gen_webroot.ensure_kind("cms", files=600, cache=tmp_path / "b", quiet=True)
    assert _digest(one) == _digest(two)
    files = [p for p in one.rglob("*") if p.is_file()]
    assert len(files) == stats["files"] == 600
    sizes = sorted(p.stat().st_size for p in files)
    assert 100 <= sizes[len(sizes) // 10] and sizes[len(sizes) * 9 // 10] <= 24_000
    assert any(len(p.relative_to(one).parts) >= 6 for p in files)
    assert any("wp-content/cache/" in str(p) for p in files)


def test_the_text_tree_has_no_media(tmp_path: Path) -> None:
    root, stats = gen_webroot.ensure_kind("text", size=2 << 20, cache=tmp_path, quiet=True)
    assert stats["media_bytes"] == 0 and stats["bytes"] >= 2 << 20
    exts = {p.suffix for p in root.rglob("*") if p.is_file()}
    assert exts <= {".php", ".js", ".css", ".html", ".json", ".po", ".svg", ".htaccess", ""}
    assert (root / "wp-content" / "uploads").is_dir()


def test_the_floor_is_the_producer_or_the_work_spread_over_the_cores() -> None:
    floor = {"cores": 2, "checksum_cpu_s_per_gb": 0.25, "send3_cpu_s_per_gb": 0.75}
    # CPU-bound: (4 + 2 GB x 1 s/GB) / 2 cores = 3 s, above the producer's 2.5 s
    assert scale_floor.floor_of(floor, 4.0, 2.5, 2 * 10**9) == 3.0
    # the producer waits on its reads: its own wall is the floor
    assert scale_floor.floor_of(floor, 1.0, 2.5, 10**9) == 2.5


def test_an_extra_not_run_or_failed_is_a_row_not_a_crash() -> None:
    doc = {"meta": {}, "runs": [], "extras": {
        "gentle": {"title": "g", "error": "exit 1", "stderr_tail": "boom"},
        "scale": {"title": "s", "command": "bench/scale.py", "table_md": "| a |",
                  "goals": [{"issue": 12, "goal": "g1", "measured": "1x", "pass": True}]}}}
    rows = report_extras.goal_rows(doc, [])
    by_goal = {r[1]: r for r in rows}
    assert by_goal["g1"] == (12, "g1", "1x", "PASS")
    assert any(r[2] == "exit 1" and r[3].startswith("FAIL") for r in rows)
    assert any(r[0] == 13 and r[2] == "not run" for r in rows)  # assets.py
    text = "\n".join(report_extras.sections(doc))
    assert "bench/integrity.py: not run" in text and "| a |" in text and "boom" in text


def test_a_database_run_counts_only_with_the_database_in_every_region() -> None:
    import scale_db

    key = "b/manual/20261203T000000Z/"
    both = {key + "webroot.tar.zst": 1, key + "database.sql.zst": 2}
    good = {"ok": True, "verify": {"objects": [both] * 3}}
    scale_db._require_database(good)
    assert good["ok"]
    bad = {"ok": True, "verify": {"objects": [both] * 2 + [{key + "webroot.tar.zst": 1}]}}
    scale_db._require_database(bad)
    assert not bad["ok"] and "database" in bad["error"]


def _scale_doc() -> dict:
    runs = []
    for kind, walls in (("cms", {"producer": 2.0, "streamer": 3.0, "aws": 5.0}),
                        ("text", {"producer": 1.0, "streamer": 1.5, "s5cmd": 2.5})):
        for c, w in walls.items():
            runs += [{"ok": True, "part": "trees", "tree_kind": kind, "contender": c, "wall": w},
                     {"ok": True, "part": "trees", "tree_kind": kind, "contender": c, "wall": w * 3},
                     {"ok": True, "part": "trees", "tree_kind": kind, "contender": c, "wall": w}]
    runs.append({"ok": False, "part": "trees", "tree_kind": "cms", "contender": "rclone", "wall": 1.0})
    for cpus, w in (("0", 4.0), ("0,1", 2.5)):
        runs.append({"ok": True, "part": "cores", "base": "streamer", "cpus": cpus, "wall": w})
        runs.append({"ok": True, "part": "cores", "base": "streamer-zstd2", "cpus": cpus,
                     "wall": w * (1.0 if cpus == "0" else 0.8)})
    runs += [{"ok": True, "part": "db", "engine": "postgres", "contender": "dump", "wall": 2.0},
             {"ok": True, "part": "db", "engine": "postgres", "contender": "streamer-db-postgres",
              "wall": 3.0}]
    restore = {"raw": [{"tree": "webroot 300MiB", "runs": {"streamer": [[1.2, 1.0], [1.4, 1.0]],
                                                           "aws": [[1.0, 2.0]]}}]}
    return {"extras": {"scale": {"runs": runs}, "restore": restore}}


def test_the_issue12_plot_takes_medians_of_the_successful_runs_as_ratios(tmp_path: Path) -> None:
    import report_plots

    doc = _scale_doc()
    trees = report_plots.tree_ratios(doc["extras"]["scale"])
    assert trees == {"cms": {"producer": 1.0, "streamer": 1.5, "aws": 2.5},
                     "text": {"producer": 1.0, "streamer": 1.5, "s5cmd": 2.5}}  # failed rclone left out
    assert report_plots.core_speedups(doc["extras"]["scale"]) == {"streamer": 1.6,
                                                                  "streamer-zstd2": 2.0}
    peers = report_plots.peer_ratios(doc["extras"])
    assert [(w.split()[0], round(r, 3), round(g, 3)) for w, r, g in peers] == [
        ("restore", 1.3, 0.8), ("database", 1.5, 1.053)]
    out = tmp_path / "issue12.png"
    assert report_plots.render_issue12(doc, out) and out.read_bytes()[:4] == b"\x89PNG"
    assert not report_plots.render_issue12({"extras": {}}, out) and not out.exists()
    assert "results-issue12.png" in "".join(report_extras.sections(doc))
    assert "results-issue12.png" not in "".join(report_extras.sections({"extras": {}}))
