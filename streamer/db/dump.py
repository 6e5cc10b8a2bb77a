"""The database half of a backup: preflight, row counts, and the dump command.

``prepare_dump(cfg)`` connects with asyncpg (PostgreSQL) or aiomysql
(MariaDB/MySQL), checks that the database is reachable, that the credentials
work and that it holds at least ``cfg.min_tables`` base tables (else
``PreflightError``, exit 2, one line, never the password), counts every base
table's rows, and yields the ``ProcessSource`` whose stdout is the SQL dump.

Consistency of counts and dump:

- PostgreSQL: the counts are taken inside a REPEATABLE READ transaction that
  exported its snapshot (``pg_export_snapshot()``); ``pg_dump --snapshot``
  imports it, so counts and dump describe exactly the same data.  A snapshot can
  only be imported while the exporting transaction is open, so the connection
  and transaction stay open until the context manager exits: start the dump
  inside the ``async with`` block and leave it only after the dump has exited.
  Our transaction holds ACCESS SHARE locks on every table (as pg_dump's does),
  so DDL on those tables waits until the context exits.
- MariaDB/MySQL have no exportable snapshots.  The counts come from one
  ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` and the dump
  (``--single-transaction``) takes its own, a moment later: under concurrent
  writes the counts can differ from the dump (``counts_match_dump`` is False in
  the manifest).  ``--single-transaction`` is consistent for InnoDB only;
  MyISAM/Aria tables are dumped without a lock.

Secrets: PostgreSQL clients get the password in ``PGPASSWORD`` (``source.env``).
MariaDB/MySQL clients get it in a 0600 option file (see ``_options_file``),
removed when the context exits; ``MYSQL_PWD`` is deprecated (MySQL 8.0) and,
like ``--defaults-extra-file``, loses to a ``password`` in the user's
``~/.my.cnf`` -- which would make the dump log in differently from the
preflight.  ``--defaults-file`` reads only our file, so the client sees exactly
the configured settings, as aiomysql does.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiomysql
import anyio
import asyncpg

from streamer.errors import PreflightError
from streamer.process import ProcessSource
from streamer.settings.config import DatabaseConfig

CONNECT_TIMEOUT = 10.0  # seconds for connect + authentication
CLOSE_TIMEOUT = 5.0  # seconds for a graceful close before the socket is dropped
# Largest packet the MySQL clients accept (the protocol's maximum): a row with
# a big BLOB must fit in one packet, in the dump and again in the restore.
MAX_ALLOWED_PACKET = "1G"

_ENGINE_NAMES = {"maria": "MariaDB", "mysql": "MySQL", "postgres": "PostgreSQL"}


@dataclass(frozen=True)
class DatabaseInfo:
    """What the manifest records about the dumped database."""

    engine: str  # "maria" | "mysql" | "postgres"
    server_version: str  # as the server reports it
    database: str
    # Every base table's exact row count (SELECT COUNT(*)); key "schema.table"
    # for PostgreSQL, "table" for MariaDB/MySQL; sorted by key.
    tables: Mapping[str, int] = field(default_factory=dict)
    # True when the counts were taken in the very snapshot the dump reads
    # (PostgreSQL); False when the dump takes its own transaction (MySQL).
    counts_match_dump: bool = False

    def to_manifest(self) -> dict[str, object]:
        return {
            "engine": self.engine,
            "server_version": self.server_version,
            "database": self.database,
            "table_count": len(self.tables),
            "row_count": sum(self.tables.values()),
            "counts_match_dump": self.counts_match_dump,
            "tables": dict(self.tables),
        }


@dataclass(frozen=True)
class DatabaseDump:
    source: ProcessSource  # name="database"; stdout is the plain SQL dump
    info: DatabaseInfo


@asynccontextmanager
async def prepare_dump(cfg: DatabaseConfig) -> AsyncIterator[DatabaseDump]:
    """Preflight, count, and yield the dump command; clean up on exit.

    Run the dump (and wait for it to exit) inside the ``async with`` block: the
    PostgreSQL snapshot and the MySQL option file live exactly as long as it.
    """
    if cfg.engine == "postgres":
        async with _prepare_postgres(cfg) as dump:
            yield dump
    elif cfg.engine in ("maria", "mysql"):
        async with _prepare_mysql(cfg) as dump:
            yield dump
    else:
        raise ValueError(f"no database to dump (engine {cfg.engine!r})")


@contextmanager
def restore_client(cfg: DatabaseConfig) -> Iterator[ProcessSource]:
    """The engine's client reading a plain SQL dump on stdin into ``cfg.name``.

    PostgreSQL: ``psql`` in one transaction, stopping at the first error (the
    target database must exist and should be empty).  MariaDB/MySQL: the
    ``mariadb``/``mysql`` client, which stops at the first error; its option
    file is removed when the context exits, so run the client inside it.
    psql's query output goes to /dev/null; the MySQL client prints nothing for
    a dump.  Give the process stdin=PIPE and read its stderr for errors.
    """
    where = _where(cfg)
    if cfg.engine == "postgres":
        psql = _require_binary(("psql",), "install the PostgreSQL client (postgresql-client)")
        yield ProcessSource(
            name="database",
            argv=(
                psql,
                "--no-psqlrc",
                "--quiet",
                "--no-password",
                "--set=ON_ERROR_STOP=1",
                "--single-transaction",  # applies to --file, not to plain stdin
                "--file=-",
                "--output=/dev/null",
                *_pg_conn_flags(cfg),
            ),
            env=_pg_env(cfg),
        )
    elif cfg.engine in ("maria", "mysql"):
        client = _require_binary(
            ("mariadb", "mysql"), "install the MariaDB or MySQL client (mariadb-client)"
        )
        with _options_file(cfg, where) as options:
            yield ProcessSource(
                name="database",
                argv=(
                    client,
                    f"--defaults-file={options}",  # must be the first argument
                    *_my_conn_flags(cfg),
                    "--batch",
                    f"--max-allowed-packet={MAX_ALLOWED_PACKET}",
                    f"--database={cfg.name}",
                ),
            )
    else:
        raise ValueError(f"no database to restore (engine {cfg.engine!r})")


# ---------------------------------------------------------------- PostgreSQL

# Base tables whose data pg_dump writes: ordinary and partitioned tables
# outside the system schemas (user schemas cannot start with "pg_"), not
# temporary, not owned by an extension (CREATE EXTENSION recreates those).
_PG_TABLES = r"""
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND c.relpersistence <> 't'
  AND n.nspname <> 'information_schema'
  AND n.nspname NOT LIKE 'pg\_%'
  AND NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_depend d
    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


