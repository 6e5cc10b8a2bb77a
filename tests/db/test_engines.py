"""The engine registry of streamer.db: one Engine per cfg.engine, picked once."""

from __future__ import annotations

import anyio
import pytest

from streamer.db import ENGINES, prepare_dump, restore_client
from streamer.db.mysql import MySQLEngine
from streamer.db.postgres import PostgresEngine
from streamer.settings.config import DatabaseConfig


def test_every_configurable_engine_has_one() -> None:
    assert isinstance(ENGINES["postgres"], PostgresEngine)
    assert isinstance(ENGINES["maria"], MySQLEngine)
    assert isinstance(ENGINES["mysql"], MySQLEngine)
    assert "none" not in ENGINES
    assert ENGINES["postgres"].counts_match_dump is True
    assert ENGINES["maria"].counts_match_dump is False


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
