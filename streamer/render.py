"""All human output of the commands: each result turned into the lines printed.

The commands (commands/) return result dataclasses and print nothing; the CLI
hands each result to this module.  Every ``*_lines`` function is pure and
returns ``Line``s (stdout, or stderr with ``err``); ``show`` prints them.  The
live progress of a backup is an observer (report/progress.py), chosen here by
``make_observer``; the backup's JSON summary, metrics and hooks are
report/reporting.py's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from streamer.errors import EXIT_FAILED

# Types only: the renderers are imported by every command, and the results'
# modules (restore, rich's progress table...) only by the command that runs
# (start-up time: docs/ARCHITECTURE.md, "Start-up and tear-down").
if TYPE_CHECKING:
    from streamer.commands.assets import AssetsResult
    from streamer.commands.assets_restore import AssetsRestoreReport
    from streamer.commands.backup import BackupOutcome
    from streamer.commands.check import CheckResult
    from streamer.commands.cleanup import CleanupResult
    from streamer.commands.common import PruneResult, SeriesCleanup
    from streamer.commands.heal import HealResult
    from streamer.commands.list import ListResult
    from streamer.housekeeping.heal_plan import RunId
    from streamer.layout.catalog import RunListing
    from streamer.model import BackupResult, Observer
    from streamer.readback.restore import FailedAttempt, RestoreReport
    from streamer.readback.verify import VerifyReport
    from streamer.settings.config import Config


@dataclass(frozen=True)
class Line:
    text: str
    err: bool = False  # stderr


def show(lines: Iterable[Line], tolerate_broken_pipe: bool = False) -> None:
    """Print ``lines``; ``tolerate_broken_pipe``: a closed stdout changes nothing."""
    try:
        for line in lines:
            print(line.text, file=sys.stderr if line.err else sys.stdout)
    except BrokenPipeError:
        if not tolerate_broken_pipe:
            raise


def make_observer(config: Config, quiet: bool = False) -> Observer | None:
    """A live table on a terminal, plain progress lines off it, nothing when quiet."""
    if quiet:
        return None
    from streamer.report.progress import LogProgress, TerminalProgress
    if sys.stderr.isatty():
        return TerminalProgress()
    return LogProgress(config.progress_interval)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def age(seconds: float) -> str:
    """A short human age: 45s, 5m03s, 2h05m, 3d04h (pure)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / 1e6:.1f} MB in {seconds:.2f} s ({nbytes / 1e6 / max(seconds, 1e-9):.0f} MB/s)"


# ---------------------------------------------------------------- backup


def result_lines(result: BackupResult) -> list[Line]:
    """The end of a backup: artifacts, regions, warnings, what was committed."""
    out: list[Line] = []
    for art in result.artifacts:
        if not art.finished:
            continue
        secs = max(art.finished - art.started, 1e-9)
        rate = art.source_bytes / secs / 1e6
        out.append(Line(f"{art.name}: {_mb(art.source_bytes)} read, {_mb(art.stored_bytes)} stored "
                        f"in {art.parts} parts, {rate:.1f} MB/s, sha256 {art.sha256[:16]}"))
    for r in result.regions:
        out.append(Line(f"region {r.index} ({r.endpoint}): {r.status}"
                        + (f": {r.error}" if r.error else "")))
    out.extend(Line(f"warning: {w}") for w in result.warnings)
    if result.exit_code != EXIT_FAILED:
        out.append(Line(f"committed {result.build}/{result.periodicity}/{result.stamp} in "
                        f"{len(result.committed)} of {len(result.regions)} regions"))
    return out


def housekeeping_lines(outcome: BackupOutcome, quiet: bool) -> list[Line]:
    """What a backup did around its run: a lock taken over, leftovers cleaned, retention."""
    out: list[Line] = []
    for stale in [] if quiet else outcome.taken_over:
        out.append(Line(f"warning: took over the backup lock of {stale.host} pid {stale.pid} "
                        f"(run {stale.run}): its lease had expired or its process is gone"))
    if outcome.cleanup is not None:
        out += cleanup_region_lines(outcome.cleanup, quiet_if_nothing=True)
        out += [Line(f"warning: cleanup: {p}", err=True) for p in outcome.cleanup.problems]
    if outcome.heal is not None:
        out += heal_lines(outcome.heal, quiet_if_nothing=True)
    if outcome.retention is not None:
        out += prune_lines(outcome.retention, quiet_if_nothing=True)
    if outcome.assets is not None:
        out += [line for line in assets_lines(outcome.assets) if line.err or not quiet]
    return out


