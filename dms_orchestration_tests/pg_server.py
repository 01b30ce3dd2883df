"""A throw-away PostgreSQL server for the tests: initdb + pg_ctl in a temporary directory.

Missing server binaries are an error, never a skip: the suite promises PostgreSQL.
initdb and pg_ctl refuse to run as root, so as root they run as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


def find_bindir() -> Path:
    candidates = [os.environ.get("DMS_TEST_PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if shutil.which("pg_ctl"):
        candidates.append(str(Path(shutil.which("pg_ctl")).parent))
    for cand in candidates:
        if cand and (Path(cand) / "initdb").exists() and (Path(cand) / "pg_ctl").exists():
            return Path(cand)
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found in /usr/lib/postgresql/*/bin "
        "or on PATH. Install them (Debian: apt-get install postgresql) or set "
        "DMS_TEST_PG_BINDIR. The test suite needs a real PostgreSQL server."
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A throw-away PostgreSQL server. `durable=False` (the tests) trades crash safety for
    speed (fsync, synchronous commit and full-page writes off); `durable=True` (the
    benchmark) keeps PostgreSQL's default settings."""

    def __init__(self, durable: bool = False) -> None:
        self.durable = durable
        self.bindir = find_bindir()
        self.tmp = Path(tempfile.mkdtemp(prefix="dms-pg-"))
        self.datadir = self.tmp / "data"
        self.port = _free_port()
        self.user = "dms"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )

    def start(self) -> PostgresServer:
        if self._as_postgres:
            shutil.chown(self.tmp, "postgres", "postgres")
        os.chmod(self.tmp, 0o755)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.tmp} -c max_connections=200"
        )
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._opts = opts
        self._pg_ctl_start()
        return self

    def _pg_ctl_start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-o",
            self._opts,
            "-l",
            str(self.tmp / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def restart(self) -> None:
        """Stop at once (every session ends, as in a crash) and start again."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        self._pg_ctl_start()

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    def psql(self, database: str, command: str) -> None:
        """Run one psql command (a `\\copy`, say) on a database of this server."""
        args = ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database]
        subprocess.run([str(self.bindir / "psql"), *args, "-q", "-c", command], check=True)

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url(name)


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")
