"""``streamer list``: the committed backups in every region.

Runs without a manifest (in progress, or left by a killed run) are not shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio

from streamer.errors import EXIT_FAILED, EXIT_OK, StoreFailure
from streamer.housekeeping.heal_plan import RunId, find_gaps, missing_by_region
from streamer.layout.catalog import CATALOG_POLICY, RunListing
from streamer.layout.choice import layout_for
from streamer.model import Periodicity
from streamer.settings.config import Config
from streamer.store.base import ObjectStore
from streamer.store.s3 import open_stores


@dataclass
class RegionRuns:
    """One region's committed runs (sorted), or why it could not be listed."""

    index: int
    label: str
    endpoint: str
    runs: list[RunListing] = field(default_factory=list)
    error: str | None = None
    # committed runs another region holds and this one lacks, newest first
    # (`streamer heal` copies them; empty with the ADT layout, which heal does not apply to)
    lacks: list[RunId] = field(default_factory=list)


@dataclass
class ListResult:
    now: datetime
    regions: list[RegionRuns]

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.regions if r.error is not None]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.errors else EXIT_OK


def _order(run: RunListing) -> tuple[str, str, str]:
    return (run.build, run.periodicity.value, run.stamp)


async def list_backups(config: Config, periodicity: Periodicity | None = None,
                       build: str | None = None) -> ListResult:
    """Every region's committed runs of the scope (a periodicity, a build, or all)."""
    now = datetime.now(UTC)
    layout = layout_for(config)
    regions: dict[int, RegionRuns] = {}
    for scope in layout.scopes(periodicity):
        async with open_stores(config, CATALOG_POLICY, bucket=layout.bucket(scope)) as clients:
            async def one(client: ObjectStore, scope: Periodicity | None = scope) -> None:
                index = client.index
                region = regions.setdefault(index, RegionRuns(index, client.label,
                                                              client.endpoint))
                try:
                    runs = await layout.runs_in(client, build, scope)
                    region.runs.extend(r for r in runs if r.committed)
                except StoreFailure as e:
                    region.error = str(e)

            async with anyio.create_task_group() as tg:
                for client in clients:
                    tg.start_soon(one, client)
    for region in regions.values():
        region.runs.sort(key=_order)
    if layout.no_heal is None:
        answered = {i: r.runs for i, r in regions.items() if r.error is None}
        for index, lacking in missing_by_region(find_gaps(answered)).items():
            regions[index].lacks = lacking
    return ListResult(now, [regions[i] for i in sorted(regions)])
