"""``streamer restore``: a committed backup streamed back (readback/restore.py)."""

from __future__ import annotations

from streamer.layout.catalog import open_clients
from streamer.layout.choice import layout_for
from streamer.readback.restore import RestoreReport, RestoreRequest, restore_run
from streamer.settings.config import Config

__all__ = ["RestoreReport", "RestoreRequest", "restore"]


async def restore(config: Config, request: RestoreRequest) -> RestoreReport:
    layout = layout_for(config)
    async with open_clients(config, layout.bucket(request.series.periodicity)) as clients:
        return await restore_run(config, clients, layout, request)
