"""Progress of a running backup: a live table on a terminal, plain lines elsewhere.

The pipeline takes the snapshots (``streamer.model.Progress``, no I/O); the
two observers here only render them.  Both are ``model.Observer``s, run in
the backup's task group and cancelled when the streams end.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

import anyio

from streamer.model import Progress

if TYPE_CHECKING:
    from rich.table import Table

MB = 1e6


def format_lines(snap: Progress) -> list[str]:
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

    async def watch(self, progress: Callable[[], Progress]) -> None:
        while True:
            await anyio.sleep(self.interval)
            for line in format_lines(progress()):
                print(line, file=self.out, flush=True)


class TerminalProgress:
    """On a terminal: a live rich table per artifact and region."""

    def __init__(self, refresh: float = 0.25) -> None:
        self.refresh = refresh

    async def watch(self, progress: Callable[[], Progress]) -> None:
        from rich.console import Console  # on a terminal only (start-up time)
        from rich.live import Live

        with Live(console=Console(stderr=True), auto_refresh=False, transient=True) as live:
            while True:
                live.update(self._table(progress()), refresh=True)
                await anyio.sleep(self.refresh)

    @staticmethod
    def _table(snap: Progress) -> Table:
        from rich.table import Table

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
