"""Commands as async functions: what the CLI runs once config is parsed."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from .backup import BackupResult, run_backup
from .config import Config, Periodicity
from .errors import EXIT_FAILED
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


async def backup_command(config: Config, periodicity: Periodicity, build: str) -> int:
    async with contextlib.AsyncExitStack() as stack:
        extra: list[tuple[ProcessSource, dict[str, Any]]] = []
        if config.database.engine != "none":
            from .database import prepare_dump

            dump = await stack.enter_async_context(prepare_dump(config.database))
            extra.append((dump.source, dump.info.to_manifest()))
        result = await run_backup(config, periodicity, build, extra_sources=extra)
    print_result(result)
    if result.error:
        print(f"streamer: backup failed: {result.error} "
              "(nothing new committed; earlier backups untouched)", file=sys.stderr)
    return result.exit_code
