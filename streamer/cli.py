"""The command line, built with typer: parse, call a command, render, exit code.

``streamer PERIODICITY BUILD_IDENTIFIER`` is ``streamer backup ...``.  Every
user-facing failure is one line on stderr and a documented exit code; the
traceback only with ``--debug``.  The commands (commands/) return results;
render.py turns them into what is printed.

Start-up time: the commands, the renderer and the reporting are imported inside
the command functions, not here: they pull in aiobotocore and the database
drivers (about 0.6 s); a backup starts its webroot's tar first (early_started).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from streamer import __version__
from streamer.cli_assets import assets as assets_command
from streamer.cli_assets import restore_assets
from streamer.cli_support import (
    ASSETS_HELP,
    ENV_HELP,
    EXIT_CODES_HELP,
    HEAL_HELP,
    MAINTENANCE_HELP,
    PERIODICITY_NAMES,
    RESTORE_HELP,
    VERIFY_HELP,
    VersionOpt,
    be_gentle,
    config_from,
    early_started,
    exit_code_of,
    guarded,
    load_config,
    load_settings,
    optional_scope,
    peak_rss,
    run_async,
    tune_malloc,
)
from streamer.model import Periodicity, Series, parse_build_identifier
from streamer.settings.ops import parse_ops

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



@dataclass
class Options:
    """Options of the whole command line (before the command), in typer's context."""

    debug: bool = False


def _debug(ctx: typer.Context, debug: bool) -> bool:
    """--debug given before the command or after it."""
    return debug or (isinstance(ctx.obj, Options) and ctx.obj.debug)


ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML config file.")]
QuorumOpt = Annotated[str | None, typer.Option(
    "--quorum", help="Regions that must commit for the run to count: N or all (default 1).")]
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
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")]
JsonSummaryOpt = Annotated[bool, typer.Option(
    "--json", help="Print one JSON summary on stdout at the end (schema: docs/summary.schema.json).")]
MetricsFileOpt = Annotated[Path | None, typer.Option(
    "--metrics-file", help="Prometheus textfile-collector file (env STREAMER_METRICS_FILE).")]
OnSuccessOpt = Annotated[str | None, typer.Option(
    "--on-success", help="Run with /bin/sh -c after exit 0, the JSON summary on stdin "
    "(env STREAMER_ON_SUCCESS).")]
OnFailureOpt = Annotated[str | None, typer.Option(
    "--on-failure", help="Likewise after exit 1, 2, 3 or 130 (env STREAMER_ON_FAILURE).")]
AtOpt = Annotated[str | None, typer.Option("--at", help="The run's stamp (YYYYMMDDTHHMMSSZ); "
                                                        "default the newest committed one.")]


@app.callback()
def main_callback(ctx: typer.Context, debug: DebugOpt = False,
                  version: VersionOpt = False) -> None:
    ctx.obj = Options(debug=debug)


