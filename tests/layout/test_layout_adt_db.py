"""The ADT layout's database object, checked with ADT's own commands.

What ADT's scripts do with it (adt-database-scripts, adt-build-machine-scripts):
``GetFromDatastore.sh "backup" "${WEBSITE_NAME}-DB-backup.tar.gz"`` from the
bucket ``<url>-db-<periodicity>``, ``tar xvfz`` it, take ``applicationDB.sql``
(MariaDB/MySQL) or ``applicationDB.psql`` (PostgreSQL), refuse it unless
``tail -n 1 | grep 'zzzz'`` finds the marker, feed it to the client, and
check that the ``zzzz`` table exists.  These tests run exactly those steps
against what streamer stored in three real regions, on the machine's
PostgreSQL and MariaDB.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3util import RegionsEnv, run_streamer
from test_backup_database import db_env, small_webroot
from test_database import (  # noqa: F401  (fixtures)
    MY_ADMIN,
    MY_HOST,
    MY_PORT,
    PG_HOST,
    PG_PORT,
    MySetup,
    PgSetup,
    my_databases,
    my_fingerprint,
    my_setup,
    pg_databases,
    pg_fingerprint,
    pg_setup,
    unique,
)

from streamer.db import prepare_dump
from streamer.layout.adt import DUMPS
from streamer.process import Child

pytestmark = pytest.mark.anyio


@pytest.fixture
def site(regions: RegionsEnv) -> Iterator[str]:
    name = f"www.d{uuid.uuid4().hex[:12]}.test"
    yield name
    dashed = name.replace(".", "-")
    for bucket in (f"{dashed}-hourly", f"{dashed}-db-hourly"):
        regions.delete_bucket_everywhere(bucket)


async def dump_now(cfg: object) -> bytes:
    """What streamer's own dump command writes for this database, right now."""
    async with prepare_dump(cfg) as dump:  # type: ignore[arg-type]
        child = Child.spawn(dump.source.argv, env=dump.source.env)
        out, err = child.proc.communicate()
        assert child.proc.returncode == 0, err
    return out


def comparable(dump: bytes) -> bytes:
    """A dump without what differs between two dumps of the same data: pg_dump's
    random ``\\restrict`` key, mariadb-dump's completion date."""
    lines = dump.split(b"\n")
    return b"\n".join(b"<varies>" if line.startswith((b"\\restrict ", b"\\unrestrict ",
                                                       b"-- Dump completed on "))
                       else line for line in lines)


def adt_extract(data: bytes, where: Path, name: str) -> Path:
    """ADT's InstallApplicationDB.sh: ``tar xvfz`` the object, then its tail check."""
    where.mkdir()
    archive = where / f"{name}-DB-backup.tar.gz"
    archive.write_bytes(data)
    listing = subprocess.run(["/bin/tar", "xvfz", str(archive), "-C", str(where)],
                             capture_output=True, text=True, check=False)
    assert listing.returncode == 0, listing.stderr
    archive.unlink()
    members = listing.stdout.split()
    assert len(members) == 1 and sorted(os.listdir(where)) == members
    dump = where / members[0]
    tail = subprocess.run(f"/usr/bin/tail -n 1 {dump} | /bin/grep 'zzzz'", shell=True,
                          capture_output=True, text=True, check=False)
    assert tail.stdout.strip(), "ADT's check: the last line must name zzzz"
    return dump


