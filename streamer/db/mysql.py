"""MariaDB and MySQL: preflight and row counts over aiomysql, the dump and restore clients.

Consistency of counts and dump: MariaDB/MySQL have no exportable snapshots.
The counts come from one ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` and the
dump (``--single-transaction``) takes its own, a moment later: under
concurrent writes the counts can differ from the dump (``counts_match_dump`` is
False in the manifest).  ``--single-transaction`` is consistent for InnoDB
only; MyISAM/Aria tables are dumped without a lock.

Secrets: the clients get the password in a 0600 option file (see
``_options_file``), removed when the context exits; ``MYSQL_PWD`` is deprecated
(MySQL 8.0) and, like ``--defaults-extra-file``, loses to a ``password`` in the
user's ``~/.my.cnf`` -- which would make the dump log in differently from the
preflight.  ``--defaults-file`` reads only our file, so the client sees exactly
the configured settings, as aiomysql does.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiomysql
import anyio

from streamer.db.base import (
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

# Largest packet the MySQL clients accept (the protocol's maximum): a row with
# a big BLOB must fit in one packet, in the dump and again in the restore.
MAX_ALLOWED_PACKET = "1G"

_INSTALL_HINT = "install the MariaDB or MySQL client (mariadb-client)"

_MY_TABLES = (
    "SELECT TABLE_NAME FROM information_schema.TABLES"
    " WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')"
    " ORDER BY TABLE_NAME"
)


class MySQLEngine:
    """The ``Engine`` for MariaDB and MySQL (``DATABASE_INSTALLATION_TYPE=Maria|MySQL``)."""

    counts_match_dump = False

    def dump_binary(self) -> str:
        return _require_binary(("mariadb-dump", "mysqldump"), _INSTALL_HINT)

    @asynccontextmanager
    async def preflight(self, cfg: DatabaseConfig, where: str,
                        dump_binary: str) -> AsyncIterator[Snapshot]:
        # The session ends here: the dump takes its own transaction.
        yield await _mysql_info(cfg, where)

    @asynccontextmanager
    async def dump_source(self, cfg: DatabaseConfig, where: str, dump_binary: str,
                          snapshot: Snapshot) -> AsyncIterator[ProcessSource]:
        extra: tuple[str, ...] = ()
        if not await _is_mariadb_tool(dump_binary):
            # Oracle's mysqldump: no SET @@GLOBAL.GTID_PURGED (the restore target
            # has its own GTIDs, and setting it needs SUPER).
            extra = ("--set-gtid-purged=OFF",)
        with _options_file(cfg, where) as options:
            argv = (
                dump_binary,
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
            yield ProcessSource("database", argv)

    @contextmanager
    def restore_client(self, cfg: DatabaseConfig, where: str) -> Iterator[ProcessSource]:
        """The ``mariadb``/``mysql`` client, which stops at the first error.

        Its option file is removed when the context exits, so run the client
        inside it.  The client prints nothing for a dump.
        """
        client = _require_binary(("mariadb", "mysql"), _INSTALL_HINT)
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


async def _mysql_info(cfg: DatabaseConfig, where: str) -> Snapshot:
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
    return Snapshot(version, tables)


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
