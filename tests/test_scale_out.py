"""Scale out: workers on one sweep through PostgreSQL and an MLflow tracking server.

The setup of the README's "Scale out" section, on loopback: a throwaway PostgreSQL cluster
(Optuna storage and MLflow backend store, ``postgresql+psycopg://`` URLs) and a real
``mlflow server --serve-artifacts`` (workers reach the artifacts only through it). Real
``sweep.py`` / ``mlflow run`` worker processes share one sweep; the invariants are those of
``tests/test_resilience.py`` (:func:`check_sweep`), read through the server and the storage.

Needs the PostgreSQL server binaries (``apt-get install -y postgresql``; ``.ci/run`` installs
them): without them these tests fail and say so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState

from conftest import ROOT, serve_model
from services import Postgres, ServiceError, TrackingServer, postgres_cluster, tracking_server
from test_e2e import CURL_BODY
from test_resilience import EXPERIMENT, MODEL, Sweep, check_sweep, wait_until

pytestmark = pytest.mark.e2e

FAMILIES = ("elastic_net", "random_forest")
N_TRIALS = 8
_databases = itertools.count()


@dataclasses.dataclass
class ServerSweep(Sweep):
    """A :class:`Sweep` on an Optuna RDB storage and an http tracking URI."""

    tracking_uri: str = ""
    storage_url: str = ""
    postgres: Postgres | None = None
    optuna_db: str = ""

    @property
    def uri(self) -> str:  # type: ignore[override]
        return self.tracking_uri

    def command(self, *more: str) -> list[str]:
        argv = super().command(*more)
        argv[argv.index("--storage") + 1] = self.storage_url
        return argv

    def mlflow_run(self) -> list[str]:
        """The same worker as ``mlflow run . -e sweep --env-manager local``."""
        return [
            str(Path(sys.executable).parent / "mlflow"), "run", str(ROOT), "-e", "sweep",
            "--env-manager", "local", "--experiment-name", EXPERIMENT,
            "-P", f"n_trials={self.n_trials}", "-P", f"families={','.join(self.families)}",
            "-P", f"sweep_name={self.name}", "-P", f"storage={self.storage_url}",
            "-P", "n_workers=1",
        ]

    def start_argv(self, argv: list[str], **env: str) -> subprocess.Popen[str]:
        log = self.tmp / f"attempt-{len(self.logs)}.log"
        self.logs.append(str(log))
        return subprocess.Popen(
            argv, cwd=self.tmp, env=self.env(**env), text=True,
            stdout=open(log, "w"), stderr=subprocess.STDOUT,
        )

    def open_storage(self) -> RDBStorage:
        return RDBStorage(self.storage_url)

    def close_storage(self, storage: BaseStorage) -> None:
        if isinstance(storage, RDBStorage):
            storage.remove_session()
            storage.engine.dispose()

    def _sql(self, query: str, *args: object) -> list[tuple]:
        """Read the Optuna tables directly: while workers start, opening an RDBStorage here
        would race their creation of the schema."""
        assert self.postgres is not None
        with self.postgres._connect(self.optuna_db) as connection:
            if connection.execute("select to_regclass('trial_system_attributes')").fetchone()[0] is None:
                return []
            return connection.execute(query, args).fetchall()

    def done(self) -> int:
        rows = self._sql(
            "select count(*) from trials t join studies s on s.study_id = t.study_id "
            "where s.study_name like %s and t.state in ('COMPLETE', 'PRUNED')",
            f"{self.name}.%",
        )
        return int(rows[0][0]) if rows else 0

    def running_by_worker(self) -> dict[str, int]:
        """RUNNING trials of this sweep per ``host:pid`` worker."""
        rows = self._sql(
            "select a.value_json, count(*) from trials t "
            "join studies s on s.study_id = t.study_id "
            "join trial_system_attributes a on a.trial_id = t.trial_id and a.key = 'sweep:worker' "
            "where s.study_name like %s and t.state = 'RUNNING' group by a.value_json",
            f"{self.name}.%",
        )
        return {json.loads(value): int(count) for value, count in rows}

    def log_text(self) -> str:
        return "\n".join(f"--- {log}\n{Path(log).read_text()}" for log in self.logs)


@dataclasses.dataclass
class Stack:
    """One test's databases and tracking server on the session's PostgreSQL cluster."""

    postgres: Postgres
    server: TrackingServer
    optuna_db: str

    def prepare(self) -> None:
        """What a user does once before starting `mlflow run --experiment-name X` workers
        together: create the experiment. MLflow's own CLI looks it up and creates it without
        retrying, so CLIs started at one instant collide (sweep.py itself copes, see
        sweeper.tracking.ensure_experiment). The Optuna schema needs nothing: workers opening
        a fresh database together retry (test_workers_opening_a_fresh_optuna_database_together)."""
        MlflowClient(self.server.url).create_experiment(EXPERIMENT)

    def sweep(self, tmp: Path, name: str, n_trials: int = N_TRIALS) -> ServerSweep:
        # One worker process per command (n_workers=0 would start one per core).
        return ServerSweep(
            tmp, name, FAMILIES, n_trials, ("--n_workers", "1"), tracking_uri=self.server.url,
            storage_url=self.postgres.url(self.optuna_db), postgres=self.postgres,
            optuna_db=self.optuna_db,
        )


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(postgres_cluster())
        except ServiceError as error:
            pytest.fail(f"cannot start the test PostgreSQL cluster: {error}", pytrace=False)
        yield cluster


@contextlib.contextmanager
def make_stack(postgres: Postgres, workdir: Path) -> Iterator[Stack]:
    """Fresh ``optuna_<n>`` and ``mlflow_<n>`` databases (a fresh registry: check_sweep counts
    model versions) and an `mlflow server` on the latter."""
    n = next(_databases)
    postgres.create_database(f"optuna_{n}")
    postgres.create_database(f"mlflow_{n}")
    try:
        server_cm = tracking_server(postgres.url(f"mlflow_{n}"), workdir / "server")
        server = server_cm.__enter__()
    except ServiceError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield Stack(postgres, server, f"optuna_{n}")
    finally:
        server_cm.__exit__(None, None, None)


@pytest.fixture()
def stack(postgres: Postgres, tmp_path: Path) -> Iterator[Stack]:
    with make_stack(postgres, tmp_path) as value:
        yield value


def wait_all(processes: list[subprocess.Popen[str]], sweep: ServerSweep, timeout: float = 400) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
                other.wait()
            pytest.fail(f"workers did not finish in {timeout} s:\n{sweep.log_text()}")
    return codes


def champion_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("Champion:"))


# --- (a) three workers started together, the served champion, the champion entry point -----


@dataclasses.dataclass
class Finished:
    stack: Stack
    sweep: ServerSweep
    seconds: float


@pytest.fixture(scope="module")
def three_workers(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    tmp = tmp_path_factory.mktemp("scale-out")
    with make_stack(postgres, tmp) as stack:
        sweep = stack.sweep(tmp, "big")
        stack.prepare()
        argvs = [sweep.command(), sweep.command(), sweep.mlflow_run()]
        started = time.monotonic()
        processes = [sweep.start_argv(argv) for argv in argvs]  # back to back: one instant
        codes = wait_all(processes, sweep)
        seconds = time.monotonic() - started
        assert codes == [0, 0, 0], sweep.log_text()
        yield Finished(stack, sweep, seconds)


def test_three_workers_run_exactly_n_trials_once(three_workers: Finished) -> None:
    sweep = three_workers.sweep
    # The first worker to create the sweep's study owns the root run; the other two are
    # `worker` runs under it. No trial, family run, champion or version is duplicated.
    killed = check_sweep(sweep, workers=2)
    assert killed == {family: 0 for family in FAMILIES}
    trials = [t for ts in sweep.trials().values() for t in ts]
    assert len(trials) == N_TRIALS * len(FAMILIES)
    runners = {t.system_attrs["sweep:worker"] for t in trials}
    assert len(runners) >= 2, f"trials ran on {runners} only"
    for log in sweep.logs:
        text = Path(log).read_text()
        assert "Traceback" not in text, sweep.log_text()
        # One link per sweep, not MLflow's "View run … at" for every trial run.
        assert text.count("View sweep ") == 1, text
        assert text.count("View run ") <= 1, text  # `mlflow run`'s own line at its end
    # One champion line, the same in every worker's report.
    assert len({champion_line(Path(log).read_text()) for log in sweep.logs}) == 1
    print(f"3 workers, {len(trials)} trials: {three_workers.seconds:.1f} s")


def test_workers_keep_their_connections_to_a_server_without_the_delay(
    three_workers: Finished,
) -> None:
    # The test server runs uvicorn with 2 workers on uvloop (this project's environment), which
    # sets TCP_NODELAY: its kept-alive answers are not held back for a delayed ACK, each
    # worker's probe finds so (sweeper.connections), and the workers keep MLflow's kept-alive
    # connections. The server's access log names each request's client port: a kept-alive
    # connection repeats its port (tests/test_connections.py has a server where they do not).
    requests_ = re.findall(r"127\.0\.0\.1:(\d+) - \"POST /api/2\.0/mlflow/runs/log-batch ",
                           three_workers.stack.server.log.read_text())
    assert len(requests_) >= N_TRIALS * len(FAMILIES), "the server log has no access lines?"
    # A connection per request would give each its own port (as before the probe: at most 5 %
    # repeated, by the kernel reusing a port). Kept alive, each process logs on a connection
    # or two (35 requests on 9 ports in one run); some processes send only one or two.
    assert len(set(requests_)) <= 0.5 * len(requests_), (len(set(requests_)), len(requests_))


def test_artifacts_come_through_the_tracking_server(three_workers: Finished) -> None:
    url = three_workers.stack.server.url
    client = MlflowClient(url, registry_uri=url)  # not a registry URI left by another test
    version = client.get_model_version_by_alias(MODEL, "champion")
    run = client.get_run(version.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    assert not version.source.startswith(("/", "file:")), version.source


def test_champion_is_served_from_the_tracking_server(three_workers: Finished, tmp_path: Path) -> None:
    # A fresh working directory: the model comes over HTTP from the server, not from a disk.
    with serve_model(f"models:/{MODEL}@champion", three_workers.stack.server.url,
                     tmp_path / "serve.log") as url:
        response = requests.post(
            f"{url}/invocations", data=json.dumps(CURL_BODY),
            headers={"Content-Type": "application/json"}, timeout=60,
        )
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert isinstance(prediction, float) and 1_000 < prediction < 100_000


def test_champion_entry_point_reports_the_same_champion(three_workers: Finished) -> None:
    sweep = three_workers.sweep
    done = subprocess.run(
        [sys.executable, str(ROOT / "sweep.py"), "--champion", "--sweep_name", sweep.name,
         "--storage", sweep.storage_url],
        cwd=sweep.tmp, env=sweep.env(), text=True, capture_output=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert champion_line(done.stdout) == champion_line(Path(sweep.logs[0]).read_text())
    assert "version 1 " in done.stdout
    check_sweep(sweep)  # still one registered version, no RUNNING run


# --- (b) a worker killed mid-sweep ------------------------------------------------------------


@dataclasses.dataclass
class Killed:
    stack: Stack
    sweep: ServerSweep
    victim_id: str
    left_running: list[tuple[str | None, str | None]]


@pytest.fixture(scope="module")
def killed_worker(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Killed]:
    """Three workers on one sweep; one that does not own the root run is SIGKILLed in the
    middle of a trial once a few trials are done; the other two finish."""
    tmp = tmp_path_factory.mktemp("killed")
    with make_stack(postgres, tmp) as stack:
        sweep = stack.sweep(tmp, "big", n_trials=5)
        stack.prepare()
        processes = [sweep.start() for _ in range(3)]
        host = socket.gethostname()
        owner: list[str] = []

        def victims() -> list[str]:
            if not owner and (found := _root_owner(sweep)):
                owner.append(found)
            if not owner or sweep.done() < 3:
                return []
            return [w for w in sweep.running_by_worker()
                    if w != owner[0] and w.startswith(f"{host}:")]

        # The first live worker found in a trial: asking again could find it between two
        # trials (they are told the moment they end).
        found: list[str] = []
        wait_until(lambda: bool(found.extend(victims()) or found), processes[0], timeout=300)
        victim_id = found[0]
        victim = next(p for p in processes if f"{host}:{p.pid}" == victim_id)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        survivors = [p for p in processes if p is not victim]
        assert wait_all(survivors, sweep) == [0, 0], sweep.log_text()
        client = MlflowClient(stack.server.url)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        left = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`sweep.name` = '{sweep.name}' and attributes.status = 'RUNNING'",
        )
        yield Killed(stack, sweep, victim_id,
                     [(r.data.tags.get("sweep.role"), r.data.tags.get("sweep.worker")) for r in left])


def test_survivors_close_the_killed_workers_run(killed_worker: Killed) -> None:
    assert killed_worker.left_running == []


def test_a_killed_workers_trial_is_failed_and_replaced(killed_worker: Killed) -> None:
    sweep = killed_worker.sweep
    trials = [t for ts in sweep.trials().values() for t in ts]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed, "the killed worker was in the middle of a trial"
    for trial in failed:
        assert trial.system_attrs["sweep:killed"] == f"worker {killed_worker.victim_id} died"
    replaces = sorted(t.user_attrs["replaces"] for t in trials if "replaces" in t.user_attrs)
    assert replaces == sorted(t.number for t in failed)
    # The survivors closed the killed worker's own run; the champion entry point then
    # reselects from the storage, after which every invariant holds.
    assert killed_worker.left_running == []
    done = subprocess.run(
        [sys.executable, str(ROOT / "sweep.py"), "--champion", "--sweep_name", sweep.name,
         "--storage", sweep.storage_url],
        cwd=sweep.tmp, env=sweep.env(), text=True, capture_output=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    killed = check_sweep(sweep, workers=3)  # two survivors + the champion command's run
    assert sum(killed.values()) == len(failed)
    client = MlflowClient(sweep.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (victim_run,) = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`sweep.worker` = '{killed_worker.victim_id}'",
    )
    assert victim_run.info.status == "KILLED"


def _root_owner(sweep: ServerSweep) -> str | None:
    """``host:pid`` of the worker whose run is the sweep's root run, once it is tagged."""
    client = MlflowClient(sweep.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return None
    roots = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`sweep.name` = '{sweep.name}' and tags.`sweep.role` = 'sweep'",
    )
    return roots[0].data.tags.get("sweep.worker") if roots else None


