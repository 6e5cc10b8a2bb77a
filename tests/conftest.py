"""Shared fixtures.

Integration tests talk to real servers: three SeaweedFS regions started by
``scripts/regions up`` (idempotent; ``scripts/test`` starts them first), the
machine's MariaDB and PostgreSQL.  A missing server is a failure, never a skip.
Async tests run on asyncio with uvloop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

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
    return env
