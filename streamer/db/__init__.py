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

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager

from streamer.db.base import DatabaseDump, DatabaseInfo, Engine, _where
from streamer.db.mysql import MySQLEngine
from streamer.db.postgres import PostgresEngine
from streamer.process import ProcessSource
from streamer.settings.config import DatabaseConfig

__all__ = ["ENGINES", "DatabaseDump", "DatabaseInfo", "Engine", "prepare_dump", "restore_client"]

# cfg.engine -> its Engine; "none" (webroot only) has none.
ENGINES: Mapping[str, Engine] = {
    "postgres": PostgresEngine(),
    "maria": MySQLEngine(),
    "mysql": MySQLEngine(),
}


@asynccontextmanager
async def prepare_dump(cfg: DatabaseConfig) -> AsyncIterator[DatabaseDump]:
    """Preflight, count, and yield the dump command; clean up on exit.

    Run the dump (and wait for it to exit) inside the ``async with`` block: the
    PostgreSQL snapshot and the MySQL option file live exactly as long as it.
    """
    engine = ENGINES.get(cfg.engine)
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
    engine = ENGINES.get(cfg.engine)
    if engine is None:
        raise ValueError(f"no database to restore (engine {cfg.engine!r})")
    with engine.restore_client(cfg, _where(cfg)) as source:
        yield source
