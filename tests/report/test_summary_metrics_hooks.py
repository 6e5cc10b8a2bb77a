"""The JSON summary and its schema, the Prometheus metrics file, the hooks (real processes)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families
from s3util import RegionsEnv

from streamer.errors import StreamerError
from streamer.model import ArtifactResult, BackupResult, Periodicity, RegionResult, RegionUpload
from streamer.pipeline.run import run_backup
from streamer.report.hooks import SECRET_ENV, hook_environment, hook_kind, run_hook
from streamer.report.metrics import MetricsWriteError, parse, render, try_write_metrics, write_metrics
from streamer.report.summary import summarize, summarize_failure
from streamer.settings.config import parse_config

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "summary.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
T0 = datetime(2026, 5, 1, 2, 30, 7, tzinfo=UTC)
SHA = "ab" * 32


def validate(summary: dict[str, Any]) -> None:
    errors = sorted(VALIDATOR.iter_errors(json.loads(json.dumps(summary))), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def artifact(name: str, *, regions: tuple[int, ...], finished: bool = True,
             source_bytes: int = 3_000_000, stored_bytes: int = 1_000_000) -> ArtifactResult:
    art = ArtifactResult(name, f"site-1/hourly/20260501T023007Z/{name}.tar.zst")
    art.started = 100.0
    art.finished = 102.0 if finished else 0.0
    art.exit_code = 0 if finished else None
    art.source_bytes, art.stored_bytes = source_bytes, stored_bytes
    art.parts, art.max_part_size = 2, 8 * 1024 * 1024
    art.sha256 = SHA if finished else ""
    for index in regions:
        art.uploads[index] = RegionUpload(parts_acknowledged=2, retries=index - 1)
    return art


def result(exit_code: int, statuses: list[tuple[str, str | None]], *,
           error: str | None = None, finished: bool = True) -> BackupResult:
    regions = [RegionResult(i, f"http://127.0.0.1:1833{i}", status, err)
               for i, (status, err) in enumerate(statuses, start=1)]
    indexes = tuple(r.index for r in regions)
    res = BackupResult(exit_code, "site-1", "hourly", "20260501T023007Z", T0,
                       T0 + timedelta(seconds=3), regions=regions,
                       artifacts=[artifact("webroot", regions=indexes, finished=finished),
                                  artifact("database", regions=indexes, finished=finished,
                                           source_bytes=500_000, stored_bytes=100_000)],
                       error=error, budget_limit=256 * 1024 * 1024, budget_peak=16 * 1024 * 1024)
    return res


# ------------------------------------------------------------------ summary

def test_success_summary_validates_and_adds_up() -> None:
    res = result(0, [("committed", None)] * 3)
    res.warnings.append("webroot: file changed as we read it (exit 1: x)")
    s = summarize(res, exit_code=0, duration=4.5, rss_peak_bytes=90_000_000)
    validate(s)
    assert s["status"] == "committed" and s["exit_code"] == 0 and s["error"] is None
    assert (s["build"], s["periodicity"], s["stamp"]) == ("site-1", "hourly", "20260501T023007Z")
    assert s["started"] == "2026-05-01T02:30:07.000Z" and s["ended"] == "2026-05-01T02:30:10.000Z"
    assert s["regions_committed"] == 3 and s["regions_failed"] == 0
    assert [r["retries"] for r in s["regions"]] == [0, 2, 4]
    web = s["artifacts"]["webroot"]
    assert web["sha256"] == SHA and web["parts"] == 2 and web["stored_bytes"] == 1_000_000
    assert web["duration_seconds"] == 2.0 and web["throughput_mb_per_s"] == 1.5
    assert s["totals"]["source_bytes"] == 3_500_000 and s["totals"]["stored_bytes"] == 1_100_000
    assert s["totals"]["throughput_mb_per_s"] == 1.75
    assert s["memory"] == {"budget_bytes": 256 * 1024 * 1024, "peak_bytes": 16 * 1024 * 1024,
                           "rss_peak_bytes": 90_000_000}
    assert s["warnings"] == res.warnings


def test_partial_summary_validates() -> None:
    res = result(3, [("committed", None), ("failed", "region 2: no progress for 300 s"),
                     ("committed", None)])
    s = summarize(res, exit_code=3, duration=9.0)
    validate(s)
    assert s["status"] == "partial"
    assert (s["regions_committed"], s["regions_failed"], s["regions_total"]) == (2, 1, 3)
    assert s["regions"][1]["error"] == "region 2: no progress for 300 s"


def test_failed_summary_validates_and_hides_secrets() -> None:
    res = result(1, [("failed", "denied for key s3cr3t-value"), ("aborted", None)],
                 error="tar exited with status 2: s3cr3t-value", finished=False)
    res.regions[0].endpoint = "https://AKIA:s3cr3t-value@s3.example.com"
    s = summarize(res, exit_code=1, duration=1.0, redact=["s3cr3t-value"])
    validate(s)
    assert s["status"] == "failed" and s["regions_committed"] == 0
    assert s["artifacts"]["webroot"]["sha256"] is None
    assert s["artifacts"]["webroot"]["complete"] is False
    assert s["totals"]["throughput_mb_per_s"] is None
    assert "s3cr3t-value" not in json.dumps(s) and "AKIA" not in json.dumps(s)
    assert s["regions"][0]["endpoint"] == "https://s3.example.com"


@pytest.mark.parametrize(("code", "status", "periodicity"), [
    (2, "usage_error", "YEARLY"), (4, "skipped", "HOURLY"), (1, "failed", "daily"),
    (130, "interrupted", "Weekly")])
def test_failure_before_a_result_validates(code: int, status: str, periodicity: str) -> None:
    s = summarize_failure(build="site-1", periodicity=periodicity, exit_code=code,
                          error="something went wrong", duration=0.25, now=T0)
    validate(s)
    assert s["status"] == status and s["exit_code"] == code and s["stamp"] is None
    assert s["periodicity"] == (periodicity if code == 2 else periodicity.lower())
    assert s["ended"] == "2026-05-01T02:30:07.000Z" and s["started"] == "2026-05-01T02:30:06.750Z"
    assert s["regions"] == [] and s["artifacts"] == {}


def test_schema_rejects_inconsistent_summaries() -> None:
    good = summarize(result(0, [("committed", None)] * 2), exit_code=0, duration=1.0)
    for mutate in (lambda s: s.update(exit_code=3),             # status says 0
                   lambda s: s.update(status="ok"),              # not in the enum
                   lambda s: s["regions"][0].update(status="weird"),
                   lambda s: s.update(secret="x"),               # no unknown fields
                   lambda s: s.pop("memory")):
        bad = json.loads(json.dumps(good))
        mutate(bad)
        assert list(VALIDATOR.iter_errors(bad)), bad


# ------------------------------------------------------------------ metrics

def families(path: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(path.read_text()):
        assert fam.type == "gauge" and fam.documentation
        for sample in fam.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def key(build: str, periodicity: str) -> tuple[tuple[str, str], ...]:
    return (("build", build), ("periodicity", periodicity))


def test_metrics_parse_and_keep_other_periodicities(tmp_path: Path) -> None:
    path = tmp_path / "streamer.prom"
    daily = summarize(result(0, [("committed", None)] * 3), exit_code=0, duration=4.0)
    daily["periodicity"] = "daily"
    write_metrics(path, daily)
    hourly = summarize(result(3, [("committed", None), ("failed", "down"), ("committed", None)]),
                       exit_code=3, duration=7.5)
    write_metrics(path, hourly)
    m = families(path)
    success = T0.timestamp() + 3
    assert m["streamer_last_success_timestamp_seconds"] == {key("site-1", "daily"): success}
    assert m["streamer_last_commit_timestamp_seconds"] == {key("site-1", "daily"): success,
                                                           key("site-1", "hourly"): success}
    assert m["streamer_last_run_exit_code"] == {key("site-1", "daily"): 0, key("site-1", "hourly"): 3}
    assert m["streamer_last_run_duration_seconds"][key("site-1", "hourly")] == 7.5
    assert m["streamer_last_run_regions_failed"][key("site-1", "hourly")] == 1
    assert m["streamer_last_run_stored_bytes"][key("site-1", "hourly")] == 1_100_000
    assert m["streamer_last_run_source_bytes"][key("site-1", "daily")] == 3_500_000
    region2 = (("build", "site-1"), ("endpoint", "http://127.0.0.1:18332"),
               ("periodicity", "hourly"), ("region", "2"))
    assert m["streamer_last_run_region_committed"][region2] == 0

    # A failed hourly run keeps hourly's last commit time and daily's everything.
    failed = summarize_failure(build="site-1", periodicity="HOURLY", exit_code=4,
                               error="lock held by web-2", duration=0.1, now=T0 + timedelta(hours=1))
    write_metrics(path, failed)
    m = families(path)
    assert m["streamer_last_commit_timestamp_seconds"][key("site-1", "hourly")] == success
    assert m["streamer_last_run_exit_code"][key("site-1", "hourly")] == 4
    assert m["streamer_last_run_timestamp_seconds"][key("site-1", "hourly")] == T0.timestamp() + 3600
    assert m["streamer_last_success_timestamp_seconds"] == {key("site-1", "daily"): success}
    assert not any(labels for labels in m["streamer_last_run_region_committed"]
                   if ("periodicity", "hourly") in labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".streamer.prom.lock", "streamer.prom"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_metrics_replace_atomically_and_tolerate_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "streamer.prom"
    path.write_text('garbage line\nstreamer_last_success_timestamp_seconds{build="old",'
                    'periodicity="daily"} 1.5e9\nstreamer_broken{build="x" 1\n'
                    'other_tool_metric 3\n# TYPE streamer_future gauge\n'
                    'streamer_future{build="b\\"q",periodicity="weekly"} 2\n')
    before = path.stat().st_ino
    summary = summarize(result(0, [("committed", None)]), exit_code=0, duration=1.0)
    write_metrics(path, summary)
    assert path.stat().st_ino != before  # a new file renamed over the old one
    fams = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert fams["streamer_last_success_timestamp_seconds"].samples[0].labels["build"] in ("old", "site-1")
    assert len(fams["streamer_last_success_timestamp_seconds"].samples) == 2
    assert fams["streamer_future"].samples[0].labels["build"] == 'b"q'
    assert "other_tool_metric" not in fams and "streamer_broken" not in fams
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_metrics_round_trip_escaping() -> None:
    summary = summarize_failure(build='we\\ird"\nname', periodicity="daily", exit_code=2,
                                error="bad", duration=0.0, now=T0)
    text = render(summary)
    samples, _ = parse(text)
    assert {s.label("build") for s in samples} == {'we\\ird"\nname'}
    [fam] = [f for f in text_string_to_metric_families(text) if f.name == "streamer_last_run_exit_code"]
    assert fam.samples[0].labels["build"] == 'we\\ird"\nname'


def test_metrics_write_failure_is_reported_not_raised_as_exit_code(tmp_path: Path) -> None:
    summary = summarize_failure(build="b", periodicity="daily", exit_code=1, error="x", duration=0)
    missing = tmp_path / "no-such-dir" / "streamer.prom"
    with pytest.raises(MetricsWriteError, match="no-such-dir"):
        write_metrics(missing, summary)
    warning = try_write_metrics(missing, summary)
    assert warning is not None and "cannot write metrics file" in warning
    assert not issubclass(MetricsWriteError, StreamerError)  # the CLI must not map it to an exit code


# ------------------------------------------------------------------ hooks

@pytest.mark.anyio
async def test_hook_gets_the_summary_on_stdin_and_its_env(tmp_path: Path) -> None:
    summary = summarize(result(0, [("committed", None)] * 3), exit_code=0, duration=4.0)
    out = tmp_path / "stdin.json"
    envfile = tmp_path / "env.txt"
    environ = {**os.environ, "S3_SECRET_KEY": "sekrit-1", "DB_PASSWORD": "sekrit-2",
               "MYSQL_PWD": "sekrit-3", "PGPASSWORD": "sekrit-4", "S3_ACCESS_KEY": "sekrit-5",
               "AWS_SECRET_ACCESS_KEY": "sekrit-6", "AWS_ACCESS_KEY_ID": "sekrit-7",
               "KEEP_ME": "visible"}
    outcome = await run_hook(f"cat > {out}; env > {envfile}; echo done", summary, environ=environ)
    assert outcome.ok and outcome.exit_code == 0 and outcome.output_tail == "done", outcome
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))
    env = dict(line.split("=", 1) for line in envfile.read_text().splitlines() if "=" in line)
    assert env["STREAMER_EXIT_CODE"] == "0" and env["STREAMER_BUILD"] == "site-1"
    assert env["STREAMER_PERIODICITY"] == "hourly" and env["STREAMER_STATUS"] == "committed"
    assert env["KEEP_ME"] == "visible"
    assert "sekrit" not in envfile.read_text()
    assert not SECRET_ENV & set(env)


@pytest.mark.anyio
async def test_hook_default_environment_strips_secrets(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.setenv("S3_SECRET_KEY", "from-os-environ")
    summary = summarize_failure(build="b", periodicity="daily", exit_code=1, error="x", duration=0)
    envfile = tmp_path / "env.txt"
    outcome = await run_hook(f"env > {envfile}", summary)
    assert outcome.ok
    assert "from-os-environ" not in envfile.read_text()
    assert "S3_SECRET_KEY" not in hook_environment(summary)


@pytest.mark.anyio
async def test_failing_hook_is_reported_not_raised() -> None:
    summary = summarize_failure(build="b", periodicity="daily", exit_code=1, error="x", duration=0)
    outcome = await run_hook("echo 'mail: cannot reach smtp' >&2; exit 3", summary)
    assert outcome.status == "failed" and outcome.exit_code == 3
    assert outcome.describe("on-failure hook") == "on-failure hook failed: exit 3: mail: cannot reach smtp"
    missing = await run_hook("/no/such/program", summary)
    assert missing.status == "failed" and missing.exit_code == 127


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_until(condition: Callable[[], bool], what: str, deadline: float = 60) -> None:
    """Poll ``condition`` until it holds; the deadline is a bound, never a margin."""
    try:
        with anyio.fail_after(deadline):
            while not condition():
                await anyio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {deadline} s: {what}") from None


@pytest.mark.anyio
async def test_hanging_hook_is_killed_with_its_process_group(tmp_path: Path) -> None:
    summary = summarize_failure(build="b", periodicity="daily", exit_code=1, error="x", duration=0)
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    # The hook would run for 10 minutes: returning at all proves it was ended.
    outcome = await run_hook(f"echo starting; sleep 600 & echo $! > {pidfile}; wait", summary,
                             timeout=3)
    elapsed = time.monotonic() - started
    assert outcome.status == "timed_out" and not outcome.ok
    assert elapsed >= 2.5, elapsed  # not before its timeout (loop clock: ms, cached)
    assert outcome.output_tail == "starting"
    assert "timed out after 3 s" in outcome.describe()
    child = int(pidfile.read_text())
    # the background child was in the group: it is gone too
    await wait_until(lambda: not alive(child), f"hook's child {child} ended")


@pytest.mark.anyio
async def test_hook_that_ignores_stdin_and_detaches_does_not_block(tmp_path: Path) -> None:
    summary = summarize(result(0, [("committed", None)] * 3), exit_code=0, duration=4.0)
    summary["warnings"] = ["w" * 1000] * 200  # bigger than a pipe buffer, never read
    pidfile = tmp_path / "detached.pid"
    outcome = await run_hook(
        f"(sleep 600 >/dev/null 2>&1 </dev/null & echo $! > {pidfile}); exit 0", summary,
        timeout=300)
    try:
        assert outcome.ok, outcome
        # It returned while the detached child still runs: it did not wait for it.
        assert alive(int(pidfile.read_text()))
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


# ------------------------------------------------------------------ a real run

@pytest.mark.anyio
async def test_real_backup_summary_metrics_and_hook(regions: RegionsEnv, bucket: str,
                                                    tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.php").write_text("<?php echo 'hi'; ?>\n" * 100)
    config = parse_config({**regions.env, "STREAMER_BUCKET": bucket, "STREAMER_WEBROOT": str(root),
                           "STREAMER_MEMORY_BUDGET": "64MiB"})
    started = time.monotonic()
    res = await run_backup(config, Periodicity.DAILY, "sum-site")
    assert res.exit_code == 0, res.error
    s = summarize(res, exit_code=res.exit_code, duration=time.monotonic() - started,
                  redact=[regions.env["S3_SECRET_KEY"], regions.env["S3_ACCESS_KEY"]])
    validate(s)
    assert s["status"] == "committed" and s["regions_committed"] == 3
    web = s["artifacts"]["webroot"]
    assert web["complete"] and web["stored_bytes"] > 0 and web["parts"] == 1
    manifest = json.loads(regions.get(1, bucket, f"sum-site/daily/{s['stamp']}/manifest.json"))
    # STREAMER_CHECKSUM=auto: no stream SHA-256, the manifest's end to end is parts_sha256.
    assert web["sha256"] is None and "parts_sha256" in manifest["artifacts"]["webroot"]
    assert web["stored_bytes"] == manifest["artifacts"]["webroot"]["stored_size"]
    assert s["memory"]["budget_bytes"] == 64 * 1024 * 1024 and s["memory"]["peak_bytes"] > 0
    assert regions.env["S3_SECRET_KEY"] not in json.dumps(s)

    prom = tmp_path / "streamer.prom"
    write_metrics(prom, s)
    m = families(prom)
    assert m["streamer_last_run_regions_committed"][key("sum-site", "daily")] == 3
    out = tmp_path / "hook.json"
    outcome = await run_hook(f"cat > {out}", s)
    assert outcome.ok and json.loads(out.read_text())["stamp"] == s["stamp"]


def test_which_hook_runs() -> None:
    assert hook_kind(0) == "success"
    assert [hook_kind(c) for c in (1, 2, 3, 130)] == ["failure"] * 4
    assert hook_kind(4) is None  # skipped on this host: another one backs up
    with pytest.raises(ValueError):
        summarize_failure(build="b", periodicity="daily", exit_code=0, error="", duration=0)