async def test_postgres_dump_is_adt_tar_member_and_loads_the_adt_way(
        regions: RegionsEnv, site: str, streamer_env: dict[str, str], tmp_path: Path,
        pg_setup: PgSetup) -> None:  # noqa: F811
    s = pg_setup
    env = {**db_env(streamer_env, s.cfg(), small_webroot(tmp_path)), "STREAMER_LAYOUT": "adt",
           "WEBSITE_URL": site}
    name, dashed = site.split(".")[1], site.replace(".", "-")
    run = run_streamer(["hourly", "adtpg"], env)
    assert run.code == 0, run.stdout + run.stderr
    expected = await dump_now(s.cfg()) + DUMPS["postgres"].suffix
    for i in (1, 2, 3):
        assert regions.keys(i, f"{dashed}-db-hourly") == [f"{name}-DB-backup.tar.gz"]
        assert regions.uploads(i, f"{dashed}-db-hourly") == []
        data = regions.get(i, f"{dashed}-db-hourly", f"{name}-DB-backup.tar.gz")
        dump = adt_extract(data, tmp_path / f"r{i}", name)
        assert dump.name == "applicationDB.psql"
        # byte for byte: the dump, then ADT's marker
        assert comparable(dump.read_bytes()) == comparable(expected)
        assert dump.read_bytes().endswith(DUMPS["postgres"].suffix)

    # ADT's way of loading it: psql with the dump on stdin, then its zzzz check.
    fresh = unique("st_adt")
    async with pg_databases(fresh, owner=s.restorer):
        with dump.open("rb") as sql:
            load = subprocess.run(["psql", "-U", s.restorer, "-h", PG_HOST, "-p", str(PG_PORT),
                                   "-d", fresh], stdin=sql, capture_output=True,
                                  env={**os.environ, "PGPASSWORD": s.password}, check=False)
        assert load.returncode == 0, load.stderr
        exists = subprocess.run(["psql", "-U", s.restorer, "-h", PG_HOST, "-p", str(PG_PORT),
                                 "-d", fresh, "-c", "select exists ( select 1 from "
                                 "information_schema.tables where table_name='zzzz');"],
                                capture_output=True, text=True,
                                env={**os.environ, "PGPASSWORD": s.password}, check=False)
        assert exists.stdout.split()[2] == "t", exists.stdout
        source = await pg_fingerprint(s.source)
        loaded = await pg_fingerprint(fresh)
        assert loaded.pop("public.zzzz")[0] == 0
        assert loaded == source

    # streamer's own restore reads the same object back.
    run = run_streamer(["restore", "hourly", "adtpg", "--database"], db_env(env, s.restore_cfg(),
                                                                             tmp_path))
    assert run.code == 0, run.stdout + run.stderr
    restored = await pg_fingerprint(s.target)
    assert restored.pop("public.zzzz")[0] == 0
    assert restored == source

    # A killed run's upload in the -db- bucket: the next run's cleanup aborts it.
    regions.client(2).create_multipart_upload(Bucket=f"{dashed}-db-hourly",
                                              Key=f"{name}-DB-backup.tar.gz")
    assert regions.uploads(2, f"{dashed}-db-hourly") == [f"{name}-DB-backup.tar.gz"]

    # A second run: the first copy becomes .BACKUP, and still extracts the ADT way.
    time.sleep(1.05)
    run = run_streamer(["hourly", "adtpg"], env)
    assert run.code == 0, run.stdout + run.stderr
    assert regions.uploads(2, f"{dashed}-db-hourly") == []
    assert sorted(regions.keys(2, f"{dashed}-db-hourly")) == [
        f"{name}-DB-backup.tar.gz", f"{name}-DB-backup.tar.gz.BACKUP"]
    previous = regions.get(2, f"{dashed}-db-hourly", f"{name}-DB-backup.tar.gz.BACKUP")
    assert comparable(adt_extract(previous, tmp_path / "previous", name).read_bytes()) == \
        comparable(expected)
    run = run_streamer(["verify", "hourly", "adtpg"], env)
    assert run.code == 0, run.stdout + run.stderr


async def test_mariadb_dump_is_adt_tar_member_and_loads_the_adt_way(
        regions: RegionsEnv, site: str, streamer_env: dict[str, str], tmp_path: Path,
        my_setup: MySetup) -> None:  # noqa: F811
    s = my_setup
    env = {**db_env(streamer_env, s.cfg(), small_webroot(tmp_path)), "STREAMER_LAYOUT": "adt",
           "WEBSITE_URL": site}
    name, dashed = site.split(".")[1], site.replace(".", "-")
    run = run_streamer(["hourly", "adtmy"], env)
    assert run.code == 0, run.stdout + run.stderr
    member = DUMPS["maria"]
    expected = member.prefix + await dump_now(s.cfg()) + member.suffix
    data = regions.get(3, f"{dashed}-db-hourly", f"{name}-DB-backup.tar.gz")
    dump = adt_extract(data, tmp_path / "r3", name)
    assert dump.name == "applicationDB.sql"
    assert comparable(dump.read_bytes()) == comparable(expected)

    # ADT's way: the client with the dump on stdin, then `show tables | grep ^zzzz$`.
    source = await my_fingerprint(s.source)
    fresh = unique("st_adt")
    async with my_databases(fresh):
        client = ["mariadb", "-u", MY_ADMIN, "-h", MY_HOST, f"--port={MY_PORT}", fresh]
        with dump.open("rb") as sql:
            load = subprocess.run(client, stdin=sql, capture_output=True, check=False)
        assert load.returncode == 0, load.stderr
        tables = subprocess.run([*client, "-N", "-r", "-s", "-e", "show tables"],
                                capture_output=True, text=True, check=True).stdout
        assert "zzzz" in tables.split("\n")
        loaded = await my_fingerprint(fresh)
        assert loaded.pop("zzzz")[0] == 0
        assert loaded == source

    run = run_streamer(["restore", "hourly", "adtmy", "--database"],
                       db_env(env, s.cfg(name=s.target), tmp_path))
    assert run.code == 0, run.stdout + run.stderr
    restored = await my_fingerprint(s.target)
    assert restored.pop("zzzz")[0] == 0
    assert restored == source
