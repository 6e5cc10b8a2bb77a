"""The command line's machinery: help texts, settings, the event loop, one-line errors.

cli.py declares the commands with typer; this module holds what they share:
``load_settings`` (flag > environment > config file), ``run_async`` (asyncio
with uvloop, SIGINT/SIGTERM cancel the work) and ``guarded`` (a user-facing
failure is one line and its exit code; the traceback only with --debug).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import anyio
import typer

from streamer import __version__
from streamer.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, ConfigError, StreamerError
from streamer.model import Periodicity, parse_build_identifier
from streamer.process import lower_priority
from streamer.settings.config import Config, parse_config
from streamer.settings.security import plain_http_warnings
from streamer.settings.values import load_file, merge_sources

if TYPE_CHECKING:  # imported by early_started, once a backup's settings are valid
    from streamer.pipeline.early import EarlySource

T = TypeVar("T")

EXIT_CODES_HELP = """\b
Exit codes:
  0    committed in every region
  1    failed: nothing new committed anywhere (earlier backups untouched)
  2    usage or configuration error, found before any upload started
  3    partial: committed in at least --quorum regions but not all
  4    skipped: another host holds the backup lock for this build and periodicity
  130  interrupted (SIGINT/SIGTERM); in-flight uploads aborted"""

ENV_HELP = """\b
Environment (flag > environment > config file > default):
  S3_HOST_BASE        endpoints, one per region, separated by | or :
  S3_ACCESS_KEY       access key(s), one for all or one per region (|)
  S3_SECRET_KEY       secret key(s), likewise
  S3_LOCATION         region name(s), default us-east-1
  STREAMER_BUCKET     bucket (default WEBSITE_URL with . -> -, plus -backups)
  STREAMER_WEBROOT    webroot, default /var/www/html
  EXCLUDE_FROM_BACKUP, DIRECTORIES_TO_MOUNT   :-separated paths below the webroot
  PERSIST_ASSETS_TO_DATASTORE   1: exclude every mount point below the webroot
  DATABASE_INSTALLATION_TYPE    Maria, MySQL, Postgres or None
  DB_HOST DB_PORT DB_USERNAME DB_PASSWORD DB_NAME   database connection
  STREAMER_MEMORY_BUDGET        default 256MiB
  STREAMER_COMPRESSION          zstd (default), gzip, none; STREAMER_COMPRESSION_LEVEL
                                (auto: zstd's level follows the bottleneck; or a number)
  STREAMER_QUORUM     regions that must commit (N or all), default 1: commit wherever possible
  STREAMER_STALL_TIMEOUT        seconds without progress before a region is dropped (300)
  STREAMER_LAG_LIMIT  seconds the others may wait on one slow region alone before it is dropped (300; 0 off)
  STREAMER_CHECKSUM   md5 (default: Content-MD5), sha256 (signed payload), crc32
  STREAMER_COMPRESSION_THREADS  zstd worker threads (0: in the producer thread; auto:
                                when more than 2 cores are free)
  STREAMER_PARTS_IN_FLIGHT, STREAMER_PART_RETRIES   per region (4, 5)
  STREAMER_REQUEST_TIMEOUT      seconds for a control request (30); a part: that plus
  STREAMER_MIN_PART_RATE        its size at this many bytes per second (128KiB)
  STREAMER_BWLIMIT    most bytes per second sent to all regions together (e.g. 50MiB; unset: no limit)
  STREAMER_NICE       CPU and IO priority of streamer, tar and the dump: off (default), on, idle, 2-19
  STREAMER_EARLY_START          on (default): the webroot's tar starts before the S3 start-up
  STREAMER_MIN_TABLES fewest tables the database must hold (1)
  STREAMER_PROGRESS_INTERVAL    seconds between progress lines off a terminal (5)
  STREAMER_METRICS_FILE, STREAMER_ON_SUCCESS, STREAMER_ON_FAILURE, STREAMER_HOOK_TIMEOUT
  STREAMER_KEEP_HOURLY ... STREAMER_KEEP_MANUAL   backups kept per periodicity
  STREAMER_LOCK_LEASE backup lock lease (15m), renewed every lease/3
  STREAMER_CLEANUP_HORIZON      age of abandoned leftovers cleanup removes (24h)
  STREAMER_HEAL_LIMIT time a backup may spend giving other regions runs they lack (15m; 0: off)
  STREAMER_ASSETS_EVERY  backups that also copy the assets buckets (DAILY,WEEKLY,MONTHLY,BIMONTHLY)
  STREAMER_ASSETS_KEEP_DELETED  how long assets deleted in region 1 stay elsewhere (30d)
  STREAMER_LAYOUT     streamer (default) or adt (WEBSITE_URL, WEBSITE_NAME)
  STREAMER_AGE_RECIPIENTS       age1... public keys (or a file of them): encrypt every artifact
  STREAMER_AGE_IDENTITY         age identity file (mode 600) that restore decrypts with
  STREAMER_OBJECT_LOCK_DAYS, STREAMER_OBJECT_LOCK_MODE   S3 Object Lock on every committed
                      object: days (0: none), GOVERNANCE (default) or COMPLIANCE
  STREAMER_PRUNE      on (default) or off: nothing is deleted, old runs expire by lifecycle rules
  STREAMER_CA_BUNDLE  PEM file of trusted CAs, one for all or one per region (|); else AWS_CA_BUNDLE
  STREAMER_CONFIG     config file (default /etc/streamer/streamer.toml)"""

RESTORE_HELP = """\b
Exit codes:
  0    restored (every byte's SHA-256 matched the manifest)
  1    failed in every region that holds the backup; nothing restored from a damaged copy
  2    usage or configuration error (e.g. the target directory is not empty: --force;
       an encrypted backup without STREAMER_AGE_IDENTITY, or with a wrong or loose one)
  130  interrupted"""

VERIFY_HELP = """\b
Exit codes:
  0    every region holds the backup, its hashes match, and the regions agree
  1    a region is missing it, a hash does not match, or the regions disagree"""

ASSETS_HELP = """\b
Exit codes:
  0    every other region holds every object of every assets bucket
  1    region 1 (the source) failed, or fewer regions than STREAMER_QUORUM hold the set
  2    usage or configuration error (no assets buckets, one region only)
  3    a region was dropped (it fails or stalls); the quorum still holds the set
  4    another host is copying this build's assets (its lock)
  130  interrupted; copies in flight aborted, nothing half-copied visible"""

HEAL_HELP = """\b
Exit codes:
  0    every region holds every committed run intact (healed, or nothing to do)
  1    nothing could be done: no copy succeeded, or no region answered
  2    usage or configuration error (e.g. STREAMER_LAYOUT=adt)
  3    some healed, but a region still lacks a run (unreachable, no good source, limit)
  130  interrupted; the copy in progress aborted, nothing half-committed"""

MAINTENANCE_HELP = """\b
Exit codes:
  0    done in every region
  1    a region could not be reached or a deletion failed (run it again)"""


def load_settings(config_file: Path | None, flags: dict[str, str | None]) -> dict[str, str]:
    """Every setting, merged: flag > environment > config file."""
    env = dict(os.environ)
    path = config_file or (Path(env["STREAMER_CONFIG"]) if env.get("STREAMER_CONFIG") else None)
    if path is None and Path("/etc/streamer/streamer.toml").exists():
        path = Path("/etc/streamer/streamer.toml")
    file_settings = load_file(path) if path else {}
    return merge_sources(file_settings, env, flags)


def config_from(settings: dict[str, str]) -> Config:
    """The frozen Config; a warning on stderr for every region whose keys
    would travel over plain http to another machine (docs/SECURITY.md)."""
    config = parse_config(settings)
    for warning in plain_http_warnings((r.index, r.endpoint) for r in config.regions):
        typer.echo(f"streamer: warning: {warning}", err=True)
    return config


def load_config(config_file: Path | None, flags: dict[str, str | None]) -> Config:
    return config_from(load_settings(config_file, flags))


def be_gentle(config: Config) -> Config:
    """Apply STREAMER_NICE to the whole process before a backup, heal or verify
    starts (process.lower_priority); a priority that cannot be set is exit 2."""
    if config.nice.active:
        try:
            lower_priority(config.nice.nice, config.nice.io_class, config.nice.io_level)
        except OSError as e:
            raise ConfigError(f"STREAMER_NICE={config.nice.describe()}: cannot set the priority: "
                              f"{e}", "install util-linux (ionice) or set STREAMER_NICE=off") from None
    return config


def exit_code_of(run: Callable[[], object]) -> int:
    """The process's exit code for the typer app's run.  An interrupt that
    arrives after the command's own handling (``guarded``: the one line, the
    reports), e.g. a SIGTERM taken while the early start is being closed,
    still ends in exit 130, not in Python's death by SIGINT."""
    try:
        try:
            run()
            return 0
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else (EXIT_USAGE if e.code else 0)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def early_started(config: Config) -> Iterator[EarlySource | None]:
    """A backup's early start (pipeline/early.py): the webroot's tar and its
    fill, begun now.  Until the event loop takes the signals over
    (``run_async``), SIGTERM is an interrupt like SIGINT (exit 130); on the
    way out, whatever the run did not adopt is closed (tar killed and reaped)."""
    from streamer.pipeline.early import start_early

    previous = signal.signal(signal.SIGTERM, _interrupt)
    early: EarlySource | None = None
    try:
        early = start_early(config)
        yield early
    finally:
        try:
            if early is not None:
                early.close()
        finally:
            signal.signal(signal.SIGTERM, previous)


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run on asyncio+uvloop; SIGINT/SIGTERM cancel the work (exit 130)."""
    interrupted = False

    async def main() -> T:
        nonlocal interrupted
        result: list[T] = []
        errors: list[BaseException] = []
        async with anyio.create_task_group() as tg:
            async def watch() -> None:
                nonlocal interrupted
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        interrupted = True
                        tg.cancel_scope.cancel()
                        return

            async def work() -> None:
                try:
                    result.append(await fn())
                except Exception as e:  # re-raised below, outside the task group
                    errors.append(e)
                finally:
                    tg.cancel_scope.cancel()

            tg.start_soon(watch)
            tg.start_soon(work)
        if errors:
            raise _user_error(errors[0])
        if interrupted or not result:
            raise KeyboardInterrupt
        return result[0]

    return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})


def _user_error(error: BaseException) -> BaseException:
    """The StreamerError inside a task group's ExceptionGroup, if there is one."""
    if isinstance(error, BaseExceptionGroup):
        match, _ = error.split(StreamerError)
        leaf: BaseException | None = match
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        if leaf is not None:
            return leaf
    return error


def guarded(fn: Callable[[], int], debug: bool = False,
            on_failure: Callable[[int, str], None] | None = None) -> None:
    """Run a command: user-facing failures become one line and their exit code.
    ``on_failure`` (the backup's reports and hooks) still runs for them."""
    try:
        code = fn()
    except StreamerError as e:
        if debug:
            traceback.print_exc()
        typer.echo(f"streamer: {e}", err=True)
        code, message = e.exit_code, str(e)
    except KeyboardInterrupt:
        typer.echo("streamer: interrupted; in-flight uploads aborted", err=True)
        code, message = EXIT_INTERRUPTED, "interrupted (SIGINT/SIGTERM); in-flight uploads aborted"
    except Exception as e:  # a bug: still one line, the traceback with --debug
        if debug:
            traceback.print_exc()
        typer.echo(f"streamer: internal error: {type(e).__name__}: {e} "
                   "(run with --debug for the traceback)", err=True)
        code, message = EXIT_FAILED, f"internal error: {type(e).__name__}: {e}"
    else:
        raise typer.Exit(code)
    if on_failure is not None:
        try:
            on_failure(code, message)
        except Exception as e:  # reporting never changes the exit code
            typer.echo(f"streamer: warning: reporting failed: {e}", err=True)
    raise typer.Exit(code)


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def tune_malloc() -> None:
    """Serve part-sized buffers with mmap so a freed part goes back to the OS.

    glibc raises its mmap threshold dynamically after the first large free, up
    to 32 MiB, after which 8-64 MiB part buffers come from per-thread arenas
    that keep their pages: RSS would then exceed the memory budget."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1024 * 1024)  # M_MMAP_THRESHOLD: fixed, not dynamic
    except (OSError, AttributeError):
        pass


PERIODICITY_NAMES = {p.name for p in Periodicity}


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


VersionOpt = Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print streamer's version and exit.")]


def optional_scope(periodicity: str | None, build_identifier: str | None
                   ) -> tuple[Periodicity | None, str | None]:
    """`[PERIODICITY] [BUILD]`: a lone argument that is no periodicity is the build."""
    if periodicity is not None and build_identifier is None \
            and periodicity.upper() not in PERIODICITY_NAMES:
        return None, parse_build_identifier(periodicity)
    p = Periodicity.parse(periodicity) if periodicity is not None else None
    b = parse_build_identifier(build_identifier) if build_identifier is not None else None
    return p, b