# --- (d) the tracking server restarts, or goes away -------------------------------------------


def test_tracking_server_restart_then_outage(stack: Stack, tmp_path: Path) -> None:
    # A restart within MLflow's retries (the sweep's default: 6 retries, backoff factor 1,
    # about a minute): the worker rides it out and the sweep is whole.
    sweep = stack.sweep(tmp_path / "restarted", "restarted", n_trials=4)
    sweep.tmp.mkdir()
    stack.prepare()
    worker = sweep.start()
    wait_until(lambda: sweep.done() >= 2, worker, timeout=300)
    assert worker.poll() is None, "the sweep ended before the restart"
    stack.server.stop()
    time.sleep(2)
    stack.server.start()
    assert wait_all([worker], sweep) == [0], sweep.log_text()
    check_sweep(sweep, workers=0)

    # The server stays away: exit code 3 and a clear last line (one quick retry instead of a
    # minute), no traceback.
    lost = stack.sweep(tmp_path / "abandoned", "abandoned", n_trials=4)
    lost.tmp.mkdir()
    worker = lost.start(MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    wait_until(lambda: lost.done() >= 1, worker, timeout=300)
    assert worker.poll() is None, "the sweep ended before the server went away"
    stack.server.stop()
    assert wait_all([worker], lost, timeout=240) == [3], lost.log_text()
    last = Path(lost.logs[-1]).read_text().strip().splitlines()[-1]
    assert last.startswith(f"sweep: error: lost the MLflow tracking server at {stack.server.url}"), last
    assert "Traceback" not in lost.log_text()


# --- known start race -------------------------------------------------------------------------


def test_workers_opening_a_fresh_optuna_database_together(postgres: Postgres) -> None:
    # Each opener imports first, then waits on stdin: all open the storage at one instant.
    code = ("import sys; from sweeper.study import open_storage; print('ready', flush=True); "
            "sys.stdin.readline(); open_storage(sys.argv[1])")
    url = postgres.create_database(f"fresh_{next(_databases)}")
    openers = [
        subprocess.Popen([sys.executable, "-c", code, url], cwd=ROOT, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(4)
    ]
    for opener in openers:
        assert opener.stdout is not None and opener.stdout.readline().strip() == "ready"
    for opener in openers:
        assert opener.stdin is not None
        opener.stdin.write("go\n")
        opener.stdin.flush()
    outputs = [opener.communicate(timeout=120)[0] for opener in openers]
    failed = [out.strip().splitlines()[-1] for opener, out in zip(openers, outputs)
              if opener.returncode != 0]
    assert failed == []
