"""PostgreSQL with a password that matters: the suite's own scram-sha-256 server.

The machine's PostgreSQL trusts 127.0.0.1 and accepts any password, so only
against this server (tests/pgserver.py, the ``scram_postgres`` fixture) does a
test prove that ``DB_PASSWORD`` reaches the server -- through the preflight,
pg_dump and psql -- and never a command line, and that a wrong one is one line
and exit 2 before anything is uploaded.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from pgserver import PgServer
from s3util import RegionsEnv, run_streamer
from test_backup_database import CmdlineWatch, db_env, small_webroot, the_manifest
from test_database import BIG_ROWS_PG, PG_TABLES, pg_fingerprint, pg_populate, unique

from streamer.settings.config import DatabaseConfig, Secret

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class ScramSite:
    server: PgServer
    source: str
    target: str
    owner: str
    restorer: str
    password: str  # of both roles

    def cfg(self, user: str = "", name: str = "", password: str = "") -> DatabaseConfig:
        return DatabaseConfig(engine="postgres", host=self.server.host, port=self.server.port,
                              user=user or self.owner, password=Secret(password or self.password),
                              name=name or self.source, min_tables=len(PG_TABLES))


@pytest.fixture
async def scram_site(scram_postgres: PgServer) -> AsyncIterator[ScramSite]:
    """Two roles with a password (one owns the source database, one an empty
    target) on the scram server, the source filled like tests/db/test_database.py."""
    site = ScramSite(scram_postgres, unique("sc_src"), unique("sc_dst"), unique("sc_owner"),
                     unique("sc_restorer"), "pw " + secrets.token_hex(10) + " 'q\"")
    su = scram_postgres.connect_args()
    admin = await asyncpg.connect(database="postgres", **su)
    try:
        escaped = site.password.replace("'", "''")
        for role, db in ((site.owner, site.source), (site.restorer, site.target)):
            await admin.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD \'{escaped}\'')
            await admin.execute(f'CREATE DATABASE "{db}" OWNER "{role}"')
        await pg_populate(site.source, site.owner, host=scram_postgres.host,
                          port=scram_postgres.port, password=site.password)
        yield site
    finally:
        for db in (site.source, site.target):
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        for role in (site.owner, site.restorer):
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


def scram_env(base: dict[str, str], cfg: DatabaseConfig, webroot: Path, home: Path) -> dict[str, str]:
    """The documented DB_* variables only: no PG* variable, no ~/.pgpass to fall back on."""
    env = {k: v for k, v in db_env(base, cfg, webroot).items() if not k.startswith("PG")}
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)
    return env


async def user_tables(database: str, **server: object) -> int:
    conn = await asyncpg.connect(database=database, **server)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"))
    finally:
        await conn.close()


async def test_the_suites_server_demands_the_right_password(scram_site: ScramSite) -> None:
    """The premise of the tests below: this server does check passwords."""
    s, server = scram_site, scram_site.server
    where = {"host": server.host, "port": server.port, "database": s.source, "user": s.owner}
    for wrong in ("wrong-" + s.password, ""):
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(password=wrong, **where)
    conn = await asyncpg.connect(password=s.password, **where)
    await conn.close()
    admin = await asyncpg.connect(database="postgres", **server.connect_args())
    try:
        stored = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                                      s.owner)
        methods = await admin.fetch("SELECT DISTINCT auth_method FROM pg_hba_file_rules")
    finally:
        await admin.close()
    assert stored.startswith("SCRAM-SHA-256$")
    assert [r[0] for r in methods] == ["scram-sha-256"]


async def test_backup_and_restore_with_a_password(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        scram_site: ScramSite) -> None:
    s, server = scram_site, scram_site.server
    su = {"host": server.host, "port": server.port, "user": server.superuser,
          "password": server.password}
    source = await pg_fingerprint(s.source, **su)
    env = scram_env(streamer_env, s.cfg(), small_webroot(tmp_path), tmp_path / "home")
    with CmdlineWatch(s.password, ("pg_dump",)) as watch:
        run = run_streamer(["hourly", "scramsite"], env)
    assert run.code == 0, run.stdout + run.stderr
    assert watch.saw_dump and watch.leaks == []  # pg_dump ran; no argv held the password
    # How pg_dump got it (its environment also inherits streamer's own DB_PASSWORD).
    assert "PGPASSWORD" in watch.dump_env_with_password
    manifest = the_manifest(regions, bucket, 1, "scramsite")
    assert manifest["database"]["tables"]["public.big"] == BIG_ROWS_PG

    wrong = "wrong " + secrets.token_hex(8)
    refused = run_streamer(["restore", "hourly", "scramsite", "--database"], scram_env(
        streamer_env, s.cfg(user=s.restorer, name=s.target, password=wrong), tmp_path / "www",
        tmp_path / "home"))
    # restore has no preflight: psql's refusal is one line and exit 1 (docs/restore.md)
    assert refused.code == 1, refused.stdout + refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "password authentication failed" in refused.stderr
    assert wrong not in refused.stdout + refused.stderr
    assert await user_tables(s.target, **su) == 0  # nothing restored
    restore = scram_env(streamer_env, s.cfg(user=s.restorer, name=s.target), tmp_path / "www",
                        tmp_path / "home")
    run2 = run_streamer(["restore", "hourly", "scramsite", "--database"], restore)
    assert run2.code == 0, run2.stdout + run2.stderr
    assert "restored database of scramsite/hourly/" in run2.stdout
    assert await pg_fingerprint(s.target, **su) == source
    for i in (1, 2, 3):
        assert s.password not in json.dumps(the_manifest(regions, bucket, i, "scramsite"))
    assert s.password not in run.stdout + run.stderr + run2.stdout + run2.stderr


async def test_a_wrong_password_is_one_line_and_exit_2(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        scram_site: ScramSite) -> None:
    s, server = scram_site, scram_site.server
    wrong = "wrong " + secrets.token_hex(8)
    env = scram_env(streamer_env, s.cfg(password=wrong), small_webroot(tmp_path),
                    tmp_path / "home")
    run = run_streamer(["hourly", "scramsite"], env)
    assert run.code == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    line = lines[0]
    assert line.startswith("streamer: ") and "login failed" in line, line
    assert f"{server.host}:{server.port}" in line and s.owner in line, line
    assert "DB_PASSWORD" in line, line
    assert wrong not in run.stdout + run.stderr and s.password not in run.stdout + run.stderr
    for i in (1, 2, 3):
        assert regions.keys(i, bucket) == [] and regions.uploads(i, bucket) == []

