"""Which of heal's listings a backup's retention may reuse (pure: no servers)."""

from __future__ import annotations

from streamer.commands.heal import CopyOutcome, HealResult
from streamer.housekeeping.heal_plan import Copy, RunId
from streamer.layout.catalog import RunListing
from streamer.model import Periodicity, Series

SERIES = Series("site", Periodicity.HOURLY)


def _run(stamp: str) -> RunListing:
    return RunListing("site", Periodicity.HOURLY, stamp, (), f"site/hourly/{stamp}/manifest.json")


def _healed(limit_reached: bool = False) -> HealResult:
    result = HealResult({1: "region 1", 2: "region 2", 3: "region 3"},
                        limit_reached=limit_reached)
    result.listings[SERIES] = {1: [_run("20260101T000000Z"), _run("20260102T000000Z")],
                               2: [_run("20260102T000000Z")],
                               3: [_run("20260101T000000Z"), _run("20260102T000000Z")]}
    copy = Copy(RunId("site", Periodicity.HOURLY, "20260101T000000Z"), 2, "missing", (1, 3), 10)
    result.copies.append(CopyOutcome(copy, source=1))
    return result


def test_the_listings_of_regions_heal_wrote_nothing_into_are_reused() -> None:
    unchanged = _healed().listed_unchanged()
    assert set(unchanged) == {(SERIES, 1), (SERIES, 3)}  # region 2 received a copy
    assert [r.stamp for r in unchanged[(SERIES, 1)]] == ["20260101T000000Z", "20260102T000000Z"]


def test_a_heal_cut_short_by_its_limit_leaves_nothing_to_reuse() -> None:
    assert _healed(limit_reached=True).listed_unchanged() == {}
