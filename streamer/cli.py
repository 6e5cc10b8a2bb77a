"""The command line (DESIGN.md section 1), built with typer.

``streamer PERIODICITY BUILD_IDENTIFIER`` is ``streamer backup ...``.  Every
user-facing failure is one line on stderr and a documented exit code; the
traceback only with ``--debug``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import typer

from streamer import __version__
from streamer.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, StreamerError
from streamer.model import Periodicity, parse_build_identifier
from streamer.settings.config import Config, parse_config
from streamer.settings.ops import parse_ops
from streamer.settings.values import load_file, merge_sources

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
  STREAMER_QUORUM     regions that must commit, default all
  STREAMER_STALL_TIMEOUT        seconds without progress before a region is dropped (300)
  STREAMER_CHECKSUM   md5 (default: Content-MD5), sha256 (signed payload), crc32
  STREAMER_COMPRESSION_THREADS  zstd worker threads (0: in the producer thread)
  STREAMER_PARTS_IN_FLIGHT, STREAMER_PART_RETRIES, STREAMER_REQUEST_TIMEOUT   per region (4, 5, 120)
  STREAMER_MIN_TABLES fewest tables the database must hold (1)
  STREAMER_PROGRESS_INTERVAL    seconds between progress lines off a terminal (5)
  STREAMER_METRICS_FILE, STREAMER_ON_SUCCESS, STREAMER_ON_FAILURE, STREAMER_HOOK_TIMEOUT
  STREAMER_KEEP_HOURLY ... STREAMER_KEEP_MANUAL   backups kept per periodicity
  STREAMER_LOCK_LEASE backup lock lease (15m), renewed every lease/3
  STREAMER_CLEANUP_HORIZON      age of abandoned leftovers cleanup removes (24h)
  STREAMER_LAYOUT     streamer (default) or adt (WEBSITE_URL, WEBSITE_NAME)
  STREAMER_CONFIG     config file (default /etc/streamer/streamer.toml)"""

