"""The deployed layout's three services (deploy/): a code server, the daemon and the
webserver, started here as production starts them, with Dagster's storage and the DMS
metadata on a PostgreSQL server. Shared by test_deploy.py and
benchmarks/scheduler_load.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from dms_orchestration_tests.pg_server import _free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = REPO_ROOT / "deploy"
BIN = Path(sys.executable).parent


class DeployedServices:
    """The services' DAGSTER_HOME (deploy/dagster.yaml), their logs and environment: the
    caller's DMS_* / DAGSTER_* settings left out, Dagster's storage in database
    `dagster_db` of `pg`, the metadata at `meta_url`."""

    def __init__(self, pg, work: Path, meta_url: str, dagster_db: str) -> None:
        self.home = work / "dagster"
        self.home.mkdir()
        shutil.copy(DEPLOY / "dagster.yaml", self.home / "dagster.yaml")
        self.logs = work / "logs"
        self.logs.mkdir()
        self.web_port, self.code_port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DMS_", "DAGSTER_"))}
        self.env = env | {
            "DAGSTER_HOME": str(self.home),
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(pg.port),
            "DAGSTER_PG_USER": pg.user,
            "DAGSTER_PG_PASSWORD": "unused-the-test-server-trusts-local-logins",
            "DAGSTER_PG_DB": dagster_db,
            "DMS_CODE_SERVER_HOST": "127.0.0.1",
            "DMS_CODE_SERVER_PORT": str(self.code_port),
            "DMS_DATABASE_URL": meta_url,
            "DMS_HOME": str(work / "dms"),
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(
                ["env", "--default-signal=INT,TERM", *argv],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def start_code_server(self) -> None:
        self.start(
            "code_server",
            [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1"]
            + ["-p", str(self.code_port), "-m", "dms_orchestration.definitions"],
        )

    def start_daemon(self) -> subprocess.Popen[bytes]:
        workspace = str(DEPLOY / "workspace.yaml")
        return self.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace])

    def start_webserver(self) -> None:
        self.start(
            "webserver",
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.web_port)]
            + ["-w", str(DEPLOY / "workspace.yaml")],
        )

    def start_all(self) -> None:
        self.start_code_server()
        self.start_daemon()
        self.start_webserver()

    @contextlib.contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        """The Dagster instance of the services, opened here (its storage settings come
        from the environment, as theirs do)."""
        wanted = {k: v for k, v in self.env.items() if k.startswith("DAGSTER_PG_")}
        before = {k: os.environ.get(k) for k in wanted}
        os.environ.update(wanted)
        try:
            with dg.DagsterInstance.from_config(str(self.home)) as instance:
                yield instance
        finally:
            for k, v in before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def logs_tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.logs.iterdir())
        )

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """End a service started in a session of its own: SIGINT to its group, then SIGKILL
    to whatever of the group outlives it."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    # the rest of the group (code server, run workers, step processes) gets a few
    # seconds to end on its own, then whatever survived is killed
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