def show_backup(outcome: BackupOutcome, quiet: bool) -> None:
    show(housekeeping_lines(outcome, quiet))
    if outcome.error is not None or outcome.result is None:
        return  # the error is the caller's one line
    if not quiet:
        show(result_lines(outcome.result), tolerate_broken_pipe=True)
    if outcome.result.error:
        show([Line(f"streamer: backup failed: {outcome.result.error} "
                   "(nothing new committed; earlier backups untouched)", err=True)])


# ---------------------------------------------------------------- config check


def check_lines(result: CheckResult, json_out: bool) -> list[Line]:
    out: list[Line] = []
    if json_out:
        out.append(Line(json.dumps({"config": result.config,
                                    "checks": [f.__dict__ for f in result.findings],
                                    "ok": not result.problems}, indent=2)))
    else:
        out.append(Line(json.dumps(result.config, indent=2)))
        width = max(len(f"{f.subject} {f.check}") for f in result.findings)
        for f in result.findings:
            mark = "ok  " if f.ok else "FAIL"
            out.append(Line(f"{mark} {(f.subject + ' ' + f.check).ljust(width)}  {f.detail}"))
    out += [Line(f"streamer: config check: {f.subject}: {f.check}: {f.detail}", err=True)
            for f in result.problems]
    return out


# ---------------------------------------------------------------- restore, verify


def restore_lines(report: RestoreReport) -> list[Line]:
    out = [Line(f"streamer: {problem}; using the other regions", err=True)
           for problem in report.unreachable]
    where = f"{report.what}/{report.stamp}"
    from streamer.readback.restore import FailedAttempt
    for event in report.events:
        if isinstance(event, FailedAttempt):
            out.append(Line(_failed_attempt(event), err=True))
            continue
        read = _rate(event.size, event.seconds) + " downloaded"
        if event.downloaded > event.size:
            read += (f"; {event.downloaded / 1e6:.1f} MB read in all "
                     f"({event.downloaded / max(event.size, 1):.2f}x the stored size)")
        if event.stats is not None:
            s = event.stats
            out.append(Line(f"restored webroot of {where} from {event.region} into {event.into}: "
                            f"{s.files} files, {s.dirs} directories, {s.links} links; {read}"))
        else:
            out.append(Line(f"restored {event.artifact} of {where} from {event.region} into "
                            f"{event.into!r}: {read}"))
    return out


def _failed_attempt(event: FailedAttempt) -> str:
    at = "" if event.at is None else f" at byte {event.at}"
    if event.last:
        then = "no region left"
    elif event.at is None:
        then = "trying the next region"
    else:
        then = "resuming there from the next region"
    return f"streamer: {event.artifact} from {event.region} failed{at}: {event.error}; {then}"


def verify_lines(report: VerifyReport) -> list[Line]:
    out: list[Line] = []
    where = f"{report.what}/{report.stamp}"
    for c in report.checks:
        if c.ok:
            assert c.manifest is not None
            arts = ", ".join(f"{a.name} {a.stored_size / 1e6:.1f} MB"
                             for a in c.manifest.artifacts.values())
            rate = c.verified_bytes / 1e6 / max(c.seconds, 1e-9)
            out.append(Line(f"{c.client.label}: ok: {where}: {arts}; sha256 verified "
                            f"in {c.seconds:.2f} s ({rate:.0f} MB/s)"))
        else:
            out.append(Line(f"{c.client.label}: BAD: {where}: {c.problem}"))
    if report.bad:
        out.append(Line("streamer: verify failed: "
                        + "; ".join(f"{c.client.label}: {c.problem}" for c in report.bad), err=True))
    return out


# ---------------------------------------------------------------- list


