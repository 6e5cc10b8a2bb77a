"""The database half of a backup: preflight, row counts, and the dump command.

``prepare_dump(cfg)`` connects with asyncpg (PostgreSQL) or aiomysql
(MariaDB/MySQL), checks that the database is reachable, that the credentials
work and that it holds at least ``cfg.min_tables`` base tables (else
``PreflightError``, exit 2, one line, never the password), counts every base
table's rows, and yields the ``ProcessSource`` whose stdout is the SQL dump.
``restore_client(cfg)`` is the engine's client that reads such a dump back.

The engine is picked once, from ``cfg.engine``, in ``ENGINES``; each one is an
``Engine`` (``base.py``): ``postgres.py`` and ``mysql.py`` say how counts and
dump are kept consistent on their engine and how the clients get the password
(never on the command line).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager

import anyio

from streamer.db.base import DatabaseDump, DatabaseInfo, Engine, _where
from streamer.process import ProcessSource
from streamer.settings.config import DatabaseConfig

__all__ = ["ENGINES", "DatabaseDump", "DatabaseInfo", "Engine", "PendingDump", "engine_for",
           "prepare_dump", "restore_client"]

# cfg.engine -> the module and class of its Engine; "none" (webroot only) has none.
# An engine's module is imported when it is first used: asyncpg and aiomysql
# cost a webroot-only run about 12 MiB of RSS and start-up time for nothing.
ENGINES: Mapping[str, tuple[str, str]] = {
    "postgres": ("streamer.db.postgres", "PostgresEngine"),
    "maria": ("streamer.db.mysql", "MySQLEngine"),
    "mysql": ("streamer.db.mysql", "MySQLEngine"),
}


def engine_for(name: str) -> Engine | None:
    """The Engine of ``cfg.engine``, or None for "none" (or an unknown name)."""
    where = ENGINES.get(name)
    if where is None:
        return None
    module, cls = where
    engine: Engine = getattr(importlib.import_module(module), cls)()
    return engine


@asynccontextmanager
async def prepare_dump(cfg: DatabaseConfig) -> AsyncIterator[DatabaseDump]:
    """Preflight, count, and yield the dump command; clean up on exit.

    Run the dump (and wait for it to exit) inside the ``async with`` block: the
    PostgreSQL snapshot and the MySQL option file live exactly as long as it.
    """
    engine = engine_for(cfg.engine)
    if engine is None:
        raise ValueError(f"no database to dump (engine {cfg.engine!r})")
    where = _where(cfg)
    binary = engine.dump_binary()
    async with engine.preflight(cfg, where, binary) as snapshot:
        async with engine.dump_source(cfg, where, binary, snapshot) as source:
            info = DatabaseInfo(cfg.engine, snapshot.server_version, cfg.name, snapshot.tables,
                                counts_match_dump=engine.counts_match_dump)
            yield DatabaseDump(source, info)


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
    engine = engine_for(cfg.engine)
    if engine is None:
        raise ValueError(f"no database to restore (engine {cfg.engine!r})")
    with engine.restore_client(cfg, _where(cfg)) as source:
        yield source


class PendingDump:
    """``prepare_dump`` entered in a task of its own (``hold``), so that the
    database's preflight and row counts run while the regions are checked and
    the lock is claimed (docs/ARCHITECTURE.md, "Start-up and tear-down").

    ``get`` waits for the dump and raises what its preflight raised, at the
    point where the backup needs it; ``close`` lets ``hold`` leave the context
    (the PostgreSQL snapshot and the MySQL option file live until then) and
    raises what leaving it raised."""

    def __init__(self, cfg: DatabaseConfig) -> None:
        self.cfg = cfg
        self._ready = anyio.Event()
        self._release = anyio.Event()
        self._closed = anyio.Event()
        self._dump: DatabaseDump | None = None
        self._error: Exception | None = None

    async def hold(self) -> None:
        try:
            async with prepare_dump(self.cfg) as dump:
                self._dump = dump
                self._ready.set()
                await self._release.wait()
        except Exception as e:  # handed to get() or close(), never to the task group
            self._error = e
        finally:
            self._ready.set()
            self._closed.set()

    async def get(self) -> DatabaseDump:
        await self._ready.wait()
        if self._dump is None:
            raise self._error or RuntimeError("the database dump was not prepared")
        return self._dump

    async def close(self) -> None:
        self._release.set()
        await self._closed.wait()
        error, self._error = self._error, None  # raised once
        if error is not None and self._dump is not None:
            raise error
