"""A PostgreSQL server of the test suite's own that demands passwords.

The machine's PostgreSQL (127.0.0.1:5432) authenticates with ``trust``, so it
accepts any password and cannot prove that ``DB_PASSWORD`` reaches the server.
``scram_server`` runs a second one: ``initdb`` in a temporary directory, its
own free port on 127.0.0.1, ``password_encryption = scram-sha-256`` and every
``pg_hba.conf`` line ``scram-sha-256`` (the Unix socket too, in the temporary
directory), stopped and removed afterwards.

PostgreSQL refuses to run as root: as root (CI runs the suite as root) the
server runs as the ``postgres`` OS user through ``runuser``, and the
temporary directory is handed to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    superuser: str
    password: str  # the superuser's
    socket_dir: Path

    def connect_args(self) -> dict[str, object]:
        """Keyword arguments for asyncpg.connect as the superuser."""
        return {"host": self.host, "port": self.port, "user": self.superuser,
                "password": self.password}


class ServerError(RuntimeError):
    pass


def postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/N/bin holding initdb and pg_ctl."""
    found = sorted((int(m.group(1)), p.parent) for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")
                   if (m := re.search(r"/postgresql/(\d+)/", str(p))))
    if not found:
        raise ServerError("no /usr/lib/postgresql/*/bin/initdb: install the postgresql package")
    return found[-1][1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(base: Path) -> list[str]:
    """The argv prefix that runs a server program, and ``base`` handed over to its user."""
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise ServerError("running as root and there is no 'postgres' OS user to run PostgreSQL as") from None
    for path in [base, *base.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    return ["runuser", "-u", "postgres", "--"]


def _run(argv: list[str], base: Path, what: str) -> None:
    done = subprocess.run(argv, cwd=base, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise ServerError(f"{what} failed ({done.returncode}): {done.stdout[-1500:]} {done.stderr[-1500:]}")


SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
"""

HBA = """\
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
"""


@contextlib.contextmanager
def scram_server() -> Iterator[PgServer]:
    """Start the server; stop it and remove every file of it on exit."""
    bindir = postgres_bin()
    base = Path(tempfile.mkdtemp(prefix="streamer-pg-"))
    data, log = base / "data", base / "server.log"
    password = "su-" + secrets.token_hex(12)
    started = False
    prefix: list[str] = []
    try:
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        prefix = _as_server_user(base)
        _run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
              f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8",
              "--no-instructions"], base, "initdb")
        pwfile.unlink()
        server = PgServer("127.0.0.1", free_port(), "postgres", password, base)
        with open(data / "postgresql.conf", "a") as f:  # initdb's file: its owner and mode stay
            f.write(SETTINGS.format(port=server.port, socket_dir=base))
        (data / "pg_hba.conf").write_text(HBA)
        try:
            _run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                  "-t", "120", "start"], base, "pg_ctl start")
        except ServerError as e:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ServerError(f"{e}; server log: {tail}") from None
        started = True
        yield server
    finally:
        if started:
            with contextlib.suppress(ServerError, subprocess.TimeoutExpired):
                _run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                     base, "pg_ctl stop")
        shutil.rmtree(base, ignore_errors=True)
