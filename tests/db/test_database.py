"""Integration tests of streamer.db against the machine's real servers.

PostgreSQL (127.0.0.1:5432, superuser ``postgres``) and MariaDB (127.0.0.1:3306,
``root`` with an empty password) must be running: these tests fail, not skip,
when they are not.  Every test creates uniquely named databases and users and
drops them again.

PostgreSQL on these machines authenticates 127.0.0.1 with ``trust``
(pg_hba.conf), so a wrong password is accepted: the bad-credentials test uses a
role that does not exist, which trust still rejects.  Passwords are proven
against the suite's own scram-sha-256 server (tests/db/test_pg_password.py).

Async tests run on the ``anyio_backend`` of tests/conftest.py (asyncio + uvloop).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import secrets
import stat
import subprocess
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomysql
import anyio
import asyncpg
import pytest

from streamer.db import prepare_dump, restore_client
from streamer.errors import PreflightError
from streamer.process import ProcessSource
from streamer.settings.config import DatabaseConfig, Secret

PG_HOST, PG_PORT, PG_ADMIN = "127.0.0.1", 5432, "postgres"
MY_HOST, MY_PORT, MY_ADMIN = "127.0.0.1", 3306, "root"
BIG_ROWS_PG = 150_000
BIG_DOUBLINGS_MY = 17  # 2**17 = 131072 rows
# Everything an option file or a shell could trip over.
NASTY_PASSWORD = ' p"w\\d #;x \'y $z`{}=!'


def unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"


# ---------------------------------------------------------------- the pipe


@dataclass
class PipeResult:
    dump_rc: int
    restore_rc: int
    dump_stderr: str
    restore_stderr: str
    seconds: float
    cmdlines_scanned: int


def scan_cmdlines(password: str, must_see_pid: int) -> int:
    """Read every process's command line; none may hold the password."""
    needle = password.encode()
    seen_pid = False
    scanned = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile
        scanned += 1
        assert needle not in cmdline, f"password in the command line of pid {entry.name}"
        if int(entry.name) == must_see_pid and cmdline:
            seen_pid = True  # alive (a zombie's cmdline is empty)
    assert seen_pid, "the dump process was not running during the scan"
    return scanned


def pipe(dump: ProcessSource, restore: ProcessSource, password: str = "") -> PipeResult:
    """dump stdout -> restore stdin through an OS pipe; no file on disk.

    The dump starts first with nobody reading: its output (over 64 KiB) fills
    the pipe and blocks it, so it is certainly running while /proc is scanned.
    """
    started = time.monotonic()
    d = subprocess.Popen(
        dump.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=os.environ | dict(dump.env),
    )
    assert d.stdout is not None and d.stderr is not None
    scanned = 0
    try:
        if password:
            time.sleep(0.2)  # let it connect and start writing
            scanned = scan_cmdlines(password, d.pid)
        r = subprocess.Popen(
            restore.argv, stdin=d.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=os.environ | dict(restore.env),
        )
        d.stdout.close()
        with d.stderr:
            dump_err = d.stderr.read().decode(errors="replace")
        dump_rc = d.wait()
        _, restore_err = r.communicate()
    finally:
        if d.poll() is None:
            d.kill()
            d.wait()
    return PipeResult(dump_rc, r.returncode, dump_err, restore_err.decode(errors="replace"),
                      time.monotonic() - started, scanned)


def run_source(source: ProcessSource) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(source.argv, env=os.environ | dict(source.env), capture_output=True,
                          stdin=subprocess.DEVNULL, check=False)


def assert_one_line_preflight(e: PreflightError, *must: str, secret: str = "") -> None:
    text = str(e)
    assert e.exit_code == 2
    assert "\n" not in text
    for m in must:
        assert m in text, (m, text)
    if secret:
        assert secret not in text


# ---------------------------------------------------------------- PostgreSQL


async def pg_admin(database: str = "postgres", user: str = PG_ADMIN, **server: Any) -> Any:
    """A connection to the machine's server, or to another one (``server``:
    asyncpg.connect arguments, e.g. ``PgServer.connect_args()``)."""
    return await asyncpg.connect(**{"host": PG_HOST, "port": PG_PORT, "user": user,
                                    "database": database, **server})