@asynccontextmanager
async def _prepare_postgres(cfg: DatabaseConfig) -> AsyncIterator[DatabaseDump]:
    where = _where(cfg)
    pg_dump = _require_binary(("pg_dump",), "install the PostgreSQL client (postgresql-client)")
    conn = await _pg_connect(cfg, where)
    try:
        try:
            # As pg_dump does for itself: our session must outlive slow counts
            # and idle time while the dump runs, whatever the role's defaults.
            await conn.execute(
                "SET statement_timeout = 0; SET lock_timeout = 0;"
                " SET idle_in_transaction_session_timeout = 0"
            )
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = str(await conn.fetchval("SELECT pg_catalog.pg_export_snapshot()"))
            version = str(await conn.fetchval("SHOW server_version"))
            version_num = int(await conn.fetchval("SHOW server_version_num"))
            names = [(str(r[0]), str(r[1])) for r in await conn.fetch(_PG_TABLES)]
            _check_min_tables(cfg, where, len(names))
            tables: dict[str, int] = {}
            for schema, table in names:
                try:
                    count = await conn.fetchval(
                        f"SELECT count(*) FROM {_pg_ident(schema)}.{_pg_ident(table)}"
                    )
                except asyncpg.InsufficientPrivilegeError:
                    raise PreflightError(
                        f"{where}: user may not read table {schema}.{table}",
                        "grant the backup user SELECT on every table of the database",
                    ) from None
                tables[f"{schema}.{table}"] = int(count)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
            raise _pg_error(cfg, where, e) from None
        await _check_pg_dump_version(pg_dump, version_num, where)
        argv = (
            pg_dump,
            "--format=plain",
            # A restore by another role into a fresh database must not need
            # the source's roles: no ALTER ... OWNER TO, no GRANT/REVOKE.  The
            # restoring user owns everything; re-grant other roles after.
            "--no-owner",
            "--no-privileges",
            "--no-password",  # never prompt: fail instead
            f"--snapshot={snapshot}",
            *_pg_conn_flags(cfg),
        )
        info = DatabaseInfo("postgres", version, cfg.name, tables, counts_match_dump=True)
        yield DatabaseDump(ProcessSource("database", argv, env=_pg_env(cfg)), info)
    finally:
        await _pg_close(conn)