app = typer.Typer(
    name="streamer",
    help="Stream webroot and database backups to every S3 region at once.\n\n"
    + ENV_HELP + "\n\n" + EXIT_CODES_HELP,
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
config_app = typer.Typer(help="Inspect the configuration.")
app.add_typer(config_app, name="config")

STATE: dict[str, Any] = {"debug": False}

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML config file.")]
QuorumOpt = Annotated[int | None, typer.Option("--quorum", help="Regions that must commit.")]
BudgetOpt = Annotated[str | None, typer.Option("--memory-budget", help="e.g. 256MiB.")]
WebrootOpt = Annotated[Path | None, typer.Option("--webroot", help="Webroot directory.")]
CompressionOpt = Annotated[str | None, typer.Option("--compression", help="zstd, gzip or none.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
LayoutOpt = Annotated[str | None, typer.Option("--layout", help="streamer (default) or adt.")]
PeriodicityArg = Annotated[str, typer.Argument(help="HOURLY, DAILY, WEEKLY, MONTHLY, BIMONTHLY, "
                                                    "SHUTDOWN or MANUAL")]
BuildArg = Annotated[str, typer.Argument(help="The build's identifier.")]
OptPeriodicityArg = Annotated[str | None, typer.Argument(help="Only this periodicity.")]
OptBuildArg = Annotated[str | None, typer.Argument(help="Only this build identifier.")]
AtOpt = Annotated[str | None, typer.Option("--at", help="The run's stamp (YYYYMMDDTHHMMSSZ); "
                                                        "default the newest committed one.")]


def load_settings(config_file: Path | None, flags: dict[str, str | None]) -> dict[str, str]:
    """Every setting, merged: flag > environment > config file."""
    env = dict(os.environ)
    path = config_file or (Path(env["STREAMER_CONFIG"]) if env.get("STREAMER_CONFIG") else None)
    if path is None and Path("/etc/streamer/streamer.toml").exists():
        path = Path("/etc/streamer/streamer.toml")
    file_settings = load_file(path) if path else {}
    return merge_sources(file_settings, env, flags)


def load_config(config_file: Path | None, flags: dict[str, str | None]) -> Config:
    return parse_config(load_settings(config_file, flags))


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


def guarded(fn: Callable[[], int],
            on_failure: Callable[[int, str], None] | None = None) -> None:
    """Run a command: user-facing failures become one line and their exit code.
    ``on_failure`` (the backup's reports and hooks) still runs for them."""
    try:
        code = fn()
    except StreamerError as e:
        if STATE["debug"]:
            traceback.print_exc()
        typer.echo(f"streamer: {e}", err=True)
        code, message = e.exit_code, str(e)
    except KeyboardInterrupt:
        typer.echo("streamer: interrupted; in-flight uploads aborted", err=True)
        code, message = EXIT_INTERRUPTED, "interrupted (SIGINT/SIGTERM); in-flight uploads aborted"
    except Exception as e:  # a bug: still one line, the traceback with --debug
        if STATE["debug"]:
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


@app.callback()
def main_callback(debug: DebugOpt = False) -> None:
    STATE["debug"] = debug


@app.command(epilog=ENV_HELP + "\n\n" + EXIT_CODES_HELP)
def backup(
    periodicity: Annotated[str, typer.Argument(help="HOURLY, DAILY, WEEKLY, MONTHLY, BIMONTHLY, "
                                               "SHUTDOWN or MANUAL")],
    build_identifier: Annotated[str, typer.Argument(help="The build's identifier.")],
    config: ConfigOpt = None,
    quorum: QuorumOpt = None,
    memory_budget: BudgetOpt = None,
    webroot: WebrootOpt = None,
    compression: CompressionOpt = None,
    layout: LayoutOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print one JSON summary on stdout at the end (schema: docs/summary.schema.json)."
    )] = False,
    metrics_file: Annotated[Path | None, typer.Option(
        "--metrics-file", help="Prometheus textfile-collector file (env STREAMER_METRICS_FILE).")] = None,
    on_success: Annotated[str | None, typer.Option(
        "--on-success", help="Run with /bin/sh -c after exit 0, the JSON summary on stdin "
        "(env STREAMER_ON_SUCCESS).")] = None,
    on_failure: Annotated[str | None, typer.Option(
        "--on-failure", help="Likewise after exit 1, 2, 3 or 130 (env STREAMER_ON_FAILURE).")] = None,
    debug: DebugOpt = False,
) -> None:
    """Back up the webroot and the database to every region, then apply retention."""
    STATE["debug"] = STATE["debug"] or debug
    from streamer.report.reporting import ReportConfig, finish, parse_reporting
    from streamer.report.summary import summarize, summarize_failure

    started = time.monotonic()
    # What the flags alone say, for failures before the settings are parsed.
    report = ReportConfig(json=json_out, quiet=quiet or json_out, metrics_file=metrics_file,
                          on_success=on_success or "", on_failure=on_failure or "")
    secrets: list[str] = []

    def go() -> int:
        nonlocal report
        from streamer.commands.backup import backup_command

        settings = load_settings(config, {
            "STREAMER_QUORUM": None if quorum is None else str(quorum),
            "STREAMER_MEMORY_BUDGET": memory_budget,
            "STREAMER_WEBROOT": None if webroot is None else str(webroot),
            "STREAMER_COMPRESSION": compression,
            "STREAMER_LAYOUT": layout,
            "STREAMER_METRICS_FILE": None if metrics_file is None else str(metrics_file),
            "STREAMER_ON_SUCCESS": on_success,
            "STREAMER_ON_FAILURE": on_failure,
        })
        secrets.extend(v for k, v in settings.items()
                       if k in ("S3_SECRET_KEY", "S3_ACCESS_KEY", "DB_PASSWORD") and v)
        report = parse_reporting(settings, json_out=json_out, quiet=quiet)
        p = Periodicity.parse(periodicity)
        build = parse_build_identifier(build_identifier)
        cfg = parse_config(settings)
        ops = parse_ops(settings)
        result = run_async(lambda: backup_command(cfg, p, build, ops, quiet=report.quiet))
        summary = summarize(result, exit_code=result.exit_code,
                            duration=time.monotonic() - started, redact=secrets,
                            rss_peak_bytes=_peak_rss())
        finish(report, summary, result.exit_code)
        return result.exit_code

    def failed(code: int, error: str) -> None:
        summary = summarize_failure(build=build_identifier, periodicity=periodicity.lower(),
                                    exit_code=code, error=error,
                                    duration=time.monotonic() - started, redact=secrets,
                                    rss_peak_bytes=_peak_rss())
        finish(report, summary, code)

    guarded(go, on_failure=failed)


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@config_app.command("check", epilog=ENV_HELP + "\n\nExit codes: 0 every check passed, 2 any problem.")
def config_check(
    config: ConfigOpt = None,
    create_buckets: Annotated[bool, typer.Option("--create-buckets",
                                                 help="Create a missing bucket.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the effective configuration (secrets masked) and probe every region and the database."""

    def go() -> int:
        from streamer.commands.backup import config_check_command

        cfg = load_config(config, {})
        return run_async(lambda: config_check_command(cfg, create_buckets, json_out))

    guarded(go)


RESTORE_HELP = """\b
Exit codes:
  0    restored (every byte's SHA-256 matched the manifest)
  1    failed in every region that holds the backup; nothing restored from a damaged copy
  2    usage or configuration error (e.g. the target directory is not empty: --force)
  130  interrupted"""

VERIFY_HELP = """\b
Exit codes:
  0    every region holds the backup, its hashes match, and the regions agree
  1    a region is missing it, a hash does not match, or the regions disagree"""

MAINTENANCE_HELP = """\b
Exit codes:
  0    done in every region
  1    a region could not be reached or a deletion failed (run it again)"""


def _optional_scope(periodicity: str | None, build_identifier: str | None
                    ) -> tuple[Periodicity | None, str | None]:
    """`[PERIODICITY] [BUILD]`: a lone argument that is no periodicity is the build."""
    if periodicity is not None and build_identifier is None \
            and periodicity.upper() not in PERIODICITY_NAMES:
        return None, parse_build_identifier(periodicity)
    p = Periodicity.parse(periodicity) if periodicity is not None else None
    b = parse_build_identifier(build_identifier) if build_identifier is not None else None
    return p, b


@app.command(epilog=ENV_HELP + "\n\n" + RESTORE_HELP)
def restore(
    periodicity: PeriodicityArg,
    build_identifier: BuildArg,
    at: AtOpt = None,
    webroot: Annotated[Path | None, typer.Option(
        "--webroot", help="Restore the webroot into this directory (default: STREAMER_WEBROOT "
                          "when --database is not given). It must be empty unless --force.")] = None,
    database: Annotated[bool, typer.Option(
        "--database", help="Restore the database into DB_NAME (which must exist, empty).")] = False,
    region: Annotated[int | None, typer.Option("--region", help="Read only this region (1-based).")
                      ] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Restore over a non-empty directory: files in the backup replace "
                        "files of the same name, others stay (as tar -x).")] = False,
    config: ConfigOpt = None,
    layout: LayoutOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Stream the newest committed backup (or --at STAMP) back, verifying its SHA-256."""
    STATE["debug"] = STATE["debug"] or debug

    def go() -> int:
        from streamer.commands.maintenance import restore_command
        from streamer.readback.restore import RestoreRequest

        p = Periodicity.parse(periodicity)
        build = parse_build_identifier(build_identifier)
        cfg = load_config(config, {"STREAMER_LAYOUT": layout})
        target = webroot if webroot is not None else (None if database else cfg.webroot)
        request = RestoreRequest(p, build, at, target, database, region, force)
        return run_async(lambda: restore_command(cfg, request))

    guarded(go)


@app.command(epilog=ENV_HELP + "\n\n" + VERIFY_HELP)
def verify(
    periodicity: PeriodicityArg,
    build_identifier: BuildArg,
    at: AtOpt = None,
    config: ConfigOpt = None,
    layout: LayoutOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Re-read every region's copy; check every size and hash, and that the regions agree."""
    STATE["debug"] = STATE["debug"] or debug

    def go() -> int:
        from streamer.commands.maintenance import verify_command

        p = Periodicity.parse(periodicity)
        build = parse_build_identifier(build_identifier)
        cfg = load_config(config, {"STREAMER_LAYOUT": layout})
        return run_async(lambda: verify_command(cfg, p, build, at))

    guarded(go)


@app.command("list", epilog=ENV_HELP + "\n\n" + MAINTENANCE_HELP)
def list_(
    periodicity: OptPeriodicityArg = None,
    build_identifier: OptBuildArg = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    config: ConfigOpt = None,
    layout: LayoutOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Committed backups per region, with stamp, age and sizes (runs without manifest are not shown)."""
    STATE["debug"] = STATE["debug"] or debug

    def go() -> int:
        from streamer.commands.maintenance import list_command

        p, b = _optional_scope(periodicity, build_identifier)
        cfg = load_config(config, {"STREAMER_LAYOUT": layout})
        return run_async(lambda: list_command(cfg, p, b, json_out))

    guarded(go)


@app.command(epilog=ENV_HELP + "\n\n" + MAINTENANCE_HELP)
def prune(
    periodicity: OptPeriodicityArg = None,
    build_identifier: OptBuildArg = None,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Apply retention (STREAMER_KEEP_*): keep the newest committed backups, delete older ones."""
    STATE["debug"] = STATE["debug"] or debug

    def go() -> int:
        from streamer.commands.maintenance import prune_command

        p, b = _optional_scope(periodicity, build_identifier)
        cfg = load_config(config, {})
        return run_async(lambda: prune_command(cfg, p, b))

    guarded(go)


@app.command(epilog=ENV_HELP + "\n\n" + MAINTENANCE_HELP)
def cleanup(
    periodicity: OptPeriodicityArg = None,
    build_identifier: OptBuildArg = None,
    horizon: Annotated[str | None, typer.Option(
        "--horizon", help="Age after which leftovers are abandoned (STREAMER_CLEANUP_HORIZON, "
                          "default 24h).")] = None,
    config: ConfigOpt = None,
    layout: LayoutOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Abort multipart uploads and remove manifest-less runs that killed runs left behind."""
    STATE["debug"] = STATE["debug"] or debug

    def go() -> int:
        from streamer.commands.maintenance import cleanup_command

        p, b = _optional_scope(periodicity, build_identifier)
        settings = load_settings(config, {"STREAMER_LAYOUT": layout,
                                          "STREAMER_CLEANUP_HORIZON": horizon})
        cfg = parse_config(settings)
        ops = parse_ops(settings)
        return run_async(lambda: cleanup_command(cfg, ops, p, b))

    guarded(go)


@app.command()
def version() -> None:
    """Print streamer's version."""
    typer.echo(__version__)


PERIODICITY_NAMES = {p.name for p in Periodicity}


def _tune_malloc() -> None:
    """Serve part-sized buffers with mmap so a freed part goes back to the OS.

    glibc raises its mmap threshold dynamically after the first large free, up
    to 32 MiB, after which 8-64 MiB part buffers come from per-thread arenas
    that keep their pages: RSS would then exceed the memory budget."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1024 * 1024)  # M_MMAP_THRESHOLD: fixed, not dynamic
    except (OSError, AttributeError):
        pass


def main() -> None:
    _tune_malloc()
    argv = sys.argv[1:]
    # `streamer HOURLY build` is `streamer backup HOURLY build`.
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if first is not None and argv[first].upper() in PERIODICITY_NAMES:
        argv.insert(first, "backup")
    try:
        app(args=argv, prog_name="streamer")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (EXIT_USAGE if e.code else 0)
        sys.exit(code)


if __name__ == "__main__":
    main()
