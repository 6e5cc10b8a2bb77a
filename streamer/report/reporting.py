"""What a backup reports when it ends: the JSON summary, the metrics file, the hooks.

Settings (flag > environment > config file, like every other setting):

``STREAMER_METRICS_FILE``   Prometheus textfile-collector file, rewritten atomically
``STREAMER_ON_SUCCESS``     command run with ``/bin/sh -c`` after exit 0
``STREAMER_ON_FAILURE``     command run after exit 1, 2, 3 or 130 (not 4: skipped)
``STREAMER_HOOK_TIMEOUT``   seconds a hook may run (default 60)

A hook gets the JSON summary on stdin.  Neither a failing hook nor an
unwritable metrics file changes the backup's exit code: each is reported on
stderr as a warning.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from streamer.report.hooks import hook_kind, run_hook
from streamer.report.metrics import try_write_metrics
from streamer.settings.values import parse_float


@dataclass(frozen=True)
class ReportConfig:
    json: bool = False  # print the summary on stdout (and nothing else there)
    quiet: bool = False  # errors only
    metrics_file: Path | None = None
    on_success: str = ""
    on_failure: str = ""
    hook_timeout: float = 60.0


def parse_reporting(settings: Mapping[str, str], *, json_out: bool = False,
                    quiet: bool = False) -> ReportConfig:
    metrics = settings.get("STREAMER_METRICS_FILE", "")
    return ReportConfig(
        json=json_out,
        quiet=quiet or json_out,
        metrics_file=Path(metrics) if metrics else None,
        on_success=settings.get("STREAMER_ON_SUCCESS", ""),
        on_failure=settings.get("STREAMER_ON_FAILURE", ""),
        hook_timeout=parse_float("STREAMER_HOOK_TIMEOUT", settings.get("STREAMER_HOOK_TIMEOUT", "60")),
    )


def finish(report: ReportConfig, summary: Mapping[str, Any], exit_code: int) -> None:
    """Print the JSON summary, write the metrics file, run the hook; never raises."""
    if report.json:
        try:
            print(json.dumps(summary, indent=2, sort_keys=True), flush=True)
        except BrokenPipeError:
            pass
    if report.metrics_file is not None:
        warning = try_write_metrics(report.metrics_file, summary)
        if warning:
            print(f"streamer: warning: {warning}", file=sys.stderr)
    kind = hook_kind(exit_code)
    command = {"success": report.on_success, "failure": report.on_failure}.get(kind or "", "")
    if command:
        async def hook() -> None:
            outcome = await run_hook(command, summary, timeout=report.hook_timeout)
            if not outcome.ok:
                print(f"streamer: warning: {outcome.describe(f'on-{kind} hook')}", file=sys.stderr)

        anyio.run(hook, backend="asyncio", backend_options={"use_uvloop": True})
