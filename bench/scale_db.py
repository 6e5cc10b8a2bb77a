"""bench/scale.py's database part: the database stream against dump-to-file.

A scratch database (streamer_bench, dropped after) is filled with SQL alone
(generate_series on PostgreSQL, the Sequence engine's seq_1_to_N on MariaDB)
until its dump is about --db-mb MB. Then, in turns: the dump tool writing to
a file on local disk with the flags streamer gives it (`pg_dump > file`,
`mariadb-dump > file`: the dump's own speed), and streamer backing up only
that database (an empty webroot) to the three null-sink regions.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path
from typing import Any

import run

DB = "streamer_bench"
PG = {"DB_HOST": "127.0.0.1", "DB_PORT": "5432", "DB_USERNAME": "postgres"}
MARIA = {"DB_HOST": "127.0.0.1", "DB_PORT": "3306", "DB_USERNAME": "root"}
ROW_BYTES = 1100  # about what one generated row takes in either dump


def _sql(engine: str, sql: str, db: str) -> None:
    if engine == "postgres":
        argv = ["psql", "-h", PG["DB_HOST"], "-U", PG["DB_USERNAME"], "-d", db, "-q",
                "-v", "ON_ERROR_STOP=1", "-c", sql]
    else:
        argv = ["mariadb", "-h", MARIA["DB_HOST"], "-u", MARIA["DB_USERNAME"], "-e", sql]
        if db:
            argv[1:1] = [f"--database={db}"]
    subprocess.run(argv, check=True, env=run.base_env(), stdout=subprocess.DEVNULL)


def create(engine: str, mb: int) -> None:
    rows = mb * 10**6 // ROW_BYTES
    drop(engine)
    if engine == "postgres":
        _sql(engine, f"CREATE DATABASE {DB}", "postgres")
        _sql(engine, "CREATE TABLE posts (id bigint PRIMARY KEY, author int, title text, "
                     "body text, created timestamptz); CREATE TABLE users (id int PRIMARY KEY, "
                     "login text, email text)", DB)
        _sql(engine, "INSERT INTO users SELECT g, 'user' || g, 'user' || g || '@example.org' "
                     "FROM generate_series(1, 1000) g", DB)
        _sql(engine, "INSERT INTO posts SELECT g, g % 1000 + 1, 'Post ' || md5(g::text), "
                     "repeat(md5(g::text) || ' lorem ipsum dolor sit amet ' || g || '. ', 16), "
                     "timestamptz '2024-01-01' + g * interval '1 minute' "
                     f"FROM generate_series(1, {rows}) g", DB)
        return
    _sql(engine, f"CREATE DATABASE {DB}", "")
    _sql(engine, "CREATE TABLE posts (id bigint PRIMARY KEY, author int, title varchar(80), "
                 "body mediumtext, created datetime) ENGINE=InnoDB; CREATE TABLE users (id int "
                 "PRIMARY KEY, login varchar(40), email varchar(80)) ENGINE=InnoDB", DB)
    _sql(engine, "INSERT INTO users SELECT seq, CONCAT('user', seq), "
                 "CONCAT('user', seq, '@example.org') FROM seq_1_to_1000", DB)
    _sql(engine, "INSERT INTO posts SELECT seq, seq % 1000 + 1, CONCAT('Post ', MD5(seq)), "
                 "REPEAT(CONCAT(MD5(seq), ' lorem ipsum dolor sit amet ', seq, '. '), 16), "
                 f"'2024-01-01' + INTERVAL seq MINUTE FROM seq_1_to_{rows}", DB)


def drop(engine: str) -> None:
    if engine == "postgres":
        _sql(engine, f"DROP DATABASE IF EXISTS {DB}", "postgres")
    else:
        _sql(engine, f"DROP DATABASE IF EXISTS {DB}", "")


def dump_argv(engine: str) -> list[str]:
    """The dump with the flags streamer gives it (streamer/db/postgres.py, mysql.py)."""
    if engine == "postgres":
        return ["/usr/bin/pg_dump", "--format=plain", "--no-owner", "--no-privileges",
                "--no-password", f"--host={PG['DB_HOST']}", f"--port={PG['DB_PORT']}",
                f"--username={PG['DB_USERNAME']}", f"--dbname={DB}"]
    return ["/usr/bin/mariadb-dump", f"--host={MARIA['DB_HOST']}", f"--port={MARIA['DB_PORT']}",
            f"--user={MARIA['DB_USERNAME']}", "--single-transaction", "--quick", "--routines",
            "--triggers", "--events", "--hex-blob", "--no-tablespaces",
            "--max-allowed-packet=1G", "--", DB]


def dump_to_file(b: Any, rep: int, engine: str, out: Path, tree: run.TreeInfo) -> int:
    """One measured `dump > file`; returns the dump's size."""
    st = run.Stage()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    st.fds.append(fd)
    st.specs.append(run.ProcSpec("dump", dump_argv(engine), run.base_env(), stdout=fd))
    run.log(f"rep {rep} dump > file ({engine}) ...")
    m = run.execute([st], b.args.timeout, f"{b.session}-dump-{engine}-{rep}")
    size = out.stat().st_size
    out.unlink()
    b.runs.append({"rep": rep, "contender": "dump", "kind": "dump", "target": "-",
                   "tree_bytes": size, "ok": m.ok, "wall": m.wall, "cpu": m.cpu,
                   "rss_sum": m.rss_sum, "rss_sampled": m.rss_sampled, "disk_write": m.disk_write,
                   "error": m.error, "part": "db", "engine": engine})
    run.log(f"rep {rep} dump > file ({engine}): {m.wall:.2f} s, {size / 1e6:.0f} MB"
            if m.ok else f"rep {rep} dump ({engine}) FAILED: {m.error.splitlines()[:1]}")
    return size


