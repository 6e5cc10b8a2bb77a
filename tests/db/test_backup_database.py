"""Integration: database dumps streamed by the backup CLI to three real regions.

Uses the databases that tests/test_database.py builds (several tables, binary
data, unicode, NULLs, a large table, a view, a trigger and a function) on the
machine's real PostgreSQL and MariaDB servers.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import zstandard
from s3util import STREAMER, RegionsEnv, matches_manifest, run_streamer
from test_database import (  # noqa: F401  (fixtures)
    PG_HOST,
    PG_PORT,
    MySetup,
    PgSetup,
    my_fingerprint,
    my_setup,
    pg_fingerprint,
    pg_setup,
)

from streamer.db import restore_client
from streamer.settings.config import DatabaseConfig

pytestmark = pytest.mark.anyio


def db_env(base: dict[str, str], cfg: DatabaseConfig, webroot: Path) -> dict[str, str]:
    engine = {"postgres": "Postgres", "maria": "Maria", "mysql": "MySQL"}[cfg.engine]
    return {**base, "STREAMER_WEBROOT": str(webroot), "DATABASE_INSTALLATION_TYPE": engine,
            "DB_HOST": cfg.host, "DB_PORT": str(cfg.port), "DB_USERNAME": cfg.user,
            "DB_PASSWORD": str(cfg.password), "DB_NAME": cfg.name,
            "STREAMER_MIN_TABLES": str(cfg.min_tables)}


def small_webroot(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.php").write_text("<?php echo 'db site'; ?>\n")
    return root


def the_manifest(regions: RegionsEnv, bucket: str, index: int, build: str) -> dict[str, Any]:
    keys = [k for k in regions.keys(index, bucket, build + "/") if k.endswith("/manifest.json")]
    assert len(keys) == 1, keys
    return dict(json.loads(regions.get(index, bucket, keys[0])))


def restore_stored_dump(data: bytes, cfg: DatabaseConfig) -> None:
    """Feed the decompressed stored dump to the engine's own client, through a pipe."""
    sql = zstandard.ZstdDecompressor().stream_reader(  # every frame: the level may change
              io.BytesIO(data), read_across_frames=True).read()
    with restore_client(cfg) as client:
        proc = subprocess.run(client.argv, input=sql, env=os.environ | dict(client.env),
                              capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]


class CmdlineWatch:
    """Scans every /proc/*/cmdline while a backup runs: did a dump run, did any
    process carry the password on its command line, and which variables of a
    dump's environment held it (``PGPASSWORD`` is how pg_dump gets it)?"""

    def __init__(self, password: str, dump_names: tuple[str, ...]) -> None:
        self.password = password.encode()
        self.dump_names = dump_names
        self.saw_dump = False
        self.leaks: list[str] = []
        self.dump_env_with_password: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if self.password in cmd:
                    self.leaks.append(cmd.decode(errors="replace"))
                if any(n.encode() in cmd.split(b"\0")[0] for n in self.dump_names):
                    self.saw_dump = True
                    self._read_environ(pid)
            time.sleep(0.002)

    def _read_environ(self, pid: str) -> None:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return
        for var in environ.split(b"\0"):
            name, _, value = var.partition(b"=")
            if self.password in value:
                self.dump_env_with_password.add(name.decode(errors="replace"))

    def __enter__(self) -> CmdlineWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def test_postgres_backup_restores_identically(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        pg_setup: PgSetup) -> None:  # noqa: F811
    s = pg_setup
    source = await pg_fingerprint(s.source)
    env = db_env(streamer_env, s.cfg(), small_webroot(tmp_path))
    with CmdlineWatch(s.password, ("pg_dump",)) as watch:
        run = run_streamer(["hourly", "pgsite"], env)
    assert run.code == 0, run.stdout + run.stderr
    assert watch.saw_dump and watch.leaks == []
    for i in (1, 2, 3):
        m = the_manifest(regions, bucket, i, "pgsite")
        art = m["artifacts"]["database"]
        assert art["key"].endswith("/database.sql.zst")
        data = regions.get(i, bucket, art["key"])
        assert matches_manifest(art, data)
        assert m["database"]["engine"] == "postgres"
        assert m["database"]["server_version"]
        counted = {k: v for k, v in m["database"]["tables"].items()}
        assert counted == {k: source[k][0] for k in counted}
        assert "public.big" in counted and counted["public.big"] >= 100_000
    restore_stored_dump(regions.get(2, bucket, art["key"]), s.restore_cfg())
    assert await pg_fingerprint(s.target) == source
    assert s.password not in json.dumps(m) + run.stdout + run.stderr


