"""The engine registry of streamer.db: one Engine per cfg.engine, picked once."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest

from streamer.db import ENGINES, engine_for, prepare_dump, restore_client
from streamer.db.mysql import MySQLEngine
from streamer.db.postgres import PostgresEngine
from streamer.settings.config import DatabaseConfig


def test_every_configurable_engine_has_one() -> None:
    assert isinstance(engine_for("postgres"), PostgresEngine)
    assert isinstance(engine_for("maria"), MySQLEngine)
    assert isinstance(engine_for("mysql"), MySQLEngine)
    assert "none" not in ENGINES and engine_for("none") is None
    postgres, maria = engine_for("postgres"), engine_for("maria")
    assert postgres is not None and postgres.counts_match_dump is True
    assert maria is not None and maria.counts_match_dump is False


def test_a_webroot_only_backup_loads_no_database_driver() -> None:
    """asyncpg and aiomysql are imported only with a database configured."""
    code = ("import sys, streamer.commands.backup, streamer.readback.restore, streamer.render; "
            "print(sorted(m for m in ('asyncpg', 'aiomysql') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_engine_no_dump() -> None:
    async def main() -> None:
        async with prepare_dump(DatabaseConfig()):
            pass

    with pytest.raises(ValueError, match=r"no database to dump \(engine 'none'\)"):
        anyio.run(main)


def test_no_engine_no_restore() -> None:
    with pytest.raises(ValueError, match=r"no database to restore \(engine 'none'\)"):
        with restore_client(DatabaseConfig()):
            pass