def run_record(run: RunListing, now: datetime) -> dict[str, Any]:
    return {"build": run.build, "periodicity": run.periodicity.value, "stamp": run.stamp,
            "age_seconds": int((now - run.when).total_seconds()), "size": run.size,
            "artifacts": run.artifact_sizes(),
            **({"previous_copy": True} if run.key_suffix else {})}


def _run_id_record(run: RunId) -> dict[str, str]:
    return {"build": run.build, "periodicity": run.periodicity.value, "stamp": run.stamp}


def _missing_records(result: ListResult) -> list[dict[str, Any]]:
    """Every run some region lacks, and those regions (``list --json``'s "missing")."""
    lacking: dict[RunId, list[int]] = {}
    for r in result.regions:
        for rid in r.lacks:
            lacking.setdefault(rid, []).append(r.index)
    return [{**_run_id_record(rid), "regions": sorted(idx)}
            for rid, idx in sorted(lacking.items(), key=lambda kv: str(kv[0]), reverse=True)]


def list_lines(result: ListResult, json_out: bool) -> list[Line]:
    out: list[Line] = []
    if json_out:
        out.append(Line(json.dumps({"regions": [
            {"index": r.index, "endpoint": r.endpoint, "ok": r.error is None, "error": r.error,
             "backups": [run_record(run, result.now) for run in r.runs],
             "lacks": [_run_id_record(run) for run in r.lacks]}
            for r in result.regions], "missing": _missing_records(result)}, indent=2)))
    else:
        for r in result.regions:
            if r.error is not None:
                out.append(Line(f"{r.label}: unreachable: {r.error}"))
                continue
            out.append(Line(f"{r.label}: {len(r.runs)} committed backup"
                            f"{'s' if len(r.runs) != 1 else ''}"))
            for run in r.runs:
                arts = "  ".join(f"{name} {_mb(size)}"
                                 for name, size in sorted(run.artifact_sizes().items()))
                mark = "  (previous copy, .BACKUP)" if run.key_suffix else ""
                when = age((result.now - run.when).total_seconds())
                out.append(Line(f"  {run.build}/{run.periodicity.value}/{run.stamp}  age {when}"
                                f"  {arts}  total {_mb(run.size)}{mark}"))
            out.extend(Line(f"  lacks {rid}, which another region holds (`streamer heal` copies it)")
                       for rid in r.lacks)
    if result.errors:
        out.append(Line("streamer: list incomplete: " + "; ".join(result.errors), err=True))
    return out


# ---------------------------------------------------------------- heal


def heal_lines(result: HealResult, quiet_if_nothing: bool = False) -> list[Line]:
    """What ``heal`` (or a backup's heal) copied, and what is still missing where.
    ``quiet_if_nothing``: nothing at all when there was nothing to do."""
    out: list[Line] = []
    label = result.labels.get
    for c in result.copies:
        why = "" if c.copy.reason == "missing" else f" (its copy was damaged: {c.copy.reason})"
        if c.ok:
            assert c.source is not None
            out.append(Line(f"heal {c.copy.run}: {label(c.copy.target)} <- {label(c.source)}: "
                            f"{_rate(c.bytes, c.seconds)}{why}"))
        else:
            out.append(Line(f"heal {c.copy.run}: {label(c.copy.target)} still lacks it{why}: "
                            + "; ".join(c.failures), err=True))
    for u in result.unhealable:
        out.append(Line(f"heal {u.run}: {label(u.target)} lacks it ({u.reason}) and no region "
                        "that answered holds it intact", err=True))
    for index, error in sorted(result.unreachable.items()):
        out.append(Line(f"heal: {label(index)} not healed: {error}", err=True))
    if result.limit_reached:
        out.append(Line(f"heal: stopped at the limit ({result.limit:.0f} s, STREAMER_HEAL_LIMIT); "
                        "the rest is healed next time", err=True))
    if quiet_if_nothing and not out:
        return out
    copied = sum(c.bytes for c in result.healed)
    out.append(Line(f"heal: {result.runs_checked} committed run(s) checked, {len(result.healed)} "
                    f"cop{'y' if len(result.healed) == 1 else 'ies'} made ({_mb(copied)}), "
                    f"memory peak {_mb(result.budget_peak)} of {_mb(result.budget_limit)}"))
    return out


