"""Throwaway services for the scale-out setup: a PostgreSQL cluster and an `mlflow server`.

Used by ``tests/test_scale_out.py`` (as pytest fixtures) and by ``bench/scale_out.py``; nothing
here imports pytest. Both services listen on 127.0.0.1 only, on free ports, and are stopped
and deleted on exit, without leaving a process behind:

    with postgres_cluster() as pg:                       # initdb + pg_ctl start, in a temp dir
        pg.create_database("optuna")
        pg.create_database("mlflow")
        with tracking_server(pg.url("mlflow"), workdir) as server:   # mlflow server
            ... MLFLOW_TRACKING_URI=server.url, --storage pg.url("optuna") ...

PostgreSQL must be installed (Debian: ``apt-get install -y postgresql``, which puts the server
binaries in ``/usr/lib/postgresql/<version>/bin``); ``SWEEP_PG_BIN`` may point elsewhere. As
root, the cluster runs as the ``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from conftest import free_port, subprocess_env

#: The account and password of the throwaway cluster (password-authenticated over TCP, like a
#: real deployment; only the local socket trusts).
PG_USER = "sweep"
PG_PASSWORD = "sweep-pass"


class ServiceError(RuntimeError):
    """A service is missing or did not start; the message says what to do."""


def find_pg_bin() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres`` (newest version first)."""
    configured = os.environ.get("SWEEP_PG_BIN")
    candidates = [configured] if configured else []
    candidates += sorted(
        (str(Path(p).parent) for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise ServiceError(
        "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb "
        "on PATH, SWEEP_PG_BIN unset): install them with `apt-get install -y postgresql` "
        "(.ci/run does this)"
    )


def _as_postgres(argv: list[str]) -> list[str]:
    """``argv`` run as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--", *argv]
    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(argv)]


def _run(argv: list[str], what: str, timeout: float = 120) -> None:
    done = subprocess.run(
        _as_postgres(argv), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise ServiceError(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@dataclasses.dataclass
class Postgres:
    """A running throwaway cluster."""

    bin: Path
    root: Path
    port: int
    host: str = "127.0.0.1"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str, *, driver: str = "postgresql+psycopg") -> str:
        """The SQLAlchemy URL of ``database`` (the form Optuna and `mlflow server` take)."""
        return f"{driver}://{PG_USER}:{PG_PASSWORD}@{self.host}:{self.port}/{database}"

    def _connect(self, database: str = "postgres"):  # noqa: ANN202 - psycopg is optional here
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user=PG_USER, password=PG_PASSWORD,
            dbname=database, autocommit=True, connect_timeout=10,
        )

    def create_database(self, name: str) -> str:
        """Create an empty database (dropping an old one of that name); return its URL."""
        with self._connect() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def start(self) -> None:
        _run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
             "-t", "60", "-o", f"-k {self.root} -h {self.host} -p {self.port}", "start"],
            "pg_ctl start",
        )

    def stop(self) -> None:
        """Stop the cluster (fast shutdown, then immediate); the caller deletes the files."""
        for mode in ("fast", "immediate"):
            try:
                _run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                      "-t", "30", "stop"], f"pg_ctl stop -m {mode}", timeout=60)
                return
            except (ServiceError, subprocess.TimeoutExpired):
                continue
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():  # last resort: the postmaster's pid, never a name
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)


@contextlib.contextmanager
def postgres_cluster(*, durable: bool = False, max_connections: int = 200) -> Iterator[Postgres]:
    """A fresh PostgreSQL cluster on 127.0.0.1:<free port>, stopped and deleted on exit.

    ``durable=False`` (tests) turns fsync off: the data is thrown away anyway.
    """
    pg_bin = find_pg_bin()
    root = Path(tempfile.mkdtemp(prefix="sweep-pg-"))
    try:
        (root / "data").mkdir(mode=0o700)
        password_file = root / "pwfile"
        password_file.write_text(PG_PASSWORD + "\n")
        if os.geteuid() == 0:
            for path in (root, root / "data", password_file):
                shutil.chown(path, "postgres", "postgres")
        _run(
            [str(pg_bin / "initdb"), "-D", str(root / "data"), "-U", PG_USER,
             f"--pwfile={password_file}", "--auth-host=scram-sha-256", "--auth-local=trust",
             "-E", "UTF8", "--locale=C", "--no-instructions"],
            "initdb",
        )
        settings = [f"max_connections = {max_connections}", "listen_addresses = '127.0.0.1'"]
        if not durable:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with open(root / "data" / "postgresql.conf", "a") as conf:
            conf.write("\n# sweep test cluster\n" + "\n".join(settings) + "\n")
        cluster = Postgres(pg_bin, root, free_port())
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclasses.dataclass
class TrackingServer:
    """`mlflow server` on a PostgreSQL backend store, serving artifacts itself (so workers
    need no shared disk). :meth:`stop` and :meth:`start` keep the port: a restart."""

    backend_store_uri: str
    workdir: Path
    port: int = dataclasses.field(default_factory=free_port)
    workers: int = 2
    #: More command-line arguments of `mlflow server` (e.g. its ``--uvicorn-opts``).
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def artifacts(self) -> Path:
        return self.workdir / "artifacts"

    @property
    def log(self) -> Path:
        return self.workdir / f"mlflow-server-{self.starts}.log"

    def command(self) -> list[str]:
        return [
            str(Path(sys.executable).parent / "mlflow"), "server",
            "--backend-store-uri", self.backend_store_uri,
            "--serve-artifacts", "--artifacts-destination", str(self.artifacts),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
            *self.extra_args,
        ]

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def start(self, timeout: float = 120) -> None:
        self.starts += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "w") as log:
            # Own process group: stop() ends the server and every process it started.
            self.process = subprocess.Popen(
                self.command(), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                # No job runner: the sweep uses none, and it adds seconds to every start.
                env=subprocess_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
            )
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServiceError(
                    f"mlflow server did not come up on {self.url}:\n{self.log.read_text()}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # The group may outlive its leader for a moment (uvicorn workers).
            for _ in range(50):
                try:
                    os.killpg(process.pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def tracking_server(
    backend_store_uri: str, workdir: Path, *, workers: int = 2, extra_args: tuple[str, ...] = ()
) -> Iterator[TrackingServer]:
    """A started :class:`TrackingServer`, stopped on exit."""
    server = TrackingServer(backend_store_uri, workdir, workers=workers, extra_args=extra_args)
    server.start()
    try:
        yield server
    finally:
        server.stop()
