"""``streamer restore``: a committed backup streamed back (readback/restore.py)."""

from __future__ import annotations

from streamer.layout.catalog import CATALOG_POLICY
from streamer.layout.choice import layout_for
from streamer.readback.restore import RestoreReport, RestoreRequest, restore_run
from streamer.settings.config import Config
from streamer.store.s3 import open_stores

__all__ = ["RestoreReport", "RestoreRequest", "restore"]


async def restore(config: Config, request: RestoreRequest) -> RestoreReport:
    layout = layout_for(config)
    bucket = layout.bucket(request.series.periodicity)
    async with open_stores(config, CATALOG_POLICY, bucket=bucket) as clients:
        return await restore_run(config, clients, layout, request)