# Long: fourteen declared options, and the failure path's summary and hooks.
@app.command(epilog=ENV_HELP + "\n\n" + EXIT_CODES_HELP)
def backup(
    ctx: typer.Context,
    periodicity: PeriodicityArg,
    build_identifier: BuildArg,
    config: ConfigOpt = None,
    quorum: QuorumOpt = None,
    memory_budget: BudgetOpt = None,
    webroot: WebrootOpt = None,
    compression: CompressionOpt = None,
    layout: LayoutOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonSummaryOpt = False,
    metrics_file: MetricsFileOpt = None,
    on_success: OnSuccessOpt = None,
    on_failure: OnFailureOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Back up the webroot and the database to every region, then apply retention."""
    from streamer.render import make_observer, show_backup
    from streamer.report.reporting import ReportConfig, finish, parse_reporting
    from streamer.report.summary import summarize, summarize_failure

    started = time.monotonic()
    # What the flags alone say, for failures before the settings are parsed.
    report = ReportConfig(json=json_out, quiet=quiet or json_out, metrics_file=metrics_file,
                          on_success=on_success or "", on_failure=on_failure or "")
    secrets: list[str] = []

    def go() -> int:
        nonlocal report
        settings = load_settings(config, {
            "STREAMER_QUORUM": quorum,
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
        series = Series(parse_build_identifier(build_identifier), Periodicity.parse(periodicity))
        cfg, ops = be_gentle(config_from(settings)), parse_ops(settings)
        with early_started(cfg) as early:  # before the S3 stack's imports (pipeline/early.py)
            from streamer.commands.backup import BackupRequest
            from streamer.commands.backup import backup as backup_command
            request = BackupRequest(cfg, series, ops, make_observer(cfg, report.quiet), early)
            outcome = run_async(lambda: backup_command(request))
        show_backup(outcome, report.quiet)
        if outcome.error is not None or outcome.result is None:
            raise outcome.error or AssertionError("a backup without result or error")
        result = outcome.result
        summary = summarize(result, exit_code=result.exit_code,
                            duration=time.monotonic() - started, redact=secrets,
                            rss_peak_bytes=peak_rss())
        finish(report, summary, result.exit_code)
        return result.exit_code

    def failed(code: int, error: str) -> None:
        summary = summarize_failure(build=build_identifier, periodicity=periodicity.lower(),
                                    exit_code=code, error=error,
                                    duration=time.monotonic() - started, redact=secrets,
                                    rss_peak_bytes=peak_rss())
        finish(report, summary, code)

    guarded(go, _debug(ctx, debug), on_failure=failed)


@config_app.command("check", epilog=ENV_HELP + "\n\nExit codes: 0 every check passed, 2 any problem.")
def config_check(
    ctx: typer.Context,
    config: ConfigOpt = None,
    create_buckets: Annotated[bool, typer.Option("--create-buckets",
                                                 help="Create a missing bucket.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the effective configuration (secrets masked) and probe every region and the database."""
    from streamer.commands.check import config_check as check_command
    from streamer.render import check_lines, show

    def go() -> int:
        cfg = load_config(config, {})
        result = run_async(lambda: check_command(cfg, create_buckets))
        show(check_lines(result, json_out))
        return result.exit_code

    guarded(go, _debug(ctx, False))


@app.command(epilog=ENV_HELP + "\n\n" + RESTORE_HELP)
def restore(
    ctx: typer.Context,
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
    assets: Annotated[bool, typer.Option("--assets", help="Put the assets buckets back in region 1 "
                                         "as the run's index records them.")] = False,
    assets_bucket: Annotated[str | None, typer.Option(
        "--assets-bucket", help="With --assets and one assets bucket: restore into this bucket.")
                             ] = None,
    config: ConfigOpt = None,
    layout: LayoutOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Stream the newest committed backup (or --at STAMP) back, verifying its SHA-256."""
    from streamer.commands.restore import RestoreRequest
    from streamer.commands.restore import restore as restore_command
    from streamer.render import restore_lines, show

    def go() -> int:
        series = Series(parse_build_identifier(build_identifier), Periodicity.parse(periodicity))
        if assets:
            return restore_assets(series, at, assets_bucket, config, layout)
        cfg = load_config(config, {"STREAMER_LAYOUT": layout})
        target = webroot if webroot is not None else (None if database else cfg.webroot)
        request = RestoreRequest(series, at, target, database, region, force)
        report = run_async(lambda: restore_command(cfg, request))
        show(restore_lines(report))
        if report.error is not None:
            raise report.error
        return report.exit_code

    guarded(go, _debug(ctx, debug))


@app.command(epilog=ENV_HELP + "\n\n" + VERIFY_HELP)
def verify(
    ctx: typer.Context,
    periodicity: PeriodicityArg,
    build_identifier: BuildArg,
    at: AtOpt = None,
    config: ConfigOpt = None,
    layout: LayoutOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Re-read every region's copy; check every size and hash, and that the regions agree."""
    from streamer.commands.verify import verify as verify_command
    from streamer.render import show, verify_lines

    def go() -> int:
        series = Series(parse_build_identifier(build_identifier), Periodicity.parse(periodicity))
        cfg = be_gentle(load_config(config, {"STREAMER_LAYOUT": layout}))
        report = run_async(lambda: verify_command(cfg, series, at))
        show(verify_lines(report))
        return report.exit_code

    guarded(go, _debug(ctx, debug))


@app.command("list", epilog=ENV_HELP + "\n\n" + MAINTENANCE_HELP)
def list_(
    ctx: typer.Context,
    periodicity: OptPeriodicityArg = None,
    build_identifier: OptBuildArg = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    config: ConfigOpt = None,
    layout: LayoutOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Committed backups per region, with stamp, age and sizes (runs without manifest are not shown)."""
    from streamer.commands.list import list_backups
    from streamer.render import list_lines, show

    def go() -> int:
        p, b = optional_scope(periodicity, build_identifier)
        cfg = load_config(config, {"STREAMER_LAYOUT": layout})
        result = run_async(lambda: list_backups(cfg, p, b))
        show(list_lines(result, json_out))
        return result.exit_code

    guarded(go, _debug(ctx, debug))


@app.command(epilog=ENV_HELP + "\n\n" + HEAL_HELP)
def heal(
    ctx: typer.Context,
    periodicity: OptPeriodicityArg = None,
    build_identifier: OptBuildArg = None,
    verify: Annotated[bool, typer.Option(
        "--verify", help="Read every region's copy in full (every part digest and SHA-256), "
                         "not only its sizes and ETags.")] = False,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Give every region the committed runs it lacks or holds damaged, copied from a region
    that holds them intact (streamed, checked part by part, manifest last)."""
    from streamer.commands.heal import HealRequest
    from streamer.commands.heal import heal as heal_command
    from streamer.render import heal_lines, show

    def go() -> int:
        p, b = optional_scope(periodicity, build_identifier)
        cfg = be_gentle(load_config(config, {}))
        result = run_async(lambda: heal_command(cfg, HealRequest(p, b, verify=verify)))
        show(heal_lines(result))
        return result.exit_code

    guarded(go, _debug(ctx, debug))


@app.command(epilog=ENV_HELP + "\n\n" + MAINTENANCE_HELP)
def prune(
    ctx: typer.Context,
    periodicity: OptPeriodicityArg = None,
    build_identifier: OptBuildArg = None,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Apply retention (STREAMER_KEEP_*): keep the newest committed backups, delete older ones."""
    from streamer.commands.prune import prune as prune_command
    from streamer.render import prune_lines, show

    def go() -> int:
        p, b = optional_scope(periodicity, build_identifier)
        cfg = load_config(config, {})
        result = run_async(lambda: prune_command(cfg, p, b))
        show(prune_lines(result))
        return result.exit_code

    guarded(go, _debug(ctx, debug))


@app.command(epilog=ENV_HELP + "\n\n" + MAINTENANCE_HELP)
def cleanup(
    ctx: typer.Context,
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
    from streamer.commands.cleanup import cleanup as cleanup_command
    from streamer.render import cleanup_lines, show

    def go() -> int:
        p, b = optional_scope(periodicity, build_identifier)
        settings = load_settings(config, {"STREAMER_LAYOUT": layout,
                                          "STREAMER_CLEANUP_HORIZON": horizon})
        cfg = config_from(settings)
        ops = parse_ops(settings)
        result = run_async(lambda: cleanup_command(cfg, ops, p, b))
        show(cleanup_lines(result))
        return result.exit_code

    guarded(go, _debug(ctx, debug))


app.command("assets", epilog=ENV_HELP + "\n\n" + ASSETS_HELP)(assets_command)


@app.command()
def version() -> None:
    """Print streamer's version."""
    typer.echo(__version__)



def main() -> None:
    tune_malloc()
    argv = sys.argv[1:]
    # `streamer HOURLY build` is `streamer backup HOURLY build`.
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if first is not None and argv[first].upper() in PERIODICITY_NAMES:
        argv.insert(first, "backup")
    sys.exit(exit_code_of(lambda: app(args=argv, prog_name="streamer")))


if __name__ == "__main__":
    main()
