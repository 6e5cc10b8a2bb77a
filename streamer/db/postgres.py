"""PostgreSQL: preflight and row counts over asyncpg, ``pg_dump`` and ``psql``.

Consistency of counts and dump: the counts are taken inside a REPEATABLE READ
transaction that exported its snapshot (``pg_export_snapshot()``);
``pg_dump --snapshot`` imports it, so counts and dump describe exactly the same
data.  A snapshot can only be imported while the exporting transaction is
open, so the connection and transaction stay open until the preflight context
exits: start the dump inside the ``async with`` block and leave it only after
the dump has exited.  Our transaction holds ACCESS SHARE locks on every table
(as pg_dump's does), so DDL on those tables waits until the context exits.

Secrets: the clients get the password in ``PGPASSWORD`` (``source.env``),
never on the command line.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import asyncpg

from streamer.db.base import (
    CLOSE_TIMEOUT,
    CONNECT_TIMEOUT,
    Snapshot,
    _check_min_tables,
    _clean,
    _describe,
    _require_binary,
)
from streamer.errors import PreflightError
from streamer.process import ProcessSource
from streamer.settings.config import DatabaseConfig

_INSTALL_HINT = "install the PostgreSQL client (postgresql-client)"

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


class PostgresEngine:
    """The ``Engine`` for PostgreSQL (``DATABASE_INSTALLATION_TYPE=Postgres``)."""

    counts_match_dump = True

    def dump_binary(self) -> str:
        return _require_binary(("pg_dump",), _INSTALL_HINT)

    @asynccontextmanager
    async def preflight(self, cfg: DatabaseConfig, where: str,
                        dump_binary: str) -> AsyncIterator[Snapshot]:
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
                tables = await _pg_count(conn, cfg, where)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
                raise _pg_error(cfg, where, e) from None
            await _check_pg_dump_version(dump_binary, version_num, where)
            yield Snapshot(version, tables, exported=snapshot)
        finally:
            await _pg_close(conn)

    @asynccontextmanager
    async def dump_source(self, cfg: DatabaseConfig, where: str, dump_binary: str,
                          snapshot: Snapshot) -> AsyncIterator[ProcessSource]:
        argv = (
            dump_binary,
            "--format=plain",
            # A restore by another role into a fresh database must not need
            # the source's roles: no ALTER ... OWNER TO, no GRANT/REVOKE.  The
            # restoring user owns everything; re-grant other roles after.
            "--no-owner",
            "--no-privileges",
            "--no-password",  # never prompt: fail instead
            f"--snapshot={snapshot.exported}",
            *_pg_conn_flags(cfg),
        )
        yield ProcessSource("database", argv, env=_pg_env(cfg))

    @contextmanager
    def restore_client(self, cfg: DatabaseConfig, where: str) -> Iterator[ProcessSource]:
        """``psql`` in one transaction, stopping at the first error.

        The target database must exist and should be empty; psql's query
        output goes to /dev/null.
        """
        psql = _require_binary(("psql",), _INSTALL_HINT)
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


async def _pg_count(conn: Any, cfg: DatabaseConfig, where: str) -> dict[str, int]:
    """Every base table's exact row count, in the open snapshot transaction."""
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
    return tables


async def _pg_connect(cfg: DatabaseConfig, where: str) -> Any:
    try:
        with anyio.fail_after(CONNECT_TIMEOUT + 1):
            return await asyncpg.connect(
                host=cfg.host,
                port=cfg.effective_port,
                user=cfg.user,
                # a plain str: asyncpg's SCRAM refuses a str subclass (Secret)
                # None: PGPASSWORD / ~/.pgpass, as libpq
                password=str(cfg.password) if cfg.password else None,
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
