"""What every database engine provides, and the helpers the engines share.

An ``Engine`` (``postgres.py``, ``mysql.py``) knows how to reach its server and
which clients dump and restore it.  ``streamer.db.prepare_dump`` drives one
through the same steps for every engine:

1. ``dump_binary``: find the dump client on PATH (else ``PreflightError``);
2. ``preflight``: connect and log in, read the server version, list the base
   tables (at least ``cfg.min_tables``, see ``_check_min_tables``) and count
   every one's rows, in a snapshot that stays open until the context exits;
3. ``dump_source``: the ``ProcessSource`` whose stdout is the plain SQL dump.

``restore_client`` is the engine's client reading such a dump on stdin.

Every failure a user can fix is a ``PreflightError`` (exit 2): one line,
naming the server and the user, never the password (``_clean``).

The names starting with ``_`` are private to ``streamer.db``: the engine
modules share them, nothing outside the package uses them.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from streamer.errors import PreflightError
from streamer.process import ProcessSource
from streamer.settings.config import DatabaseConfig

CONNECT_TIMEOUT = 10.0  # seconds for connect + authentication
CLOSE_TIMEOUT = 5.0  # seconds for a graceful close before the socket is dropped

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


@dataclass(frozen=True)
class Snapshot:
    """What an engine's preflight found, for the manifest and the dump."""

    server_version: str  # as the server reports it
    tables: Mapping[str, int]  # base table -> exact row count, sorted by key
    # The id of a snapshot the dump client imports (``pg_dump --snapshot``);
    # "" where the engine cannot export one and the dump takes its own.
    exported: str = ""


class Engine(Protocol):
    """One database engine: its preflight, its dump client and its restore client."""

    # True when the dump reads the very snapshot the counts were taken in.
    counts_match_dump: bool

    def dump_binary(self) -> str:
        """The dump client's path, or ``PreflightError`` naming the package to install."""
        ...

    def preflight(self, cfg: DatabaseConfig, where: str,
                  dump_binary: str) -> AbstractAsyncContextManager[Snapshot]:
        """Connect, count, and check that ``dump_binary`` can dump this server.

        Whatever the dump needs from the session (an exported snapshot) lives
        until the context exits.
        """
        ...

    def dump_source(self, cfg: DatabaseConfig, where: str, dump_binary: str,
                    snapshot: Snapshot) -> AbstractAsyncContextManager[ProcessSource]:
        """The dump command; whatever it reads (an option file) lives until exit."""
        ...

    def restore_client(self, cfg: DatabaseConfig,
                       where: str) -> AbstractContextManager[ProcessSource]:
        """The client reading a plain SQL dump on stdin into ``cfg.name``."""
        ...


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
