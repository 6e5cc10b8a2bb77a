"""``streamer prune``: retention (STREAMER_KEEP_*) over the given series, or every one found."""

from __future__ import annotations

from streamer.commands.common import PruneResult, prune_all
from streamer.layout.catalog import CATALOG_POLICY
from streamer.layout.choice import layout_for
from streamer.model import Periodicity
from streamer.settings.config import Config
from streamer.store.s3 import open_stores

__all__ = ["PruneResult", "prune"]


async def prune(config: Config, periodicity: Periodicity | None = None,
                build: str | None = None) -> PruneResult:
    layout = layout_for(config)
    if not config.prune:
        return PruneResult(skipped="retention: STREAMER_PRUNE=off, old runs are left to the "
                                   "buckets' lifecycle rules")
    if layout.no_retention is not None:
        return PruneResult(skipped=layout.no_retention)
    result = PruneResult()
    for scope in layout.scopes(periodicity):
        async with open_stores(config, CATALOG_POLICY, bucket=layout.bucket(scope)) as clients:
            done = await prune_all(config, layout, clients,
                                   await layout.find_series(clients, scope, build))
        result.pruned.extend(done.pruned)
        result.errors.extend(done.errors)
    return result