@contextlib.asynccontextmanager
async def pg_databases(*names: str, owner: str | None = None) -> AsyncIterator[None]:
    conn = await pg_admin()
    try:
        for name in names:
            await conn.execute(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))
        yield
    finally:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


@contextlib.asynccontextmanager
async def pg_roles(*names: str, password: str = "") -> AsyncIterator[None]:
    conn = await pg_admin()
    try:
        for name in names:
            await conn.execute(f'CREATE ROLE "{name}" LOGIN')
            if password:
                escaped = password.replace("'", "''")
                await conn.execute(f"ALTER ROLE \"{name}\" PASSWORD '{escaped}'")
        yield
    finally:
        for name in names:
            await conn.execute(f'DROP ROLE IF EXISTS "{name}"')
        await conn.close()


PG_SCHEMA = rf"""
CREATE SCHEMA shop;
CREATE TABLE blobs (id int PRIMARY KEY, b bytea);
INSERT INTO blobs SELECT i, set_byte('\x00'::bytea, 0, i) FROM generate_series(0, 255) i;
INSERT INTO blobs SELECT 256, decode(string_agg(lpad(to_hex(i), 2, '0'), '' ORDER BY i), 'hex')
  FROM generate_series(0, 255) i;
INSERT INTO blobs VALUES (257, ''::bytea), (258, NULL);
CREATE TABLE texts (id serial PRIMARY KEY, t text, note varchar(50), updated timestamptz);
CREATE TABLE nulls (id int PRIMARY KEY, a int, b timestamptz, c numeric(30, 10),
                    d double precision, e jsonb, f int[], g boolean);
INSERT INTO nulls VALUES (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (2, 0, '1970-01-01 00:00:00+00', 'NaN', 'NaN', 'null', '{{}}', false),
  (3, -2147483648, 'infinity', 12345678901234567890.0123456789, 1.7976931348623157e308,
   '{{"k": [1, "ü", null]}}', '{{1,NULL,3}}', true),
  (4, 2147483647, '-infinity', -0.0000000001, -0.0, '"😀"', NULL, NULL),
  (5, 7, '2024-02-29 23:59:59.999999+05:30', 0.1, 0.1, '[]', '{{}}', NULL);
CREATE TABLE big (id bigint PRIMARY KEY, n int NOT NULL, v text, ts timestamptz);
INSERT INTO big SELECT i, i % 1000, md5(i::text), '2024-01-01'::timestamptz + i * interval '1 s'
  FROM generate_series(1, {BIG_ROWS_PG}) i;
CREATE TABLE empty_t (id int);
CREATE TABLE shop."Order ""Items"" Tbl" (id int PRIMARY KEY, big_id bigint REFERENCES big (id),
                                         qty int);
INSERT INTO shop."Order ""Items"" Tbl" SELECT i, i, i * 2 FROM generate_series(1, 500) i;
CREATE VIEW big_summary AS SELECT n, count(*) AS c, max(v) AS m FROM big GROUP BY n;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated := clock_timestamp(); NEW.note := coalesce(NEW.note, 'touched'); RETURN NEW; END
$$;
CREATE TRIGGER texts_touch BEFORE INSERT OR UPDATE ON texts
  FOR EACH ROW EXECUTE FUNCTION touch();
"""

TEXTS = [
    "emoji 😀🎉👍🏽 and ZWJ 👩‍👩‍👧",
    "CJK 漢字 かな カナ 한국어",
    "quote ' dq \" bs \\ tab \t nl \n cr \r end",
    "",
    None,
    "combining é ñ Z̷a̷l̷g̷o",
    "long ✓ " * 20000,
    "\\N \\. COPY markers",
]

PG_TABLES = ["public.big", "public.blobs", "public.empty_t", "public.nulls", "public.texts",
             'shop.Order "Items" Tbl']


async def pg_populate(database: str, owner: str, **server: Any) -> None:
    conn = await pg_admin(database, owner, **server)
    try:
        await conn.execute(PG_SCHEMA)
        await conn.executemany("INSERT INTO texts (t) VALUES ($1)", [(t,) for t in TEXTS])
        await conn.execute("INSERT INTO texts (t, note) VALUES (NULL, NULL)")
    finally:
        await conn.close()


def pg_quote(key: str) -> str:
    schema, table = key.split(".", 1)
    return '"' + schema + '"."' + table.replace('"', '""') + '"'