def db_part(b: Any, a: argparse.Namespace, t: run.Target) -> tuple[list[str], list[dict[str, Any]]]:
    empty = run.WORK / "empty-webroot"
    empty.mkdir(parents=True, exist_ok=True)
    out = run.WORK / "dump-tmp.sql"
    md = ["#### The database stream against dump-to-file, wall s (median)\n",
          "| engine | dump MB | `dump > file` | streamer, database only, 3 null-sink regions | "
          "streamer's speed, x the dump's |", "|---|---|---|---|---|"]
    goals = []
    for engine in a.engines.split(","):
        conn = PG if engine == "postgres" else MARIA
        b.streamer_env = {"DATABASE_INSTALLATION_TYPE": "Postgres" if engine == "postgres"
                          else "Maria", "DB_NAME": DB, **conn}
        b.failed.clear()
        run.log(f"generating the {engine} database ({a.db_mb} MB of dump) ...")
        create(engine, a.db_mb)
        try:
            size = 0
            tree = run.TreeInfo(str(empty), 0, 0, 0, 0, 0, {})
            for rep in range(1, a.reps + 1):
                if rep % 2:
                    size = dump_to_file(b, rep, engine, out, tree)
                tree = run.TreeInfo(str(empty), size, 0, 0, 0, 0, {})
                b.measure(rep, t, "streamer", tree, f"streamer-db-{engine}", part="db",
                          engine=engine)
                _require_database(b.runs[-1])
                if not rep % 2:
                    size = dump_to_file(b, rep, engine, out, tree)
        finally:
            b.streamer_env = {}
            drop(engine)
        d = _median(b.runs, engine, "dump")
        s = _median(b.runs, engine, f"streamer-db-{engine}")
        speed = d / s if d and s else None
        md.append(f"| {engine} | {size / 1e6:.0f} | {_f(d)} | {_f(s)} | {_f(speed)}x |")
        goals.append({"issue": 12, "goal": f"{engine}: the database stream ≥ 0.95x the dump's "
                      "own speed (streamer wall ≤ dump-to-file wall / 0.95)",
                      "measured": f"{_f(s)} s vs {_f(d)} s = {_f(speed)}x",
                      "pass": speed is not None and speed >= 0.95})
    return [*md, ""], goals


def _require_database(rec: dict[str, Any]) -> None:
    """run.py verifies the webroot archive; a database run must also have
    stored the database in every region."""
    regions = (rec.get("verify") or {}).get("objects") or []
    if rec.get("ok") and not (regions and all(any("/database.sql" in k for k in objs)
                                              for objs in regions)):
        rec.update(ok=False, error="no database artifact in every region")


def _median(runs: list[dict[str, Any]], engine: str, contender: str) -> float | None:
    walls = sorted(r["wall"] for r in runs if r.get("ok") and r.get("engine") == engine
                   and r["contender"] == contender)
    if not walls:
        return None
    n = len(walls)
    return walls[n // 2] if n % 2 else (walls[n // 2 - 1] + walls[n // 2]) / 2


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"