async def test_mariadb_backup_restores_identically(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        my_setup: MySetup) -> None:  # noqa: F811
    s = my_setup
    source = await my_fingerprint(s.source)
    env = db_env(streamer_env, s.cfg(), small_webroot(tmp_path))
    with CmdlineWatch(s.password, ("mariadb-dump", "mysqldump")) as watch:
        run = run_streamer(["daily", "mysite"], env)
    assert run.code == 0, run.stdout + run.stderr
    assert watch.saw_dump and watch.leaks == []
    m = the_manifest(regions, bucket, 3, "mysite")
    art = m["artifacts"]["database"]
    assert m["database"]["engine"] == "maria"
    assert {k: v for k, v in m["database"]["tables"].items()} == \
        {k: source[k][0] for k in m["database"]["tables"]}
    restore_stored_dump(regions.get(3, bucket, art["key"]), s.cfg(name=s.target))
    assert await my_fingerprint(s.target) == source
    assert s.password not in json.dumps(m) + run.stdout + run.stderr


async def _grow_postgres(database: str, owner: str, rows: int) -> None:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=owner, database=database)
    try:
        await conn.execute(
            "CREATE TABLE zz_bulk AS SELECT g AS id, md5(g::text) || repeat(md5((g * 7)::text), 6) AS v"
            f" FROM generate_series(1, {rows}) g")
    finally:
        await conn.close()


def _wait_for_child(proc: subprocess.Popen[bytes], name: str, timeout: float = 60) -> int:
    parent = proc.pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"streamer exited {proc.returncode} before {name} ran: {out!r} {err!r}")
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if comm == name and ppid == parent:
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"--snapshot" in cmdline:  # the dump itself, not the version probe
                    return int(pid)
        time.sleep(0.005)
    raise AssertionError(f"no {name} child of {parent} appeared")


def _written(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


async def test_dump_killed_mid_stream_commits_nothing(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        pg_setup: PgSetup) -> None:  # noqa: F811
    s = pg_setup
    env = db_env(streamer_env, s.cfg(), small_webroot(tmp_path))
    first = run_streamer(["hourly", "killsite"], env)
    assert first.code == 0, first.stderr
    before = the_manifest(regions, bucket, 1, "killsite")

    await _grow_postgres(s.source, s.owner, 1_500_000)  # a dump of ~300 MB: long enough to kill
    time.sleep(1.1)  # a new stamp
    proc = subprocess.Popen([*STREAMER, "hourly", "killsite"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        dump = _wait_for_child(proc, "pg_dump")
        deadline = time.monotonic() + 60
        while _written(dump) < 24 * 1024 * 1024:  # mid-stream: several parts' worth out
            assert time.monotonic() < deadline, "pg_dump wrote too little"
            time.sleep(0.01)
        os.kill(dump, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, out.decode() + err.decode()
    assert "database: pg_dump was killed by signal 9" in err.decode()
    for i in (1, 2, 3):
        keys = regions.keys(i, bucket, "killsite/")
        assert sorted(keys) == sorted(
            [before["artifacts"]["webroot"]["key"], before["artifacts"]["database"]["key"],
             before["artifacts"]["webroot"]["key"].rsplit("/", 1)[0] + "/manifest.json"])
        assert regions.uploads(i, bucket) == []
        data = regions.get(i, bucket, before["artifacts"]["database"]["key"])
        assert matches_manifest(before["artifacts"]["database"], data)


@pytest.mark.parametrize("problem", ["password", "host", "tables"])
async def test_database_preflight_failures_exit_2_before_upload(
        regions: RegionsEnv, bucket: str, streamer_env: dict[str, str], tmp_path: Path,
        my_setup: MySetup, problem: str) -> None:  # noqa: F811
    s = my_setup
    cfg = {"password": s.cfg(password="wrong-" + s.password),  # type: ignore[arg-type]
           "host": s.cfg(port=1),
           "tables": s.cfg(min_tables=500)}[problem]
    env = db_env(streamer_env, cfg, small_webroot(tmp_path))
    run = run_streamer(["hourly", "badsite"], env)
    assert run.code == 2, run.stdout + run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert s.password not in run.stderr
    for i in (1, 2, 3):
        assert regions.keys(i, bucket) == []