def assets_lines(result: AssetsResult) -> list[Line]:
    """What ``streamer assets`` (or a backup's assets copy) did."""
    t = result.tally
    out = [Line(f"assets: {t.objects} object(s) in region 1, {t.copies} cop"
                f"{'y' if t.copies == 1 else 'ies'} made ({_mb(t.copied_bytes)}), "
                f"{t.checked} checked by metadata, {t.purged} purged, "
                f"{result.seconds:.1f} s, memory peak {_mb(result.budget_peak)}")]
    for bucket, key, since in t.deleted_sample:
        out.append(Line(f"assets: {bucket}/{key}: deleted at source since {since}, kept"))
    if t.kept_deleted > len(t.deleted_sample):
        out.append(Line(f"assets: {t.kept_deleted - len(t.deleted_sample)} more deleted at "
                        "source, kept"))
    if t.changed_meanwhile:
        out.append(Line(f"assets: {t.changed_meanwhile} object(s) changed at the source during "
                        "the run; the next run copies them", err=True))
    for index, why in sorted(t.dropped.items()):
        out.append(Line(f"assets: {result.labels.get(index)} dropped: {why}", err=True))
    where = ", ".join(str(i) for i in result.index_regions) or "no region"
    out.append(Line(f"assets: index {result.index_key} written in region(s) {where}"))
    return out


def assets_restore_lines(report: AssetsRestoreReport) -> list[Line]:
    out = [Line(f"restore --assets: {b} -> region 1 {d}") for b, d in report.buckets.items()]
    out += [Line(f"restore --assets: {f}", err=True) for f in report.failed[:50]]
    out.append(Line(f"restore --assets: index {report.index_key}: {report.restored} restored, "
                    f"{report.present} already there, {len(report.failed)} failed",
                    err=bool(report.failed)))
    return out


# ---------------------------------------------------------------- prune, cleanup


def prune_lines(result: PruneResult, quiet_if_nothing: bool = False) -> list[Line]:
    """``quiet_if_nothing``: only the series that lost a run (after a backup)."""
    if result.skipped is not None:
        return [Line(result.skipped)]
    out: list[Line] = []
    for p in result.pruned:
        r = p.report
        out.extend(Line(f"warning: retention {p.series}: {r.region}: kept {stamp}, under Object "
                        f"Lock until {until:%Y-%m-%d %H:%M}Z", err=True) for stamp, until in r.locked)
        if quiet_if_nothing and not r.removed:
            continue
        removed = f", removed {len(r.removed)}: {' '.join(r.removed)}" if r.removed else ", removed none"
        out.append(Line(f"retention {p.series} (keep {p.keep}): {r.region}: kept {len(r.kept)}{removed}"))
    if result.errors:
        out.append(Line("streamer: retention incomplete: " + "; ".join(result.errors), err=True))
    return out


def cleanup_region_lines(done: SeriesCleanup, quiet_if_nothing: bool = False) -> list[Line]:
    """One line per region that answered (``quiet_if_nothing``: that did something)."""
    out: list[Line] = []
    if not done.holding_lock:
        out.append(Line(f"cleanup {done.series}: lock not taken ({done.lock_message}); only what "
                        f"is older than {done.horizon / 3600:g} h is cleaned"))
    for r in done.reports:
        if quiet_if_nothing and not r.aborted and not r.deleted_runs:
            continue
        runs = f"{len(r.deleted_runs)} abandoned run(s) {' '.join(r.deleted_runs)}" \
            if r.deleted_runs else "no abandoned runs"
        out.append(Line(f"cleanup {done.series}: {r.region}: aborted {r.aborted} unfinished "
                        f"upload(s), removed {runs}"))
    return out


def cleanup_lines(result: CleanupResult) -> list[Line]:
    out = [line for done in result.series for line in cleanup_region_lines(done)]
    if result.problems:
        out.append(Line("streamer: cleanup incomplete: " + "; ".join(result.problems), err=True))
    return out
