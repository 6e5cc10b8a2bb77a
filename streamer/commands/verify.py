"""``streamer verify``: every region's copy of a run re-read and checked (readback/verify.py)."""

from __future__ import annotations

from streamer.layout.catalog import CATALOG_POLICY
from streamer.layout.choice import layout_for
from streamer.model import Series
from streamer.readback.verify import VerifyReport, verify_run
from streamer.settings.config import Config
from streamer.store.s3 import open_stores

__all__ = ["VerifyReport", "verify"]


async def verify(config: Config, series: Series, at: str | None = None) -> VerifyReport:
    layout = layout_for(config)
    async with open_stores(config, CATALOG_POLICY, bucket=layout.bucket(series.periodicity)) as clients:
        return await verify_run(config, clients, layout, series, at)
