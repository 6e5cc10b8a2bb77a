"""The pure part of heal (housekeeping/heal_plan.py): gaps, damaged copies, sources."""

from __future__ import annotations

import hashlib

from streamer.housekeeping.heal_plan import (
    Gap,
    RunId,
    find_gaps,
    missing_by_region,
    multipart_etag,
    plan_copies,
    reference_manifest,
    size_problem,
    suspect_etags,
)
from streamer.layout.catalog import RunListing, StoredArtifact, StoredManifest
from streamer.model import Periodicity
from streamer.store.base import ObjectInfo

H = Periodicity.HOURLY
PREFIX = "site/hourly/"


def _run(stamp: str, committed: bool = True, size: int = 100) -> RunListing:
    objs = [ObjectInfo(f"{PREFIX}{stamp}/webroot.tar.zst", size)]
    manifest = f"{PREFIX}{stamp}/manifest.json" if committed else None
    if manifest:
        objs.append(ObjectInfo(manifest, 10))
    return RunListing("site", H, stamp, tuple(objs), manifest)


def _manifest(stamp: str, size: int = 100, sha: str = "a" * 64) -> StoredManifest:
    art = StoredArtifact("webroot", f"{PREFIX}{stamp}/webroot.tar.zst", size, sha, "zstd")
    return StoredManifest("site", "hourly", stamp, {"webroot": art}, {})


S1, S2, S3 = "20261201T000000Z", "20261202T000000Z", "20261203T000000Z"


def test_gaps_name_every_committed_run_and_who_lacks_it_newest_first() -> None:
    listings = {1: [_run(S1), _run(S2), _run(S3)],
                2: [_run(S1), _run(S3, committed=False)],  # S3 uploaded, never committed
                3: [_run(S1), _run(S2)]}
    gaps = find_gaps(listings)
    assert [g.run.stamp for g in gaps] == [S3, S2, S1]
    assert gaps[0] == Gap(RunId("site", H, S3), (1,), (2, 3))
    assert gaps[1] == Gap(RunId("site", H, S2), (1, 3), (2,))
    assert gaps[2].lacking == ()
    assert missing_by_region(gaps) == {2: [RunId("site", H, S3), RunId("site", H, S2)],
                                       3: [RunId("site", H, S3)]}
    # A region that did not answer is not said to lack anything.
    assert missing_by_region(find_gaps({1: [_run(S1)]})) == {}


def test_a_copy_whose_sizes_differ_from_its_manifest_is_damaged_without_reading() -> None:
    assert size_problem(_run(S1, size=100), _manifest(S1, 100)) is None
    assert size_problem(_run(S1, size=99), _manifest(S1, 100)) == \
        "webroot holds 99 bytes, the manifest says 100"
    gone = RunListing("site", H, S1, (ObjectInfo(f"{PREFIX}{S1}/manifest.json", 10),),
                      f"{PREFIX}{S1}/manifest.json")
    assert size_problem(gone, _manifest(S1)) == "webroot is missing"


def test_multipart_etag_is_s3s_rule() -> None:
    parts = [b"x" * 10, b"y" * 3]
    md5s = [hashlib.md5(p).hexdigest() for p in parts]
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    assert multipart_etag(md5s) == f"{expected}-2"


def test_the_reference_manifest_is_the_one_most_regions_agree_with() -> None:
    assert reference_manifest({}) is None
    good, odd = _manifest(S1), _manifest(S1, sha="b" * 64)
    assert reference_manifest({1: odd, 2: good, 3: good}) == 2
    assert reference_manifest({1: good, 2: odd}) == 1  # a tie: the lowest region


def test_copies_come_only_from_intact_copies_and_respect_targets() -> None:
    gap = Gap(RunId("site", H, S1), (1, 2), (3,))
    copies, unhealable = plan_copies(gap, {1: "webroot is missing"}, 100)
    assert [(c.target, c.reason, c.sources) for c in copies] == \
        [(1, "webroot is missing", (2,)), (3, "missing", (2,))]
    assert unhealable == []
    # The backup heals only into the regions that just committed.
    copies, _ = plan_copies(gap, {}, 100, targets=[1, 2])
    assert copies == []
    copies, _ = plan_copies(gap, {}, 100, targets=[3])
    assert [(c.target, c.sources, c.size) for c in copies] == [(3, (1, 2), 100)]
    # Every holder damaged: nothing to copy from, and that is said.
    copies, unhealable = plan_copies(gap, {1: "x", 2: "y"}, 100)
    assert copies == [] and [(u.target, u.reason) for u in unhealable] == \
        [(1, "x"), (2, "y"), (3, "missing")]


def test_a_copy_whose_etag_differs_is_suspect() -> None:
    a, b, c = "a" * 32 + "-3", "b" * 32 + "-3", "c" * 32 + "-3"
    # CRC part digests (auto): the ETag most regions' copies have is the reference.
    assert suspect_etags({1: {"webroot": a}, 2: {"webroot": a}, 3: {"webroot": b}}, {}) == {3}
    assert suspect_etags({1: {"webroot": a}, 2: {"webroot": b}}, {}) == {1, 2}  # a tie: read both
    assert suspect_etags({1: {"webroot": a}}, {}) == set()
    # Not S3's form (another server's ETags): no evidence either way.
    assert suspect_etags({1: {"webroot": a}, 2: {"webroot": "xyz"}, 3: {"webroot": a}}, {}) == set()
    # MD5 part digests: the ETag they give decides, whatever the majority.
    assert suspect_etags({1: {"db": a}, 2: {"db": a}, 3: {"db": c}}, {"db": c}) == {1, 2}
    assert suspect_etags({1: {"db": c, "webroot": a}, 2: {"db": c, "webroot": b},
                          3: {"db": c, "webroot": a}}, {"db": c}) == {2}
