"""The ADT-compatible layout: ADT's bucket and object names, the .BACKUP copies,
and an archive that ADT's own `tar xzf` restores."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3util import RegionsEnv, run_streamer
from test_backup_database import db_env
from test_database import PgSetup, pg_fingerprint, pg_setup  # noqa: F401  (fixture)
from treeutil import make_rich_tree, snapshot

from streamer.codec import Codec
from streamer.layout import adt
from streamer.layout.choice import layout_for
from streamer.model import Periodicity, Series
from streamer.settings.config import parse_config

pytestmark = pytest.mark.anyio


def test_adt_names() -> None:
    cfg = parse_config({"S3_HOST_BASE": "h", "S3_ACCESS_KEY": "a", "S3_SECRET_KEY": "s",
                        "WEBSITE_URL": "www.Example.com", "STREAMER_LAYOUT": "adt"})
    layout = layout_for(cfg)
    assert layout.bucket(Periodicity.HOURLY) == "www-example-com-hourly"
    assert layout.codec == Codec("gzip", 6)
    placement = layout.placement(Series("b", Periodicity.HOURLY), "20240101T000000Z", ".gz")
    assert placement.key("database") == "Example-DB-backup.tar.gz"
    assert placement.key("webroot") == "applicationsourcecode.tar.gz"
    assert placement.manifest_key == "streamer-manifest.json" and placement.keep_on_failure
    assert placement.buckets == {"database": "www-example-com-db-hourly"}
    assert placement.members == {}  # no database configured
    pg = parse_config({"S3_HOST_BASE": "h", "S3_ACCESS_KEY": "a", "S3_SECRET_KEY": "s",
                       "WEBSITE_URL": "www.example.com", "STREAMER_LAYOUT": "adt",
                       "DATABASE_INSTALLATION_TYPE": "Postgres", "DB_NAME": "d",
                       "DB_USERNAME": "u"})
    member = layout_for(pg).placement(Series("b", Periodicity.DAILY), "20240101T000000Z",
                                      ".gz").members["database"]
    assert member.name == "applicationDB.psql" and member.mtime == 1704067200
    assert member.suffix.endswith(b"CREATE TABLE public.zzzz ( idxx serial PRIMARY KEY );\n")
    assert layout_for(pg).extra_buckets(Periodicity.DAILY) == ["www-example-com-db-daily"]
    assert adt.website_name(cfg) == "Example"


@pytest.fixture
def site(regions: RegionsEnv) -> Iterator[str]:
    name = f"www.t{uuid.uuid4().hex[:12]}.test"
    yield name
    for p in ("hourly", "daily", "db-hourly", "db-daily"):
        regions.delete_bucket_everywhere(name.replace(".", "-") + "-" + p)


async def test_adt_layout_backup_keeps_the_previous_copy_and_restores(
        regions: RegionsEnv, site: str, streamer_env: dict[str, str], tmp_path: Path,
        pg_setup: PgSetup) -> None:  # noqa: F811
    s = pg_setup
    root = tmp_path / "www"
    make_rich_tree(root, media=20_000)
    env = {**db_env(streamer_env, s.cfg(), root), "STREAMER_LAYOUT": "adt", "WEBSITE_URL": site}
    bucket = site.replace(".", "-") + "-hourly"
    db_bucket = site.replace(".", "-") + "-db-hourly"
    first = run_streamer(["hourly", "adtsite"], env)
    assert first.code == 0, first.stdout + first.stderr
    old = snapshot(root)
    (root / "app" / "index.php").write_text("<?php echo 'second'; ?>\n")
    time.sleep(1.05)
    second = run_streamer(["hourly", "adtsite"], env)
    assert second.code == 0, second.stdout + second.stderr
    name = site.split(".")[1]
    for i in (1, 2, 3):
        assert sorted(regions.keys(i, bucket)) == sorted([
            "applicationsourcecode.tar.gz", "applicationsourcecode.tar.gz.BACKUP",
            "streamer-manifest.json", "streamer-manifest.json.BACKUP"])
        assert sorted(regions.keys(i, db_bucket)) == [f"{name}-DB-backup.tar.gz",
                                                      f"{name}-DB-backup.tar.gz.BACKUP"]
        assert regions.uploads(i, bucket) == regions.uploads(i, db_bucket) == []
    current = json.loads(regions.get(2, bucket, "streamer-manifest.json"))
    previous = json.loads(regions.get(2, bucket, "streamer-manifest.json.BACKUP"))
    assert previous["stamp"] < current["stamp"]
    assert current["artifacts"]["webroot"]["compression"] == "gzip"

    # The old way: ADT's build machine runs tar xzf on the object.
    for key, expected in (("applicationsourcecode.tar.gz", snapshot(root)),
                          ("applicationsourcecode.tar.gz.BACKUP", old)):
        out = tmp_path / key
        out.mkdir()
        subprocess.run(["tar", "-xzf", "-", "-C", str(out)], input=regions.get(3, bucket, key),
                       check=True)
        assert snapshot(out) == expected

    run = run_streamer(["list", "hourly", "adtsite", "--json"], env)
    assert run.code == 0, run.stderr
    runs = json.loads(run.stdout)["regions"][0]["backups"]
    assert [(r["stamp"], r.get("previous_copy", False)) for r in runs] == \
        [(previous["stamp"], True), (current["stamp"], False)]

    target = tmp_path / "restored"
    run = run_streamer(["restore", "hourly", "adtsite", "--webroot", str(target), "--database"],
                       db_env(env, s.restore_cfg(), root))
    assert run.code == 0, run.stdout + run.stderr
    assert snapshot(target) == snapshot(root)
    restored = await pg_fingerprint(s.target)
    assert restored.pop("public.zzzz")[0] == 0  # ADT's marker table, empty
    assert restored == await pg_fingerprint(s.source)
    older = tmp_path / "older"
    run = run_streamer(["restore", "hourly", "adtsite", "--webroot", str(older),
                        "--at", previous["stamp"]], env)
    assert run.code == 0, run.stdout + run.stderr
    assert snapshot(older) == old
    run = run_streamer(["verify", "hourly", "adtsite"], env)
    assert run.code == 0, run.stdout + run.stderr
    run = run_streamer(["prune"], env)
    assert run.code == 0 and "nothing to prune" in run.stdout
