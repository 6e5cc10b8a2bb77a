"""Progress of a running backup: a live table on a terminal, plain lines elsewhere.

``snapshot`` reads the pipeline's counters (no I/O); the two observers only
render it.  Both are ``backup.Observer``s, run in the backup's task group and
cancelled when the streams end.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

import anyio
from rich.table import Table

from streamer.pipeline.fanout import ArtifactRun, Fanout
from streamer.pipeline.upload_state import Decision

MB = 1e6


@dataclass(frozen=True)
class Row:
    artifact: str
    region: int
    endpoint: str
    status: str  # "uploading" | "ready" | "failed" | "waiting"
    acked_bytes: int
    rate: float  # bytes per second since the artifact started
    outstanding: int  # parts queued or in flight for this artifact and region
    in_flight: int  # requests in flight for this region, all artifacts
    retries: int


@dataclass(frozen=True)
class Snapshot:
    elapsed: float
    rows: list[Row]
    read_bytes: dict[str, int]  # source bytes read so far, per artifact
    memory_used: int
    memory_peak: int
    memory_limit: int


def snapshot(fanout: Fanout, artifacts: list[ArtifactRun], now: float | None = None) -> Snapshot:
    now = time.monotonic() if now is None else now
    started = min((a.started for a in artifacts if a.started), default=now)
    rows: list[Row] = []
    regions = {r.index: r for r in fanout.regions}
    for art in artifacts:
        secs = max(now - art.started, 1e-6) if art.started else 1e-6
        for index, state in sorted(art.states.items()):
            region = regions[index]
            decision = state.decision()
            if not region.alive or decision is Decision.ABORT:
                status = "failed"
            elif decision is Decision.READY:
                status = "ready"
            elif state.upload_id is None:
                status = "waiting"
            else:
                status = "uploading"
            acked = state.acked_bytes
            rows.append(Row(art.name, index, region.client.endpoint, status, acked,
                            acked / secs, state.outstanding, region.in_flight, state.retries))
    read = {a.name: (a.filler.source_bytes if a.filler is not None else a.source_bytes)
            for a in artifacts}
    return Snapshot(now - started, rows, read, fanout.budget.used, fanout.budget.peak,
                    fanout.budget.limit)


def format_lines(snap: Snapshot) -> list[str]:
    """Plain, control-character-free lines: one per artifact and region, one for memory."""
    lines = [
        f"progress {r.artifact} region {r.region}: {r.status}, {r.acked_bytes / MB:.1f} MB sent, "
        f"{r.rate / MB:.1f} MB/s, {r.outstanding} parts pending, {r.in_flight} in flight, "
        f"{r.retries} retries"
        for r in snap.rows
    ]
    read = ", ".join(f"{name} {n / MB:.1f} MB" for name, n in snap.read_bytes.items())
    lines.append(f"progress {snap.elapsed:.0f}s: read {read}; memory "
                 f"{snap.memory_used / 2**20:.0f} of {snap.memory_limit / 2**20:.0f} MiB "
                 f"(peak {snap.memory_peak / 2**20:.0f})")
    return lines


class LogProgress:
    """Off a terminal: a block of plain lines every ``interval`` seconds."""

    def __init__(self, interval: float = 5.0, out: TextIO | None = None) -> None:
        self.interval = interval
        self.out = out or sys.stdout

    async def watch(self, fanout: Fanout, artifacts: list[ArtifactRun]) -> None:
        while True:
            await anyio.sleep(self.interval)
            for line in format_lines(snapshot(fanout, artifacts)):
                print(line, file=self.out, flush=True)


class TerminalProgress:
    """On a terminal: a live rich table per artifact and region."""

    def __init__(self, refresh: float = 0.25) -> None:
        self.refresh = refresh

    async def watch(self, fanout: Fanout, artifacts: list[ArtifactRun]) -> None:
        from rich.console import Console
        from rich.live import Live

        with Live(console=Console(stderr=True), auto_refresh=False, transient=True) as live:
            while True:
                live.update(self._table(snapshot(fanout, artifacts)), refresh=True)
                await anyio.sleep(self.refresh)

    @staticmethod
    def _table(snap: Snapshot) -> Table:

        read = ", ".join(f"{name} {n / MB:.1f} MB read" for name, n in snap.read_bytes.items())
        table = Table(title=f"streamer {snap.elapsed:.0f}s — {read} — memory "
                      f"{snap.memory_used / 2**20:.0f}/{snap.memory_limit / 2**20:.0f} MiB")
        for col in ("artifact", "region", "status", "sent MB", "MB/s", "pending", "in flight",
                    "retries"):
            table.add_column(col, justify="left" if col in ("artifact", "status") else "right")
        for r in snap.rows:
            table.add_row(r.artifact, f"{r.region} {r.endpoint}", r.status,
                          f"{r.acked_bytes / MB:.1f}", f"{r.rate / MB:.1f}", str(r.outstanding),
                          str(r.in_flight), str(r.retries))
        return table
