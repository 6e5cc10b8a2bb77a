"""``--on-success CMD`` / ``--on-failure CMD``: run a shell command after a backup.

The command runs as ``/bin/sh -c CMD`` in its own process group, with the
JSON summary on stdin and the environment of streamer minus its secrets, plus
``STREAMER_EXIT_CODE``, ``STREAMER_STATUS``, ``STREAMER_BUILD``,
``STREAMER_PERIODICITY`` and ``STREAMER_STAMP``.  Its output (stdout and
stderr together) is captured; the last lines are kept for the report.

A hook that fails, hangs past its timeout (its whole process group is then
killed) or cannot be started is reported in the returned ``HookOutcome``;
``run_hook`` never raises for it and never changes the backup's exit code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from streamer.process import SECRET_ENV, Child

TAIL_LINES = 20
TAIL_BYTES = 8192
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a timed-out hook's group
DRAIN_AFTER_EXIT = 1.0  # seconds to wait for output after the shell exited

HookStatus = Literal["ok", "failed", "timed_out", "not_started"]


@dataclass(frozen=True)
class HookOutcome:
    """What a hook did.  ``exit_code`` is negative when a signal ended it."""

    status: HookStatus
    exit_code: int | None
    duration: float
    timeout: float
    output_tail: str = ""
    error: str | None = None  # why it could not be started

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self, name: str = "hook") -> str:
        """One line for the log, e.g. ``on-failure hook failed: exit 3: mail: no route``."""
        if self.status == "ok":
            return f"{name} ok ({self.duration:.1f} s)"
        if self.status == "timed_out":
            text = f"{name} timed out after {self.timeout:g} s and was killed"
        elif self.status == "not_started":
            text = f"{name} could not be started: {self.error}"
        elif self.exit_code is not None and self.exit_code < 0:
            text = f"{name} failed: killed by signal {-self.exit_code}"
        else:
            text = f"{name} failed: exit {self.exit_code}"
        last = self.last_line
        return f"{text}: {last}" if last else text

    @property
    def last_line(self) -> str:
        lines = [ln.strip() for ln in self.output_tail.splitlines() if ln.strip()]
        return lines[-1] if lines else ""


def hook_kind(exit_code: int) -> Literal["success", "failure"] | None:
    """Which hook a run's exit code calls: ``--on-success`` for 0, none for 4
    (skipped: another host of the build holds the lock, the normal case on all
    but one webserver), ``--on-failure`` for everything else (1, 2, 3, 130)."""
    if exit_code == 0:
        return "success"
    if exit_code == 4:
        return None
    return "failure"


def hook_environment(summary: Mapping[str, Any],
                     environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """streamer's environment without secrets, plus the run's outcome."""
    source = os.environ if environ is None else environ
    env = {k: v for k, v in source.items() if k not in SECRET_ENV}
    env["STREAMER_EXIT_CODE"] = str(summary.get("exit_code", ""))
    env["STREAMER_STATUS"] = str(summary.get("status", ""))
    env["STREAMER_BUILD"] = str(summary.get("build", ""))
    env["STREAMER_PERIODICITY"] = str(summary.get("periodicity", ""))
    env["STREAMER_STAMP"] = str(summary.get("stamp") or "")
    return env


def _tail(data: bytes) -> str:
    text = data[-TAIL_BYTES:].decode(errors="replace")
    return "\n".join(text.splitlines()[-TAIL_LINES:])


async def _read_into(fd: int, buf: bytearray) -> None:
    """Read a non-blocking pipe to EOF, keeping only its tail."""
    while True:
        await anyio.wait_readable(fd)
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not data:
            return
        buf += data
        del buf[:-TAIL_BYTES * 2]


async def _feed(fd: int, data: bytes) -> None:
    """Write the summary to a non-blocking pipe; a hook need not read it."""
    view = memoryview(data)
    try:
        while view:
            await anyio.wait_writable(fd)
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                continue
    except OSError:  # EPIPE: the hook exited or closed its stdin
        pass
    finally:
        os.close(fd)


# The timeout is part of the hook's contract (its process group is killed),
# not a cancellation the caller could impose from outside.
async def run_hook(command: str, summary: Mapping[str, Any], *, timeout: float = 60,  # noqa: ASYNC109
                   environ: Mapping[str, str] | None = None) -> HookOutcome:
    """Run ``/bin/sh -c command`` with the JSON summary on stdin; never raises for the hook.

    ``environ`` replaces ``os.environ`` as the base environment (secrets are
    stripped from it either way)."""
    data = (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()
    started = time.monotonic()
    try:
        child = Child.spawn(["/bin/sh", "-c", command], env=hook_environment(summary, environ),
                            replace_env=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    except OSError as e:
        return HookOutcome("not_started", None, time.monotonic() - started, timeout,
                           error=e.strerror or str(e))
    proc = child.proc
    assert proc.stdin is not None and proc.stdout is not None
    in_fd, out_fd = os.dup(proc.stdin.fileno()), os.dup(proc.stdout.fileno())
    proc.stdin.close()
    proc.stdout.close()
    os.set_blocking(in_fd, False)
    os.set_blocking(out_fd, False)
    output = bytearray()
    try:
        timed_out = await _run(child, in_fd, out_fd, data, output, timeout)
    finally:
        os.close(out_fd)
        if proc.poll() is None:  # cancelled from outside: leave nothing behind
            child.kill(signal.SIGKILL, group=True)
            proc.wait()
    duration = time.monotonic() - started
    code = proc.returncode
    tail = _tail(bytes(output))
    if timed_out:
        return HookOutcome("timed_out", code, duration, timeout, tail)
    if code == 0:
        return HookOutcome("ok", 0, duration, timeout, tail)
    return HookOutcome("failed", code, duration, timeout, tail)


async def _run(child: Child, in_fd: int, out_fd: int, data: bytes, output: bytearray,
               timeout: float) -> bool:  # noqa: ASYNC109  (the hook's own contract)
    """Feed the summary, collect the output, wait for the shell; returns
    whether it timed out (its process group is then ended: TERM, then KILL)."""
    timed_out = False
    async with anyio.create_task_group() as tg:
        done_reading = anyio.Event()

        async def read() -> None:
            try:
                await _read_into(out_fd, output)
            finally:
                done_reading.set()

        tg.start_soon(_feed, in_fd, data)
        tg.start_soon(read)
        with anyio.move_on_after(timeout) as scope:
            await child.wait()
        if scope.cancelled_caught:
            timed_out = True
            child.kill(signal.SIGTERM, group=True)
            with anyio.move_on_after(KILL_GRACE):
                await child.wait()
            child.kill(signal.SIGKILL, group=True)
            await child.wait()
        # The shell is gone; a background child may still hold the output
        # pipe.  Give it a moment, then end what is left of the group.
        with anyio.move_on_after(DRAIN_AFTER_EXIT):
            await done_reading.wait()
        if not done_reading.is_set():
            child.kill(signal.SIGKILL, group=True)
        tg.cancel_scope.cancel()
    return timed_out
