"""The command line of the assets buckets: ``streamer assets BUILD`` and the
``--assets`` branch of ``streamer restore`` (README, "The assets buckets").
cli.py registers them; like cli.py, this only parses, calls, renders and exits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamer.cli_support import be_gentle, config_from, guarded, load_config, load_settings, run_async
from streamer.model import Series, parse_build_identifier
from streamer.settings.ops import parse_ops


def _debug(ctx: typer.Context, debug: bool) -> bool:
    return debug or bool(getattr(ctx.obj, "debug", False))


def assets(
    ctx: typer.Context,
    build_identifier: Annotated[str, typer.Argument(help="The build's identifier.")],
    config: Annotated[Path | None, typer.Option("--config", help="TOML config file.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Copy the assets buckets (PERSIST_ASSETS_TO_DATASTORE=1) from region 1 to every other
    region, incrementally; objects deleted at the source are kept (STREAMER_ASSETS_KEEP_DELETED)."""
    from streamer.commands.assets import assets as assets_command
    from streamer.render import assets_lines, show

    def go() -> int:
        build = parse_build_identifier(build_identifier)
        settings = load_settings(config, {})
        cfg, ops = be_gentle(config_from(settings)), parse_ops(settings)
        result = run_async(lambda: assets_command(cfg, ops, build))
        show(assets_lines(result))
        return result.exit_code

    guarded(go, _debug(ctx, debug))


def restore_assets(series: Series, at: str | None, bucket: str | None, config: Path | None,
                   layout: str | None) -> int:
    """``streamer restore PERIODICITY BUILD --assets``: the assets buckets as the
    series' newest index (or the one at ``--at``) records them."""
    from streamer.commands.assets_restore import AssetsRestoreRequest, restore_assets
    from streamer.render import assets_restore_lines, show

    cfg = be_gentle(load_config(config, {"STREAMER_LAYOUT": layout}))
    report = run_async(lambda: restore_assets(cfg, AssetsRestoreRequest(series, at, bucket)))
    show(assets_restore_lines(report))
    return report.exit_code