async def pg_fingerprint(database: str, **server: Any) -> dict[str, tuple[int, str]]:
    """Row count and an md5 over every row's text of every table (and the view)."""
    conn = await pg_admin(database, **server)
    try:
        await conn.execute("SET TimeZone = 'UTC'; SET extra_float_digits = 3")
        keys = [f"{r[0]}.{r[1]}" for r in await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema IN ('public', 'shop') ORDER BY 1, 2")]
        out: dict[str, tuple[int, str]] = {}
        for key in keys:
            row = await conn.fetchrow(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"
                f" FROM {pg_quote(key)} t")
            out[key] = (int(row[0]), str(row[1]))
        out["sequence texts_id_seq"] = (
            int(await conn.fetchval("SELECT last_value FROM texts_id_seq")), "")
        triggers = await conn.fetch(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1")
        out["triggers"] = (len(triggers), ",".join(str(t[0]) for t in triggers))
        out["function touch"] = (
            int(await conn.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 'touch'")), "")
        return out
    finally:
        await conn.close()


@dataclass
class PgSetup:
    source: str
    target: str
    owner: str
    restorer: str
    password: str

    def cfg(self, **kw: Any) -> DatabaseConfig:
        base = DatabaseConfig(engine="postgres", host=PG_HOST, port=PG_PORT, user=self.owner,
                              password=Secret(self.password), name=self.source, min_tables=6)
        return dataclasses.replace(base, **kw)

    def restore_cfg(self) -> DatabaseConfig:
        # Another role, into a fresh database it owns: --no-owner/--no-privileges matter.
        return self.cfg(user=self.restorer, name=self.target)


@pytest.fixture
async def pg_setup() -> AsyncIterator[PgSetup]:
    s = PgSetup(unique("st_src"), unique("st_dst"), unique("st_owner"), unique("st_restorer"),
                "pg-" + secrets.token_hex(8))
    async with pg_roles(s.owner, s.restorer, password=s.password):
        async with pg_databases(s.source, owner=s.owner), \
                pg_databases(s.target, owner=s.restorer):
            await pg_populate(s.source, s.owner)
            yield s


@pytest.mark.anyio
async def test_postgres_dump_restores_identically(pg_setup: PgSetup) -> None:
    s = pg_setup
    before = await pg_fingerprint(s.source)
    async with prepare_dump(s.cfg()) as dump:
        assert dump.source.name == "database"
        assert s.password not in " ".join(dump.source.argv)
        assert dump.source.env["PGPASSWORD"] == s.password
        assert any(a.startswith("--snapshot=") for a in dump.source.argv)
        info = dump.info
        assert info.engine == "postgres" and info.database == s.source
        assert info.server_version.split(".")[0].isdigit()
        assert info.counts_match_dump
        assert sorted(info.tables) == PG_TABLES
        with restore_client(s.restore_cfg()) as restore:
            assert s.password not in " ".join(restore.argv)
            result = await anyio.to_thread.run_sync(pipe, dump.source, restore, s.password)
    assert result.dump_rc == 0, result.dump_stderr
    assert result.restore_rc == 0, result.restore_stderr
    assert result.cmdlines_scanned > 1

    after = await pg_fingerprint(s.target)
    assert after == before
    assert after["public.big"][0] == BIG_ROWS_PG
    assert after["public.blobs"][0] == 259
    for key, count in info.tables.items():
        assert before[key][0] == count, key
    manifest = info.to_manifest()
    assert manifest["tables"] == dict(info.tables)
    assert manifest["row_count"] == sum(info.tables.values())
    assert s.password not in repr(manifest)


@pytest.mark.anyio
async def test_postgres_dump_reads_the_counted_snapshot(pg_setup: PgSetup) -> None:
    s = pg_setup
    writer = await pg_admin(s.source, s.owner)
    try:
        async with prepare_dump(s.cfg()) as dump:
            # The counting transaction stays open while the context is.
            admin = await pg_admin()
            try:
                states = await admin.fetch(
                    "SELECT state FROM pg_stat_activity"
                    " WHERE datname = $1 AND application_name = 'streamer'", s.source)
            finally:
                await admin.close()
            assert [r[0] for r in states] == ["idle in transaction"]
            # Committed after the counts, before the dump starts.
            await writer.execute(
                f"INSERT INTO big SELECT i, 0, 'late', now()"
                f" FROM generate_series({BIG_ROWS_PG + 1}, {BIG_ROWS_PG + 1000}) i")
            await writer.execute("DELETE FROM blobs WHERE id < 100")
            await writer.execute("CREATE TABLE late_table (x int)")
            with restore_client(s.restore_cfg()) as restore:
                result = await anyio.to_thread.run_sync(pipe, dump.source, restore)
            assert result.dump_rc == 0, result.dump_stderr
            assert result.restore_rc == 0, result.restore_stderr
            argv = dump.source
            counted = dict(dump.info.tables)
        # Out of the context the snapshot is gone: the same command now fails.
        late = await anyio.to_thread.run_sync(run_source, argv)
        assert late.returncode != 0
        assert b"snapshot" in late.stderr
    finally:
        await writer.close()

    restored = await pg_fingerprint(s.target)
    source_now = await pg_fingerprint(s.source)
    assert counted["public.big"] == BIG_ROWS_PG
    assert counted["public.blobs"] == 259
    assert source_now["public.big"][0] == BIG_ROWS_PG + 1000
    assert source_now["public.blobs"][0] == 159
    assert "public.late_table" in source_now
    assert "public.late_table" not in restored
    for key, count in counted.items():
        assert restored[key][0] == count, key
    # The session is gone with the context.
    admin = await pg_admin()
    try:
        left = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = $1 AND application_name = 'streamer'", s.source)
    finally:
        await admin.close()
    assert left == 0


@pytest.mark.anyio
async def test_postgres_preflight_errors() -> None:
    name = unique("st_few")
    async with pg_databases(name):
        conn = await pg_admin(name)
        try:
            await conn.execute("CREATE TABLE a (x int); CREATE TABLE b (x int); CREATE VIEW v AS"
                               " SELECT * FROM a")
        finally:
            await conn.close()
        good = DatabaseConfig(engine="postgres", host=PG_HOST, port=PG_PORT, user=PG_ADMIN,
                              password=Secret("pw-" + secrets.token_hex(6)), name=name,
                              min_tables=2)
        async with prepare_dump(good) as dump:
            assert dict(dump.info.tables) == {"public.a": 0, "public.b": 0}

        with pytest.raises(PreflightError) as e:
            async with prepare_dump(dataclasses.replace(good, min_tables=3)):
                pass
        assert_one_line_preflight(e.value, "2 tables", "3", f"{PG_HOST}:{PG_PORT}", name,
                                  secret=good.password)

        # trust auth accepts any password, but not a role that does not exist
        ghost = unique("st_ghost")
        with pytest.raises(PreflightError) as e:
            async with prepare_dump(dataclasses.replace(good, user=ghost)):
                pass
        assert_one_line_preflight(e.value, "login failed", ghost, "DB_USERNAME",
                                  secret=good.password)

        with pytest.raises(PreflightError) as e:
            async with prepare_dump(dataclasses.replace(good, name=name + "_missing")):
                pass
        assert_one_line_preflight(e.value, "does not exist", "DB_NAME", secret=good.password)

    with pytest.raises(PreflightError) as e:
        async with prepare_dump(dataclasses.replace(good, port=1)):
            pass
    assert_one_line_preflight(e.value, "cannot connect", "127.0.0.1:1", PG_ADMIN, name,
                              "DB_HOST", secret=good.password)


# ---------------------------------------------------------------- MariaDB


async def my_admin(database: str | None = None, user: str = MY_ADMIN,
                   password: str = "") -> Any:
    conn = await aiomysql.connect(host=MY_HOST, port=MY_PORT, user=user, password=password,
                                  db=database, charset="utf8mb4", autocommit=True)
    async with conn.cursor() as cur:
        await cur.execute("SET SESSION sql_notes = 0")  # "IF EXISTS" notes are no warnings
    return conn


async def my_exec(conn: Any, *statements: str, args: Any = None) -> None:
    async with conn.cursor() as cur:
        for sql in statements:
            with warnings.catch_warnings():
                # "Event scheduler is switched off": CREATE EVENT works regardless.
                warnings.simplefilter("ignore", aiomysql.Warning)
                await cur.execute(sql, args)


def my_quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


MY_SCHEMA = [
    "CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB",
    "CREATE TABLE texts (id INT AUTO_INCREMENT PRIMARY KEY, t LONGTEXT, note VARCHAR(50))"
    " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE nulls (id INT PRIMARY KEY, a INT NULL, b DATETIME(6) NULL,"
    " c DECIMAL(30,10) NULL, d DOUBLE NULL, e JSON NULL, f ENUM('x','y') NULL, g BIT(8) NULL,"
    " h DATE NULL) ENGINE=InnoDB",
    "INSERT INTO nulls VALUES (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),"
    " (2, 0, '1970-01-01 00:00:01', 0, 0, 'null', 'x', b'0', '1000-01-01'),"
    " (3, -2147483648, '2038-01-19 03:14:07.999999', 12345678901234567890.0123456789,"
    "  1.7976931348623157e308, '{\"k\": [1, \"ü\", null]}', 'y', b'11111111', '9999-12-31'),"
    " (4, 2147483647, '2024-02-29 23:59:59.5', -0.0000000001, 0.1, '\"😀\"', NULL, NULL, NULL)",
    "CREATE TABLE big (id INT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL, v CHAR(32),"
    " d DATETIME, f DOUBLE) ENGINE=InnoDB",
    "INSERT INTO big (n, v, d, f) VALUES (0, MD5('0'), '2024-01-01', 0.5)",
    *[
        "INSERT INTO big (n, v, d, f) SELECT (id * 7 + n) % 1000, MD5(CONCAT(id, 'x', n)),"
        " d + INTERVAL id SECOND, f * 1.5 + id FROM big"
    ] * BIG_DOUBLINGS_MY,
    "CREATE TABLE empty_t (id INT) ENGINE=InnoDB",
    "CREATE TABLE `odd ``name`` tbl` (id INT PRIMARY KEY, big_id INT, label VARCHAR(20),"
    " FOREIGN KEY (big_id) REFERENCES big (id)) ENGINE=InnoDB",
    "INSERT INTO `odd ``name`` tbl` SELECT id, id, CONCAT('row ', id) FROM big WHERE id <= 500",
    "CREATE TABLE aria_t (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=Aria",
    "INSERT INTO aria_t VALUES (1, 'one'), (2, NULL)",
    "CREATE VIEW big_summary AS SELECT n, COUNT(*) AS c, MAX(v) AS m FROM big GROUP BY n",
    "CREATE TRIGGER texts_bi BEFORE INSERT ON texts FOR EACH ROW"
    " SET NEW.note = COALESCE(NEW.note, CONCAT('len ', CHAR_LENGTH(NEW.t)))",
    "CREATE FUNCTION f_double(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
    "CREATE PROCEDURE p_count(OUT c INT) READS SQL DATA SELECT COUNT(*) INTO c FROM big",
    "CREATE EVENT ev_cleanup ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM empty_t",
]

MY_TABLES = ["aria_t", "big", "blobs", "empty_t", "nulls", "odd `name` tbl", "texts"]


async def my_populate(database: str) -> None:
    conn = await my_admin(database)
    try:
        await my_exec(conn, *MY_SCHEMA)
        async with conn.cursor() as cur:
            # As hex: aiomysql 0.3.2 cannot escape bytes parameters with PyMySQL 1.2
            # (it imports the removed escape_bytes_prefixed).
            blobs: list[tuple[int, str | None]] = [(i, f"{i:02x}") for i in range(256)]
            every = bytes(range(256)).hex()
            blobs += [(256, every), (257, ""), (258, None), (259, every * 4096)]
            await cur.executemany("INSERT INTO blobs VALUES (%s, UNHEX(%s))", blobs)
            texts = [*TEXTS, "NUL \x00 inside"]
            await cur.executemany("INSERT INTO texts (t) VALUES (%s)", [(t,) for t in texts])
    finally:
        conn.close()


async def my_fingerprint(database: str) -> dict[str, tuple[int, str]]:
    """Row count and a sha256 over every row of every table, hashed here."""
    conn = await my_admin(database)
    try:
        out: dict[str, tuple[int, str]] = {}
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
                " ORDER BY TABLE_NAME", (database,))
            names = [str(r[0]) for r in await cur.fetchall()]
            for name in names:
                await cur.execute(f"SELECT * FROM {my_quote(name)}")
                rows = sorted(repr(r) for r in await cur.fetchall())
                digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()
                out[name] = (len(rows), digest)
            for kind, sql in [
                ("triggers", "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS"
                             " WHERE TRIGGER_SCHEMA = %s ORDER BY 1"),
                ("routines", "SELECT ROUTINE_NAME FROM information_schema.ROUTINES"
                             " WHERE ROUTINE_SCHEMA = %s ORDER BY 1"),
                ("events", "SELECT EVENT_NAME FROM information_schema.EVENTS"
                           " WHERE EVENT_SCHEMA = %s ORDER BY 1"),
            ]:
                await cur.execute(sql, (database,))
                found = [str(r[0]) for r in await cur.fetchall()]
                out[kind] = (len(found), ",".join(found))
            await cur.execute("SELECT f_double(21)")
            out["f_double(21)"] = (int((await cur.fetchone())[0]), "")
        return out
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def my_databases(*names: str) -> AsyncIterator[None]:
    conn = await my_admin()
    try:
        for name in names:
            await my_exec(conn, f"CREATE DATABASE {my_quote(name)} CHARACTER SET utf8mb4")
        yield
    finally:
        for name in names:
            await my_exec(conn, f"DROP DATABASE IF EXISTS {my_quote(name)}")
        conn.close()


@contextlib.asynccontextmanager
async def my_user(name: str, password: str) -> AsyncIterator[None]:
    conn = await my_admin()
    try:
        await my_exec(conn, f"CREATE USER '{name}'@'127.0.0.1' IDENTIFIED BY %s", args=(password,))
        await my_exec(conn, f"GRANT ALL ON *.* TO '{name}'@'127.0.0.1'")
        yield
    finally:
        await my_exec(conn, f"DROP USER IF EXISTS '{name}'@'127.0.0.1'")
        conn.close()


@dataclass
class MySetup:
    source: str
    target: str
    user: str
    password: str

    def cfg(self, **kw: Any) -> DatabaseConfig:
        base = DatabaseConfig(engine="maria", host=MY_HOST, port=MY_PORT, user=self.user,
                              password=Secret(self.password), name=self.source, min_tables=7)
        return dataclasses.replace(base, **kw)


@pytest.fixture
async def my_setup() -> AsyncIterator[MySetup]:
    s = MySetup(unique("st_src"), unique("st_dst"), "st_" + secrets.token_hex(4),
                NASTY_PASSWORD + secrets.token_hex(4))
    async with my_user(s.user, s.password), my_databases(s.source, s.target):
        await my_populate(s.source)
        yield s


def option_file(source: ProcessSource) -> Path:
    first = source.argv[1]
    assert first.startswith("--defaults-file="), source.argv
    return Path(first.split("=", 1)[1])


def assert_private(path: Path, password: str) -> None:
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.getuid()
    # The file holds the password (escaped for the option-file syntax).
    assert password[-8:] in path.read_text(encoding="utf-8")


@pytest.mark.anyio
async def test_mariadb_dump_restores_identically(my_setup: MySetup) -> None:
    s = my_setup
    before = await my_fingerprint(s.source)
    async with prepare_dump(s.cfg()) as dump:
        assert dump.source.name == "database"
        assert all(s.password not in a for a in dump.source.argv)
        assert s.password not in repr(dict(dump.source.env))
        dump_options = option_file(dump.source)
        assert_private(dump_options, s.password)
        info = dump.info
        assert info.engine == "maria" and info.database == s.source
        assert "MariaDB" in info.server_version
        assert sorted(info.tables) == MY_TABLES
        with restore_client(s.cfg(name=s.target)) as restore:
            assert all(s.password not in a for a in restore.argv)
            restore_options = option_file(restore)
            assert_private(restore_options, s.password)
            result = await anyio.to_thread.run_sync(pipe, dump.source, restore, s.password)
        assert not restore_options.exists()
    assert not dump_options.exists()
    assert result.dump_rc == 0, result.dump_stderr
    assert result.restore_rc == 0, result.restore_stderr
    assert result.cmdlines_scanned > 1

    after = await my_fingerprint(s.target)
    assert after == before
    assert after["big"][0] == 2**BIG_DOUBLINGS_MY
    assert after["blobs"][0] == 260
    assert after["triggers"] == (1, "texts_bi")
    assert after["routines"] == (2, "f_double,p_count")
    assert after["events"] == (1, "ev_cleanup")
    for name, count in info.tables.items():
        assert before[name][0] == count, name
    assert s.password not in repr(info.to_manifest())


@pytest.mark.anyio
async def test_mariadb_option_file_removed_on_error(my_setup: MySetup) -> None:
    s = my_setup
    with pytest.raises(RuntimeError):
        async with prepare_dump(s.cfg()) as dump:
            path = option_file(dump.source)
            assert path.exists()
            raise RuntimeError("pipeline failed")
    assert not path.exists()
    with pytest.raises(RuntimeError), restore_client(s.cfg()) as restore:
        path = option_file(restore)
        raise RuntimeError("restore failed")
    assert not path.exists()


@pytest.mark.anyio
async def test_mariadb_preflight_errors(my_setup: MySetup) -> None:
    s = my_setup
    wrong = "wrong-" + secrets.token_hex(6)
    with pytest.raises(PreflightError) as e:
        async with prepare_dump(s.cfg(password=Secret(wrong))):
            pass
    assert_one_line_preflight(e.value, "login failed", f"{MY_HOST}:{MY_PORT}", s.user, s.source,
                              "DB_PASSWORD", secret=wrong)
    assert s.password not in str(e.value)

    with pytest.raises(PreflightError) as e:
        async with prepare_dump(s.cfg(min_tables=8)):
            pass
    assert_one_line_preflight(e.value, "7 tables", "8", s.source, "STREAMER_MIN_TABLES",
                              secret=s.password)

    with pytest.raises(PreflightError) as e:
        async with prepare_dump(s.cfg(name=s.source + "_missing")):
            pass
    assert_one_line_preflight(e.value, "does not exist", "DB_NAME", secret=s.password)

    with pytest.raises(PreflightError) as e:
        async with prepare_dump(s.cfg(port=1)):
            pass
    assert_one_line_preflight(e.value, "cannot connect", "127.0.0.1:1", s.user, s.source,
                              "DB_HOST", secret=s.password)


@pytest.mark.anyio
async def test_mariadb_backup_user_needs_event_privilege(my_setup: MySetup) -> None:
    """mariadb-dump --events fails mid-dump without EVENT: caught before any upload."""
    s = my_setup
    user, password = "st_" + secrets.token_hex(4), "pw-" + secrets.token_hex(6)
    conn = await my_admin()
    try:
        await my_exec(conn, f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", args=(password,))
        await my_exec(conn, f"GRANT SELECT, SHOW VIEW, TRIGGER ON {my_quote(s.source)}.*"
                            f" TO '{user}'@'127.0.0.1'")
        cfg = s.cfg(user=user, password=Secret(password))
        with pytest.raises(PreflightError) as e:
            async with prepare_dump(cfg):
                pass
        assert_one_line_preflight(e.value, "events", "GRANT EVENT", secret=password)

        await my_exec(conn, f"GRANT EVENT ON {my_quote(s.source)}.* TO '{user}'@'127.0.0.1'")
        async with prepare_dump(cfg) as dump:
            done = await anyio.to_thread.run_sync(run_source, dump.source)
        assert done.returncode == 0, done.stderr
        assert b"INSERT INTO `big`" in done.stdout
    finally:
        await my_exec(conn, f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        conn.close()


def test_restore_client_argv() -> None:
    cfg = DatabaseConfig(engine="postgres", host=PG_HOST, port=PG_PORT, user="u",
                         password=Secret("s3cret"), name="site")
    with restore_client(cfg) as src:
        assert "s3cret" not in " ".join(src.argv)
        assert src.env["PGPASSWORD"] == "s3cret"
        assert "--set=ON_ERROR_STOP=1" in src.argv
        assert "--single-transaction" in src.argv and "--file=-" in src.argv


def test_no_database_engine() -> None:
    with pytest.raises(ValueError), restore_client(DatabaseConfig()):
        pass


@pytest.mark.anyio
async def test_prepare_dump_needs_an_engine() -> None:
    with pytest.raises(ValueError):
        async with prepare_dump(DatabaseConfig()):
            pass
