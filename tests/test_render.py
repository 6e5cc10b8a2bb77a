"""The renderer without servers: each command's result turned into the lines
the CLI prints (the wording the integration tests assert on)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from streamer.commands.backup import BackupOutcome
from streamer.commands.check import CheckResult, Finding
from streamer.commands.cleanup import CleanupResult
from streamer.commands.common import PruneResult, SeriesCleanup, SeriesPruned
from streamer.commands.list import ListResult, RegionRuns
from streamer.housekeeping.cleanup import CleanupReport
from streamer.housekeeping.lease import Holder
from streamer.housekeeping.retention import PruneReport
from streamer.layout.catalog import RunListing, StoredArtifact, StoredManifest
from streamer.model import BackupResult, Periodicity, Series
from streamer.pipeline.fanout import ArtifactRun
from streamer.pipeline.run import RegionResult
from streamer.process import ProcessSource
from streamer.readback.extract import ExtractStats
from streamer.readback.restore import FailedAttempt, Restored, RestoreReport
from streamer.readback.verify import RegionCheck, VerifyReport
from streamer.render import (
    Line,
    check_lines,
    cleanup_lines,
    housekeeping_lines,
    list_lines,
    prune_lines,
    restore_lines,
    result_lines,
    verify_lines,
)
from streamer.store.base import ObjectInfo

T0 = datetime(2026, 5, 1, 2, 30, 7, tzinfo=UTC)
S = Series("site-1", Periodicity.HOURLY)


def texts(lines: list[Line], err: bool = False) -> list[str]:
    return [ln.text for ln in lines if ln.err is err]


def test_backup_result_lines() -> None:
    art = ArtifactRun("webroot", "k", ProcessSource("webroot", ("tar", "-c")), source_bytes=4_000_000,
                      stored_bytes=1_000_000, parts=2, sha256="ab" * 32, started=1.0, finished=3.0)
    res = BackupResult(3, "site-1", "hourly", "20260501T023007Z", T0, T0,
                       regions=[RegionResult(1, "http://a", "committed"),
                                RegionResult(2, "http://b", "failed", "region 2: gone")],
                       artifacts=[art], warnings=["tar: file changed"])
    assert texts(result_lines(res)) == [
        "webroot: 4.0 MB read, 1.0 MB stored in 2 parts, 2.0 MB/s, sha256 abababababababab",
        "region 1 (http://a): committed",
        "region 2 (http://b): failed: region 2: gone",
        "warning: tar: file changed",
        "committed site-1/hourly/20260501T023007Z in 1 of 2 regions"]
    res.exit_code = 1
    assert not any(t.startswith("committed") for t in texts(result_lines(res)))


def test_backup_housekeeping_lines() -> None:
    stale = Holder("t", "web-other", 100, "boot", 1, "20260501T000000Z", T0, T0)
    cleanup = SeriesCleanup(S, reports=[CleanupReport("region 1 (a)", 0, ()),
                                        CleanupReport("region 2 (b)", 2, ("20260430T000000Z",))],
                            problems=["region 3 (c): unreachable"])
    retention = PruneResult(pruned=[
        SeriesPruned(S, 2, PruneReport("region 1 (a)", ("x", "y"), ())),
        SeriesPruned(S, 2, PruneReport("region 2 (b)", ("x", "y"), ("20260101T000000Z",)))])
    outcome = BackupOutcome(S, taken_over=[stale], cleanup=cleanup, retention=retention)
    lines = housekeeping_lines(outcome, quiet=False)
    assert texts(lines) == [
        "warning: took over the backup lock of web-other pid 100 (run 20260501T000000Z): "
        "its lease had expired or its process is gone",
        "cleanup site-1/hourly: region 2 (b): aborted 2 unfinished upload(s), removed 1 abandoned "
        "run(s) 20260430T000000Z",
        "retention site-1/hourly (keep 2): region 2 (b): kept 2, removed 1: 20260101T000000Z"]
    assert texts(lines, err=True) == ["warning: cleanup: region 3 (c): unreachable"]
    assert not any("took over" in t for t in texts(housekeeping_lines(outcome, quiet=True)))


def test_prune_and_cleanup_lines() -> None:
    assert texts(prune_lines(PruneResult(skipped="nothing to prune here"))) == ["nothing to prune here"]
    result = PruneResult(pruned=[SeriesPruned(S, 3, PruneReport("region 1 (a)", ("x",), ()))],
                         errors=["site-1/hourly: region 2 (b): down"])
    lines = prune_lines(result)
    assert texts(lines) == ["retention site-1/hourly (keep 3): region 1 (a): kept 1, removed none"]
    assert texts(lines, err=True) == ["streamer: retention incomplete: site-1/hourly: region 2 (b): down"]
    assert result.exit_code == 1
    done = SeriesCleanup(S, holding_lock=False, lock_message="held by web-other", horizon=7200,
                         reports=[CleanupReport("region 1 (a)", 0, ())], problems=["boom"])
    lines = cleanup_lines(CleanupResult([done]))
    assert texts(lines) == [
        "cleanup site-1/hourly: lock not taken (held by web-other); only what is older than 2 h "
        "is cleaned",
        "cleanup site-1/hourly: region 1 (a): aborted 0 unfinished upload(s), removed no abandoned runs"]
    assert texts(lines, err=True) == ["streamer: cleanup incomplete: boom"]


def _run(stamp: str, suffix: str = "") -> RunListing:
    objs = (ObjectInfo(f"site-1/hourly/{stamp}/webroot.tar.zst", 2_000_000),
            ObjectInfo(f"site-1/hourly/{stamp}/manifest.json", 10))
    return RunListing("site-1", Periodicity.HOURLY, stamp, objs, objs[1].key, suffix)


def test_list_lines_text_and_json() -> None:
    now = datetime(2026, 5, 1, 4, 35, 7, tzinfo=UTC)
    result = ListResult(now, [RegionRuns(1, "region 1 (a)", "http://a", [_run("20260501T023007Z")]),
                              RegionRuns(2, "region 2 (b)", "http://b", error="region 2: down")])
    lines = list_lines(result, json_out=False)
    assert texts(lines) == [
        "region 1 (a): 1 committed backup",
        "  site-1/hourly/20260501T023007Z  age 2h05m  webroot 2.0 MB  total 2.0 MB",
        "region 2 (b): unreachable: region 2: down"]
    assert texts(lines, err=True) == ["streamer: list incomplete: region 2: down"]
    [out] = texts(list_lines(result, json_out=True))
    value: dict[str, Any] = json.loads(out)
    assert [r["ok"] for r in value["regions"]] == [True, False]
    assert value["regions"][0]["backups"][0] == {
        "build": "site-1", "periodicity": "hourly", "stamp": "20260501T023007Z",
        "age_seconds": 7500, "size": 2_000_000, "artifacts": {"webroot": 2_000_000}}


def test_restore_lines() -> None:
    report = RestoreReport("site-1/hourly", "20260501T023007Z", ["region 3: down"], [
        FailedAttempt("webroot", "region 1 (a)", "region 1 (a): hash mismatch", last=False),
        Restored("webroot", "region 2 (b)", str(Path("/srv/www")), 2_000_000, 1.0,
                 ExtractStats(files=3, dirs=2, links=1)),
        Restored("database", "region 2 (b)", "shop", 1_000_000, 0.5),
        FailedAttempt("webroot", "region 1 (a)", "region 1 (a): reset", last=False, at=8_388_608),
        Restored("webroot", "region 1 (a) then region 2 (b)", "/w", 2_000_000, 1.0, None,
                 2_500_000)])
    lines = restore_lines(report)
    assert texts(lines) == [
        "restored webroot of site-1/hourly/20260501T023007Z from region 2 (b) into /srv/www: "
        "3 files, 2 directories, 1 links; 2.0 MB in 1.00 s (2 MB/s) downloaded",
        "restored database of site-1/hourly/20260501T023007Z from region 2 (b) into 'shop': "
        "1.0 MB in 0.50 s (2 MB/s) downloaded",
        "restored webroot of site-1/hourly/20260501T023007Z from region 1 (a) then region 2 (b) "
        "into '/w': 2.0 MB in 1.00 s (2 MB/s) downloaded; 2.5 MB read in all (1.25x the stored "
        "size)"]
    assert texts(lines, err=True) == [
        "streamer: region 3: down; using the other regions",
        "streamer: webroot from region 1 (a) failed: region 1 (a): hash mismatch; trying the next region",
        "streamer: webroot from region 1 (a) failed at byte 8388608: region 1 (a): reset; "
        "resuming there from the next region"]
    assert report.exit_code == 0


def test_verify_lines() -> None:
    manifest = StoredManifest("site-1", "hourly", "20260501T023007Z",
                              {"webroot": StoredArtifact("webroot", "k", 2_000_000, "0" * 64, "zstd")},
                              {})

    def client(label: str) -> Any:
        return cast(Any, SimpleNamespace(label=label))
    report = VerifyReport("site-1/hourly", "20260501T023007Z", [
        RegionCheck(client("region 1 (a)"), manifest, None, 2_000_000, 1.0),
        RegionCheck(client("region 2 (b)"), None, "no committed backup 20260501T023007Z")])
    lines = verify_lines(report)
    assert texts(lines) == [
        "region 1 (a): ok: site-1/hourly/20260501T023007Z: webroot 2.0 MB; sha256 verified in "
        "1.00 s (2 MB/s)",
        "region 2 (b): BAD: site-1/hourly/20260501T023007Z: no committed backup 20260501T023007Z"]
    assert texts(lines, err=True) == [
        "streamer: verify failed: region 2 (b): no committed backup 20260501T023007Z"]
    assert report.exit_code == 1


def test_check_lines() -> None:
    result = CheckResult({"bucket": "b"}, [Finding("region 1 (a)", "reachable", True, "http://a"),
                                           Finding("database", "preflight", False, "no such db")])
    lines = check_lines(result, json_out=False)
    assert texts(lines)[1:] == ["ok   region 1 (a) reachable  http://a",
                                "FAIL database preflight      no such db"]
    assert json.loads("\n".join(texts(lines)[:-2])) == {"bucket": "b"}
    assert texts(lines, err=True) == ["streamer: config check: database: preflight: no such db"]
    [out] = texts(check_lines(result, json_out=True))
    assert json.loads(out)["ok"] is False and result.exit_code == 2


def test_heal_lines_and_exit_codes() -> None:
    from streamer.commands.heal import CopyOutcome, HealResult
    from streamer.housekeeping.heal_plan import Copy, RunId
    from streamer.model import Periodicity
    from streamer.render import heal_lines

    run = RunId("site-1", Periodicity.HOURLY, "20260501T023007Z")
    labels = {1: "region 1 (a)", 2: "region 2 (b)", 3: "region 3 (c)"}
    nothing = HealResult(labels, runs_checked=2)
    assert heal_lines(nothing, quiet_if_nothing=True) == [] and nothing.exit_code == 0
    done = CopyOutcome(Copy(run, 2, "missing", (1, 3), 4_000_000), 1, 4_000_000, 2.0)
    failed = CopyOutcome(Copy(run, 3, "webroot holds 1 bytes, the manifest says 4000000", (1,), 1),
                         failures=["from region 1 (a): boom"])
    result = HealResult(labels, [done, failed], runs_checked=2, limit=60, limit_reached=True,
                        budget_limit=64_000_000, budget_peak=16_000_000)
    assert texts(heal_lines(result)) == [
        "heal site-1/hourly/20260501T023007Z: region 2 (b) <- region 1 (a): 4.0 MB in 2.00 s (2 MB/s)",
        "heal: 2 committed run(s) checked, 1 copy made (4.0 MB), memory peak 16.0 MB of 64.0 MB"]
    assert texts(heal_lines(result), err=True) == [
        "heal site-1/hourly/20260501T023007Z: region 3 (c) still lacks it (its copy was damaged: "
        "webroot holds 1 bytes, the manifest says 4000000): from region 1 (a): boom",
        "heal: stopped at the limit (60 s, STREAMER_HEAL_LIMIT); the rest is healed next time"]
    assert result.exit_code == 3  # some healed, some not
    assert HealResult(labels, [failed]).exit_code == 1  # nothing could be done
    assert HealResult(labels, [done]).exit_code == 0
    assert HealResult(labels, [done], unreachable={3: "down"}).exit_code == 3
