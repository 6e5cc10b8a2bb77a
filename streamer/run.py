"""Commands as async functions: what the CLI runs once config is parsed."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from .backup import BackupResult, Observer, run_backup
from .config import Config, Periodicity
from .errors import EXIT_FAILED
from .progress import LogProgress, TerminalProgress
from .sources import ProcessSource


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def print_result(result: BackupResult) -> None:
    for art in result.artifacts:
        if not art.finished:
            continue
        secs = max(art.finished - art.started, 1e-9)
        rate = art.source_bytes / secs / 1e6
        print(f"{art.name}: {_mb(art.source_bytes)} read, {_mb(art.stored_bytes)} stored in "
              f"{art.parts} parts, {rate:.1f} MB/s, sha256 {art.sha256[:16]}")
    for r in result.regions:
        line = f"region {r.index} ({r.endpoint}): {r.status}"
        if r.error:
            line += f": {r.error}"
        print(line)
    for w in result.warnings:
        print(f"warning: {w}")
    if result.exit_code != EXIT_FAILED:
        print(f"committed {result.build}/{result.periodicity}/{result.stamp} in "
              f"{len(result.committed)} of {len(result.regions)} regions")


def make_observer(config: Config, quiet: bool = False) -> Observer | None:
    """A live table on a terminal, plain progress lines off it, nothing when quiet."""
    if quiet:
        return None
    if sys.stderr.isatty():
        return TerminalProgress()
    return LogProgress(config.progress_interval)


async def backup_command(config: Config, periodicity: Periodicity, build: str) -> int:
    async with contextlib.AsyncExitStack() as stack:
        extra: list[tuple[ProcessSource, dict[str, Any]]] = []
        if config.database.engine != "none":
            from .database import prepare_dump

            dump = await stack.enter_async_context(prepare_dump(config.database))
            extra.append((dump.source, dump.info.to_manifest()))
        result = await run_backup(config, periodicity, build, extra_sources=extra,
                                  observer=make_observer(config))
    try:
        print_result(result)
    except BrokenPipeError:
        pass  # stdout went away (a closed pipe): the backup's own result stands
    if result.error:
        print(f"streamer: backup failed: {result.error} "
              "(nothing new committed; earlier backups untouched)", file=sys.stderr)
    return result.exit_code


async def config_check_command(config: Config, create_buckets: bool, json_out: bool) -> int:
    """The effective config (secrets masked) and a probe of each region and the database."""
    import json

    from .backup import open_regions
    from .check import run_checks
    from .errors import EXIT_OK, EXIT_USAGE

    async with open_regions(config) as clients:
        findings = await run_checks(config, clients, create_buckets)
    problems = [f for f in findings if not f.ok]
    if json_out:
        print(json.dumps({"config": config.describe(),
                          "checks": [f.__dict__ for f in findings],
                          "ok": not problems}, indent=2))
    else:
        print(json.dumps(config.describe(), indent=2))
        width = max(len(f"{f.subject} {f.check}") for f in findings)
        for f in findings:
            mark = "ok  " if f.ok else "FAIL"
            print(f"{mark} {(f.subject + ' ' + f.check).ljust(width)}  {f.detail}")
    for f in problems:
        print(f"streamer: config check: {f.subject}: {f.check}: {f.detail}", file=sys.stderr)
    return EXIT_USAGE if problems else EXIT_OK