async def _pg_connect(cfg: DatabaseConfig, where: str) -> Any:
    try:
        with anyio.fail_after(CONNECT_TIMEOUT + 1):
            return await asyncpg.connect(
                host=cfg.host,
                port=cfg.effective_port,
                user=cfg.user,
                password=cfg.password or None,  # None: PGPASSWORD / ~/.pgpass, as libpq
                database=cfg.name,
                timeout=CONNECT_TIMEOUT,
                server_settings={"application_name": "streamer"},
            )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
        raise _pg_error(cfg, where, e) from None


async def _pg_close(conn: Any) -> None:
    """End the snapshot transaction and the session, even when cancelled."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
        # The server rolls the read-only transaction back; on any error the
        # socket is dropped below.
        with contextlib.suppress(Exception):
            await conn.close()
    if not conn.is_closed():
        conn.terminate()


def _pg_error(cfg: DatabaseConfig, where: str, e: BaseException) -> PreflightError:
    reason = _clean(_describe(e), cfg)
    state = getattr(e, "sqlstate", None)
    if state in ("28P01", "28000"):
        return PreflightError(f"{where}: login failed: {reason}",
                              "check DB_USERNAME and DB_PASSWORD, and pg_hba.conf on the server")
    if state == "3D000":
        return PreflightError(f"{where}: database does not exist: {reason}", "check DB_NAME")
    if state == "42501":
        return PreflightError(f"{where}: permission denied: {reason}",
                              "grant the backup user CONNECT and SELECT on the database")
    if isinstance(e, (OSError, asyncpg.InterfaceError)):
        return PreflightError(f"{where}: cannot connect: {reason}",
                              "check DB_HOST and DB_PORT and that the server is running")
    return PreflightError(f"{where}: preflight failed: {reason}", "check the database server")


async def _check_pg_dump_version(pg_dump: str, server_num: int, where: str) -> None:
    """pg_dump refuses a server newer than itself: find that out before uploading."""
    try:
        done = await anyio.run_process([pg_dump, "--version"], check=False)
    except OSError as e:
        raise PreflightError(f"{pg_dump} cannot run: {e}", "reinstall postgresql-client") from None
    m = re.search(rb"\d+", done.stdout)
    if not m:
        return
    client = int(m.group())
    server = server_num // 10000
    if client < server:
        raise PreflightError(
            f"{where}: pg_dump {client} cannot dump a PostgreSQL {server} server",
            f"install postgresql-client {server} or newer",
        )


def _pg_conn_flags(cfg: DatabaseConfig) -> tuple[str, ...]:
    return (
        f"--host={cfg.host}",
        f"--port={cfg.effective_port}",
        f"--username={cfg.user}",
        f"--dbname={_libpq_dbname(cfg.name)}",
    )


def _libpq_dbname(name: str) -> str:
    # A --dbname containing "=" or starting with a URI prefix is parsed as a
    # connection string; spell such names as one.
    if "=" in name or name.startswith(("postgresql://", "postgres://")):
        quoted = name.replace("\\", "\\\\").replace("'", "\\'")
        return f"dbname='{quoted}'"
    return name


def _pg_env(cfg: DatabaseConfig) -> dict[str, str]:
    env = {"PGCONNECT_TIMEOUT": str(int(CONNECT_TIMEOUT)), "PGAPPNAME": "streamer"}
    if cfg.password:
        env["PGPASSWORD"] = str(cfg.password)
    return env


def _pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------- MariaDB / MySQL

_MY_TABLES = (
    "SELECT TABLE_NAME FROM information_schema.TABLES"
    " WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')"
    " ORDER BY TABLE_NAME"
)


@asynccontextmanager
async def _prepare_mysql(cfg: DatabaseConfig) -> AsyncIterator[DatabaseDump]:
    where = _where(cfg)
    dump = _require_binary(
        ("mariadb-dump", "mysqldump"), "install the MariaDB or MySQL client (mariadb-client)"
    )
    info = await _mysql_info(cfg, where)
    extra: tuple[str, ...] = ()
    if not await _is_mariadb_tool(dump):
        # Oracle's mysqldump: no SET @@GLOBAL.GTID_PURGED (the restore target
        # has its own GTIDs, and setting it needs SUPER).
        extra = ("--set-gtid-purged=OFF",)
    with _options_file(cfg, where) as options:
        argv = (
            dump,
            f"--defaults-file={options}",  # must be the first argument
            *_my_conn_flags(cfg),
            "--single-transaction",  # consistent InnoDB read, no table locks
            "--quick",  # stream rows, do not buffer whole tables
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",  # binary columns as 0x..., the dump stays valid text
            "--no-tablespaces",  # needs PROCESS on MySQL 8; web hosts have none
            f"--max-allowed-packet={MAX_ALLOWED_PACKET}",
            *extra,
            "--",
            cfg.name,  # no --databases: no CREATE DATABASE/USE, restores into any name
        )
        yield DatabaseDump(ProcessSource("database", argv), info)


async def _mysql_info(cfg: DatabaseConfig, where: str) -> DatabaseInfo:
    try:
        with anyio.fail_after(CONNECT_TIMEOUT + 1):
            conn = await aiomysql.connect(
                host=cfg.host,
                port=cfg.effective_port,
                user=cfg.user,
                password=str(cfg.password),
                db=cfg.name,
                charset="utf8mb4",
                connect_timeout=CONNECT_TIMEOUT,
                autocommit=True,
            )
    except (aiomysql.Error, OSError) as e:
        raise _mysql_error(cfg, where, e) from None
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT VERSION()")
            version = str((await cur.fetchone())[0])
            await cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            await cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            await cur.execute(_MY_TABLES, (cfg.name,))
            names = [str(r[0]) for r in await cur.fetchall()]
            _check_min_tables(cfg, where, len(names))
            tables: dict[str, int] = {}
            for name in names:
                await cur.execute(f"SELECT COUNT(*) FROM {_my_ident(name)}")
                tables[name] = int((await cur.fetchone())[0])
            await cur.execute("COMMIT")
            await _check_events_readable(cur, where, cfg.name)
    except (aiomysql.Error, OSError) as e:
        raise _mysql_error(cfg, where, e) from None
    finally:
        conn.close()
    return DatabaseInfo(cfg.engine, version, cfg.name, tables, counts_match_dump=False)


async def _check_events_readable(cur: Any, where: str, name: str) -> None:
    """``--events`` fails the whole dump, mid-stream, without the EVENT privilege."""
    try:
        await cur.execute("SHOW EVENTS")
        await cur.fetchall()
    except aiomysql.OperationalError as e:
        if e.args and e.args[0] == 1044:
            raise PreflightError(
                f"{where}: user may not list the database's events, which the dump includes",
                f"GRANT EVENT ON {_my_ident(name)}.* to the backup user",
            ) from None
        raise


def _mysql_error(cfg: DatabaseConfig, where: str, e: BaseException) -> PreflightError:
    code = e.args[0] if e.args and isinstance(e.args[0], int) else 0
    text = str(e.args[1]) if len(e.args) > 1 else _describe(e)
    if isinstance(e.__cause__, OSError):  # aiomysql wraps the socket error
        cause = _describe(e.__cause__)
        if cause not in text:
            text = f"{text}: {cause}"
    reason = _clean(text, cfg)
    if code in (1045, 1698):
        return PreflightError(f"{where}: login failed: {reason}",
                              "check DB_USERNAME and DB_PASSWORD")
    if code == 1049:
        return PreflightError(f"{where}: database does not exist: {reason}", "check DB_NAME")
    if code in (1044, 1142, 1143, 1227):
        return PreflightError(f"{where}: permission denied: {reason}",
                              "grant the backup user SELECT, SHOW VIEW, TRIGGER, EVENT"
                              " and LOCK TABLES on the database")
    if code in (2003, 2005, 2006, 2013) or isinstance(e, OSError):
        return PreflightError(f"{where}: cannot connect: {reason}",
                              "check DB_HOST and DB_PORT and that the server is running")
    return PreflightError(f"{where}: preflight failed: {reason}", "check the database server")


async def _is_mariadb_tool(binary: str) -> bool:
    if os.path.basename(binary).startswith("mariadb"):
        return True
    try:
        done = await anyio.run_process([binary, "--version"], check=False)
    except OSError:
        return True
    return b"mariadb" in done.stdout.lower()


def _my_conn_flags(cfg: DatabaseConfig) -> tuple[str, ...]:
    # TCP always, as aiomysql connects: "localhost" would otherwise mean the
    # Unix socket, possibly another server or another authentication.
    return (
        f"--host={cfg.host}",
        f"--port={cfg.effective_port}",
        f"--user={cfg.user}",
        "--protocol=TCP",
        "--default-character-set=utf8mb4",
    )


@contextmanager
def _options_file(cfg: DatabaseConfig, where: str) -> Iterator[str]:
    """A 0600 option file holding only the password, removed on exit.

    Written to /dev/shm where there is one (RAM, never on disk, gone at
    reboot even after a SIGKILL), else the temp directory.  mkstemp creates it
    0600 before anything is written.
    """
    shm = "/dev/shm"
    directory = shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None
    try:
        fd, path = tempfile.mkstemp(prefix="streamer-", suffix=".cnf", dir=directory)
    except OSError as e:
        raise PreflightError(f"{where}: cannot create the client option file: {e}",
                             "check that TMPDIR is writable") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f'[client]\npassword="{_cnf_escape(str(cfg.password))}"\n')
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _cnf_escape(value: str) -> str:
    """Escape a value for a double-quoted option-file string (mysys my_default.c)."""
    table = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b"}
    return "".join(table.get(c, c) for c in value)


def _my_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


# ---------------------------------------------------------------- shared


def _where(cfg: DatabaseConfig) -> str:
    engine = _ENGINE_NAMES.get(cfg.engine, cfg.engine)
    return (f"{engine} at {cfg.host}:{cfg.effective_port}"
            f" (user {cfg.user!r}, database {cfg.name!r})")


def _check_min_tables(cfg: DatabaseConfig, where: str, count: int) -> None:
    if count < cfg.min_tables:
        raise PreflightError(
            f"{where}: holds {count} tables, fewer than the {cfg.min_tables} required",
            "check DB_NAME names the site's database, or lower STREAMER_MIN_TABLES",
        )


def _require_binary(names: tuple[str, ...], hint: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise PreflightError(f"{' or '.join(names)} not found on PATH", hint)


def _describe(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _clean(text: str, cfg: DatabaseConfig) -> str:
    """One line, and never the password (a server may echo what it was sent)."""
    line = " ".join(text.split())
    if cfg.password:
        line = line.replace(str(cfg.password), "****")
    return line
