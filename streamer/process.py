"""Child processes: the one way streamer runs tar, the dumps, the database clients and hooks.

A ``ProcessSource`` says how to start a source (argv, extra environment, which
exit codes are warnings).  Secrets travel in ``env`` (merged onto the inherited
environment) or in files, never in ``argv``.

A ``Child`` is a started process:

* it runs in a session of its own, so a Ctrl-C at the terminal reaches
  streamer only, and streamer decides when the child dies (``kill``, which can
  end the whole process group, as a hook's backgrounded children need);
* the tail of its stderr is kept by one reader thread (``start_tail``) -- a
  child that writes much to stderr can never block on a full pipe;
* it is waited for without holding a worker thread where the kernel has pidfds
  (``wait``);
* ``supervise`` runs the work that feeds or drains it and kills the child if
  that work fails or is cancelled, so a thread blocked on its pipe returns;
* ``exit_text`` / ``last_line`` give the one-line verdict the errors quote.

subprocess.Popen rather than the event loop's spawn: uvloop leaves its copies
of a child's pipes open in the child's own children (a backgrounded grandchild
would hold the pipe open), and fork+exec is quick enough to do inline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TypeVar

import anyio

T = TypeVar("T")

TAIL_BYTES = 8192  # of stderr kept for the error message


@dataclass(frozen=True)
class ProcessSource:
    name: str  # "webroot" or "database"
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    # Exit codes that still produce a complete stream but deserve a warning in
    # the manifest (GNU tar 1: "file changed as we read it").
    warn_exit_codes: frozenset[int] = frozenset()
    # Human description of a warning exit code, recorded in the manifest.
    warn_text: str = ""
    # The source writes a listing, one line per member, to the file
    # descriptor that replaces "{listing_fd}" in argv; its lines are counted.
    listing: bool = False


def exit_text(code: int) -> str:
    """How a child ended, as the error messages say it."""
    return f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"


# Credentials streamer itself uses: no source or client inherits them from
# streamer's environment (pg_dump is given its PGPASSWORD explicitly, from
# DB_PASSWORD, in ``env``).  An operator's own PGPASSWORD or MYSQL_PWD is left
# to the database clients that read it; hooks get none of SECRET_ENV.
STREAMER_SECRETS = frozenset({
    "S3_SECRET_KEY", "S3_ACCESS_KEY", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN",
    "STREAMER_AGE_IDENTITY",  # where the key to every backup lies: no child needs to know
})
SECRET_ENV = STREAMER_SECRETS | {"PGPASSWORD", "MYSQL_PWD"}


def lower_priority(nice: int, io_class: int, io_level: int) -> None:
    """Lower the CPU and IO priority of every thread of this process (STREAMER_NICE).

    Linux keeps both per thread, and a new thread or child copies its
    creator's: called before the run starts, it covers streamer's own
    threads (the producer, the zstd workers, the event loop) and every child
    (tar, the dump, hooks) alike.  ``nice`` only ever rises (lowering it
    needs privileges); ``io_class`` 2 (best-effort, at ``io_level``) or 3
    (idle) is set with util-linux's ``ionice``.  Raises OSError if that fails."""
    threads = [int(t) for t in os.listdir("/proc/self/task")]
    if nice:
        for tid in threads:
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.setpriority(os.PRIO_PROCESS, tid,
                               max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
    if io_class:
        level = ["-n", str(io_level)] if io_class == 2 else []
        done = subprocess.run(["ionice", "-c", str(io_class), *level, "-p",
                               *map(str, threads)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise OSError(f"ionice {exit_text(done.returncode)}: {done.stderr.strip()}")


def inherited_environment() -> dict[str, str]:
    """streamer's environment without its own secrets."""
    return {k: v for k, v in os.environ.items() if k not in STREAMER_SECRETS}


class Child:
    """One running child process (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._tail = b""
        self._tail_thread: threading.Thread | None = None

    @classmethod
    def spawn(cls, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              replace_env: bool = False, cwd: str | None = None,
              stdin: int | None = subprocess.DEVNULL, stdout: int | None = subprocess.PIPE,
              stderr: int | None = subprocess.PIPE, pass_fds: Sequence[int] = ()) -> Child:
        """Start ``argv`` in its own session; ``env`` is merged onto streamer's
        environment without its secrets (or is the whole environment with
        ``replace_env``).  Raises OSError if it cannot start."""
        environment = dict(env or {}) if replace_env else {**inherited_environment(),
                                                             **(env or {})}
        proc = subprocess.Popen(
            list(argv), stdin=stdin, stdout=stdout, stderr=stderr, env=environment, cwd=cwd,
            start_new_session=True, close_fds=True, pass_fds=tuple(pass_fds))
        return cls(proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    # ---------------------------------------------------------------- stderr

    def start_tail(self, stream: IO[bytes] | None = None) -> None:
        """Read ``stream`` (default: the child's stderr) to EOF in a daemon
        thread, keeping its last ``TAIL_BYTES``; closes it at EOF."""
        stream = stream if stream is not None else self.proc.stderr
        assert stream is not None

        def run() -> None:
            held = b""
            with contextlib.suppress(OSError, ValueError):
                while True:
                    data = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
                    if not data:
                        break
                    held = (held + data)[-TAIL_BYTES:]
            self._tail = held
            with contextlib.suppress(OSError):
                stream.close()

        self._tail_thread = threading.Thread(target=run, name=f"tail-{self.pid}", daemon=True)
        self._tail_thread.start()

    async def tail_done(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109  (a bound, not a deadline)
        """Wait (at most ``timeout`` s) until the stderr reader reached EOF."""
        thread = self._tail_thread
        if thread is not None and thread.is_alive():
            await anyio.to_thread.run_sync(thread.join, timeout, abandon_on_cancel=True)

    def join_tail(self, timeout: float = 10.0) -> None:
        """``tail_done`` outside an event loop (pipeline/early.py: a source given up)."""
        if self._tail_thread is not None:
            self._tail_thread.join(timeout)

    @property
    def tail(self) -> str:
        return self._tail.decode(errors="replace")

    def last_line(self, ignore: str = "") -> str:
        """The last non-empty line of stderr (skipping lines containing ``ignore``)."""
        lines = [ln for ln in self.tail.strip().splitlines()
                 if ln.strip() and not (ignore and ignore in ln)]
        return lines[-1].strip() if lines else ""

    # ---------------------------------------------------------------- exit

    async def wait(self) -> int:
        """The exit code; a pidfd where the kernel has them, else a worker thread."""
        try:
            pidfd = os.pidfd_open(self.proc.pid)
        except (OSError, AttributeError):
            return await anyio.to_thread.run_sync(self.proc.wait, abandon_on_cancel=True)
        try:
            while self.proc.poll() is None:
                await anyio.wait_readable(pidfd)
        finally:
            os.close(pidfd)
        return self.proc.returncode

    def kill(self, sig: int = signal.SIGKILL, group: bool = False) -> None:
        """Signal the child (or its whole process group); a child already gone is fine."""
        if self.proc.poll() is not None and not group:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)

    async def reap(self) -> int:
        """Kill the child if it still runs and wait for it; shielded from cancellation."""
        code = self.proc.poll()
        with anyio.CancelScope(shield=True):
            if code is None:
                self.kill()
                code = await self.wait()
        assert code is not None
        return code

    async def supervise(self, work: Awaitable[T]) -> T:
        """Await ``work``, then the child's exit.  If the work fails or is
        cancelled the child is killed at once -- a worker thread blocked
        writing to it then returns, so the cancellation can complete -- and
        the error is re-raised."""
        errors: list[Exception] = []
        results: list[T] = []
        finished = False
        async with anyio.create_task_group() as tg:
            async def guard() -> None:
                try:
                    await anyio.sleep_forever()
                finally:
                    if not finished:
                        self.kill()

            tg.start_soon(guard)
            try:
                results.append(await work)
                finished = True
            except Exception as e:  # re-raised below, outside the task group
                errors.append(e)
            finally:
                tg.cancel_scope.cancel()
        if errors:
            self.kill()
        with anyio.CancelScope(shield=True):
            await self.wait()  # on success: until it has finished its input
        if errors:
            raise errors[0]
        return results[0]
