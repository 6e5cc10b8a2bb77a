"""Shared fixtures.

Integration tests talk to real servers: three SeaweedFS regions started by
``scripts/regions up`` (idempotent; ``scripts/test`` starts them first), a
moto server (a second, independently written S3 server, started here on a
free port for the session), the machine's MariaDB and PostgreSQL, and a
PostgreSQL of the suite's own with scram-sha-256 authentication
(tests/pgserver.py, started here for the session).  A missing
server is a failure, never a skip.
Async tests run on asyncio with uvloop.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# the database fixtures (tests/db/test_database.py) are shared with the layout
# and restore tests, whichever directory pytest collects first
sys.path.insert(0, str(Path(__file__).parent / "db"))

from pgserver import PgServer, ServerError, scram_server
from s3util import RegionsEnv, load_regions_env

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def anyio_backend() -> tuple[str, dict[str, bool]]:
    return ("asyncio", {"use_uvloop": True})


@pytest.fixture(scope="session")
def regions() -> RegionsEnv:
    """The three local S3 regions, started if they are not running."""
    proc = subprocess.run([str(REPO / "scripts" / "regions"), "up"], capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"scripts/regions up failed: {proc.stderr[-2000:]}")
    return load_regions_env()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server on a free loopback port (its endpoint URL), stopped by pid at the end."""
    server = Path(sys.executable).parent / "moto_server"
    if not server.exists():
        pytest.fail(f"moto_server missing ({server}): run scripts/setup (moto[server] is a dev extra)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).close()
                break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto server did not start on {endpoint} (see {log.name})")
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def bucket(regions: RegionsEnv) -> Iterator[str]:
    """A fresh bucket name per test (streamer creates it in every region)."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    yield name
    regions.delete_bucket_everywhere(name)


@pytest.fixture
def streamer_env(regions: RegionsEnv, bucket: str, tmp_path: Path) -> dict[str, str]:
    """A minimal environment for running the CLI against the local regions."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("S3_", "STREAMER_", "DB_", "DATABASE_", "EXCLUDE_", "AWS_"))}
    env.update(regions.env)
    env["STREAMER_BUCKET"] = bucket
    env["DATABASE_INSTALLATION_TYPE"] = "None"
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    env["TMPDIR"] = str(tmp)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # the checksum negotiation's (store/negotiate.py)
    return env


@pytest.fixture(scope="session")
def scram_postgres() -> Iterator[PgServer]:
    """A PostgreSQL that demands passwords (scram-sha-256), on a free port; removed at the end."""
    try:
        with scram_server() as server:
            yield server
    except ServerError as e:
        pytest.fail(f"the suite's own PostgreSQL did not start: {e}")
