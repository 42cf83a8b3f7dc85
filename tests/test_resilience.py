"""Sweeps that survive: killed and resumed, interrupted, failing trials, parallel workers.

These tests run real `sweep.py` processes on a journal storage and a SQLite tracking store,
kill them with real signals, resume them, and then check the invariants a user relies on
(:func:`check_sweep`): exactly n_trials done trials per family, one trial run per Optuna trial,
one family run per family, one tree, no RUNNING run, one champion, one registered version.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from conftest import ROOT, subprocess_env

pytestmark = pytest.mark.e2e

EXPERIMENT = "resilience"
MODEL = "insurance-charges"


@dataclass
class Sweep:
    """One sweep's command line and stores, in a temp directory."""

    tmp: Path
    name: str
    families: tuple[str, ...]
    n_trials: int
    extra: tuple[str, ...] = ()
    logs: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.tmp / 'mlflow.db'}"

    @property
    def journal(self) -> Path:
        return self.tmp / "optuna.journal"

    def command(self, *more: str) -> list[str]:
        # One worker unless a test asks for more: kill points and reproducibility are about
        # one process.
        workers = () if "--n_workers" in self.extra else ("--n_workers", "1")
        return [
            sys.executable, str(ROOT / "sweep.py"),
            "--n_trials", str(self.n_trials),
            "--families", ",".join(self.families),
            "--sweep_name", self.name,
            "--storage", str(self.journal),
            *workers, *self.extra, *more,
        ]

    def env(self, **extra: str) -> dict[str, str]:
        return subprocess_env(
            MLFLOW_TRACKING_URI=self.uri, MLFLOW_EXPERIMENT_NAME=EXPERIMENT, **extra
        )

    def start(self, *more: str, **env: str) -> subprocess.Popen[str]:
        log = self.tmp / f"attempt-{len(self.logs)}.log"
        self.logs.append(str(log))
        return subprocess.Popen(
            self.command(*more), cwd=self.tmp, env=self.env(**env), text=True,
            stdout=open(log, "w"), stderr=subprocess.STDOUT,
        )

    def run(self, *more: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*more), cwd=self.tmp, env=self.env(**env), text=True,
            capture_output=True, timeout=600,
        )

    def open_storage(self) -> BaseStorage | None:
        """The sweep's Optuna storage, or ``None`` before it exists."""
        if not self.journal.exists():
            return None
        return JournalStorage(JournalFileBackend(str(self.journal)))

    def close_storage(self, storage: BaseStorage) -> None:
        """Release what :meth:`open_storage` holds (nothing for a journal file)."""

    def trials(self) -> dict[str, list[optuna.trial.FrozenTrial]]:
        """Trials per family (empty before the study exists)."""
        storage = self.open_storage()
        if storage is None:
            return {}
        try:
            found = {}
            for family in self.families:
                try:
                    study = optuna.load_study(storage=storage, study_name=f"{self.name}.{family}")
                except KeyError:
                    continue
                found[family] = study.get_trials(deepcopy=False)
            return found
        finally:
            self.close_storage(storage)

    def done(self) -> int:
        return sum(
            t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            for trials in self.trials().values() for t in trials
        )

    def running(self) -> int:
        return sum(
            t.state == TrialState.RUNNING for trials in self.trials().values() for t in trials
        )


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            return  # finished before the kill point: the caller checks the counts anyway
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("kill point never reached")
        time.sleep(0.05)


def check_sweep(sweep: Sweep, *, workers: int | None = None) -> dict[str, int]:
    """Assert every invariant of a finished sweep; return the killed-trial count per family."""
    client = MlflowClient(tracking_uri=sweep.uri, registry_uri=sweep.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`sweep.name` = '{sweep.name}'",
        max_results=5000,
    )
    by_role: dict[str, list] = {}
    for run in runs:
        by_role.setdefault(run.data.tags["sweep.role"], []).append(run)
    running = [(r.info.run_name, r.data.tags.get("sweep.role")) for r in runs if r.info.status == "RUNNING"]
    assert running == [], f"runs left RUNNING: {running}"
    (root,) = by_role["sweep"]
    for worker in by_role.get("worker", []):
        assert worker.data.tags["mlflow.parentRunId"] == root.info.run_id
    if workers is not None:
        assert len(by_role.get("worker", [])) == workers
    families = {r.data.tags["sweep.family"]: r for r in by_role["family"]}
    assert len(by_role["family"]) == len(sweep.families), "a family run was duplicated"
    assert set(families) == set(sweep.families)
    trial_runs = by_role.get("trial", [])
    killed: dict[str, int] = {}
    for family, trials in sweep.trials().items():
        family_run = families[family]
        assert family_run.data.tags["mlflow.parentRunId"] == root.info.run_id
        assert family_run.info.status == "FINISHED"
        states = [t.state for t in trials]
        done = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
        assert done == sweep.n_trials, (family, states)
        assert TrialState.RUNNING not in states and TrialState.WAITING not in states
        mine = [r for r in trial_runs if r.data.tags["mlflow.parentRunId"] == family_run.info.run_id]
        numbers = sorted(int(r.data.tags["sweep.trial"]) for r in mine)
        assert numbers == sorted(t.number for t in trials), f"{family}: runs != trials"
        runs_by_number = {int(r.data.tags["sweep.trial"]): r for r in mine}
        for trial in trials:
            run = runs_by_number[trial.number]
            if trial.state == TrialState.COMPLETE:
                assert run.info.status == "FINISHED"
                assert run.data.metrics["rmse"] == pytest.approx(trial.value)
            elif trial.state == TrialState.PRUNED:
                assert run.info.status == "KILLED"
                assert "partial_rmse" in run.data.metrics and "rmse" not in run.data.metrics
            else:
                assert trial.state == TrialState.FAIL
                assert run.info.status in ("KILLED", "FAILED")
                assert run.data.tags.get("sweep.error")
        killed[family] = sum(s == TrialState.FAIL for s in states)
    champions = [r for r in runs if r.data.tags.get("champion") == "true"]
    assert len(champions) == 1
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert version.run_id == champions[0].info.run_id
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert len(versions) == 1, "a registry version was duplicated"
    return killed


def test_sigkill_at_many_points_then_resume(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path, "killed", ("elastic_net", "random_forest"), n_trials=5)
    total = len(sweep.families) * sweep.n_trials
    # Kill points: during start-up (None), after 1, 3, 5 (family switch), 7 and 9 done trials,
    # and once everything is done (during champion selection, refit and registration).
    points: list[int | None] = [None, 1, 3, 5, 7, 9, total]
    for point in points:
        process = sweep.start()
        if point is None:
            time.sleep(2.5)
        else:
            wait_until(lambda: sweep.done() >= point, process)  # noqa: B023 - called here
        process.send_signal(signal.SIGKILL)
        process.wait()
    final = sweep.run()
    assert final.returncode == 0, final.stderr
    killed = check_sweep(sweep)
    # Killing mid-trial loses at most that trial, which is replaced: none is lost for good.
    print(f"kill points: {len(points)}; killed trials per family: {killed}")


#: A ``sitecustomize`` that makes every Python process of the sweep (also the helper that logs
#: trial runs) write a trial run's metrics a second after the run is made, so that a kill lands
#: between telling Optuna and logging (test-side only: the product has no such hook).
SLOW_LOGGING = """
import time
from mlflow import MlflowClient
log_batch = MlflowClient.log_batch
def slow_log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
    if metrics and params:  # a trial run's metrics and params
        time.sleep(1.0)
    return log_batch(self, run_id, metrics=metrics, params=params, tags=tags, **kwargs)
MlflowClient.log_batch = slow_log_batch
"""


def _trial_runs_by_number(sweep: Sweep, family: str) -> dict[int, str]:
    """``trial number -> run status`` of one family's trial runs so far."""
    client = MlflowClient(tracking_uri=sweep.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return {}
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`sweep.role` = 'trial' and tags.`sweep.family` = '{family}'",
        max_results=1000,
    )
    return {int(r.data.tags["sweep.trial"]): r.info.status for r in runs}


def test_sigkill_between_telling_and_logging_then_resume(tmp_path: Path) -> None:
    # Trials are told to Optuna before their runs are logged (in the background): a SIGKILL in
    # between leaves finished trials without a run, or with a run made but not filled. The
    # resume logs them from the trials themselves, once, and completes the half-made run.
    sweep = Sweep(tmp_path, "orphans", ("elastic_net",), n_trials=8)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_LOGGING)
    process = sweep.start(PYTHONPATH=str(hook))

    def in_the_window() -> bool:
        # Trials told, and the logger in the middle of a run (made, its metrics not yet in).
        if sweep.done() < 4:  # (also: the tracking store exists by then)
            return False
        return "RUNNING" in _trial_runs_by_number(sweep, "elastic_net").values()

    wait_until(in_the_window, process, timeout=120)
    process.send_signal(signal.SIGKILL)
    process.wait()
    told = {t.number for t in sweep.trials()["elastic_net"]
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    runs = _trial_runs_by_number(sweep, "elastic_net")
    assert told - set(runs), f"the kill should leave told trials without a run: {runs}, {told}"
    assert "RUNNING" in runs.values(), f"the kill should leave a half-made run: {runs}"
    resumed = sweep.run()
    assert resumed.returncode == 0, resumed.stderr
    check_sweep(sweep)  # one complete run per trial: none lost, none doubled
    # A second resume finds nothing left to log (the dead worker is marked as handled).
    again = sweep.run()
    assert again.returncode == 0, again.stderr
    check_sweep(sweep)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_closes_runs_as_killed_and_resumes(tmp_path: Path, signum: int, code: int) -> None:
    # Whole trials (no pruning) and enough of them that the sweep is still running when the
    # signal lands: with 4 trials, three pruned in a second or two, a busy CI machine once
    # delivered it after the sweep had finished (exit 0).
    sweep = Sweep(tmp_path, "interrupted", ("random_forest",), n_trials=8,
                  extra=("--pruning", "none"))
    process = sweep.start()
    # In the middle of the second trial (a trial is told the moment it ends, so "one done"
    # alone would often signal between two trials, where no trial is there to interrupt).
    wait_until(lambda: sweep.done() >= 1 and sweep.running() >= 1, process)
    process.send_signal(signum)
    assert process.wait(timeout=120) == code
    log = Path(sweep.logs[-1]).read_text()
    assert "sweep: interrupted; rerun with the same sweep_name to resume" in log
    assert "Traceback" not in log
    client = MlflowClient(tracking_uri=sweep.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert [r for r in runs if r.info.status == "RUNNING"] == []
    assert {r.info.status for r in runs if r.data.tags.get("sweep.role") == "sweep"} == {"KILLED"}
    interrupted = [t for t in sweep.trials()["random_forest"] if t.state == TrialState.FAIL]
    assert len(interrupted) == 1
    assert interrupted[0].system_attrs["sweep:killed"].startswith("interrupted")
    resumed = sweep.run()
    assert resumed.returncode == 0, resumed.stderr
    assert check_sweep(sweep, workers=1) == {"random_forest": 1}


def test_rerunning_a_finished_sweep_does_nothing_new(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path, "finished", ("elastic_net", "xgboost"), n_trials=3)
    first = sweep.run()
    assert first.returncode == 0, first.stderr
    again = sweep.run()
    assert again.returncode == 0, again.stderr
    check_sweep(sweep, workers=1)
    assert sum(len(t) for t in sweep.trials().values()) == 6

    def champion_line(output: str) -> str:
        return next(line for line in output.splitlines() if line.startswith("Champion:"))

    assert champion_line(again.stdout) == champion_line(first.stdout)
    assert "version 1 " in again.stdout


def test_two_workers_in_one_command(tmp_path: Path) -> None:
    # random_forest trials take long enough that the second process (a few seconds to start)
    # gets its share.
    sweep = Sweep(tmp_path, "two-workers", ("random_forest", "elastic_net"), n_trials=10,
                  extra=("--n_workers", "2"))
    command = sweep.start()
    seen: dict[int, list[str]] = {}
    while command.poll() is None:
        seen.update(_sweep_children(command.pid))
        time.sleep(0.05)
    assert command.returncode == 0, Path(sweep.logs[0]).read_text()
    check_sweep(sweep, workers=1)
    workers = {
        t.system_attrs["sweep:worker"] for trials in sweep.trials().values() for t in trials
    }
    assert len(workers) == 2, "both processes should have run trials"
    # The one extra worker was started before the command's imports (sweeper.prestart) and
    # handed its work: no second one was started.
    assert [argv[1:] for argv in seen.values()] == [[str(ROOT / "sweep.py"), "--wait-for-work"]]


def _sweep_children(pid: int) -> dict[int, list[str]]:
    """The command lines of ``pid``'s child processes that run sweep.py, by pid."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            argv = (entry / "cmdline").read_bytes().decode().split("\0")[:-1]
        except OSError:  # gone meanwhile
            continue
        ppid = next((line.split()[1] for line in status.splitlines()
                     if line.startswith("PPid:")), None)
        if ppid == str(pid) and any(arg.endswith("sweep.py") for arg in argv):
            children[int(entry.name)] = argv
    return children


def test_two_commands_on_one_sweep_name(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path, "two-commands", ("elastic_net", "xgboost"), n_trials=8)
    first, second = sweep.start(), sweep.start()
    assert first.wait(timeout=600) == 0, Path(sweep.logs[0]).read_text()
    assert second.wait(timeout=600) == 0, Path(sweep.logs[1]).read_text()
    check_sweep(sweep, workers=1)
    for log in sweep.logs:
        assert "Traceback" not in Path(log).read_text()


def test_same_seed_one_worker_gives_the_same_trials_and_champion(tmp_path: Path) -> None:
    outputs = []
    params = []
    for name in ("seeded-a", "seeded-b"):
        sweep = Sweep(tmp_path / name, name, ("elastic_net", "xgboost"), n_trials=4)
        sweep.tmp.mkdir()
        done = sweep.run()
        assert done.returncode == 0, done.stderr
        outputs.append(next(l for l in done.stdout.splitlines() if l.startswith("Champion:")))
        params.append({f: [t.params for t in trials] for f, trials in sweep.trials().items()})
    assert params[0] == params[1]
    assert outputs[0].split("(run")[0] == outputs[1].split("(run")[0]
    test_rmse = [o.split("test rmse")[1] for o in outputs]
    assert test_rmse[0] == test_rmse[1]


def test_failing_trials_fail_alone_and_a_failed_family_loses(tmp_path: Path) -> None:
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    # elastic_net: about half of the trials get max_iter=-1, which scikit-learn refuses.
    (spaces / "elastic_net.yaml").write_text(
        "searched:\n"
        "  alpha: {type: float, low: 1.0e-3, high: 10.0, log: true}\n"
        "  max_iter: {type: categorical, choices: [-1, 2000]}\n"
    )
    # xgboost: every trial fails.
    (spaces / "xgboost.yaml").write_text(
        "fixed:\n  max_depth: -5\nsearched:\n  learning_rate: {type: float, low: 0.01, high: 0.3}\n"
    )
    sweep = Sweep(tmp_path, "failing", ("elastic_net", "xgboost"), n_trials=6)
    done = sweep.run(SWEEP_SEARCH_SPACES=str(spaces))
    assert done.returncode == 0, done.stderr
    trials = sweep.trials()
    en_states = [t.state for t in trials["elastic_net"]]
    assert TrialState.FAIL in en_states and TrialState.COMPLETE in en_states
    assert all(t.state == TrialState.FAIL for t in trials["xgboost"])
    assert len(trials["xgboost"]) == 6, "failed trials count toward n_trials"
    client = MlflowClient(tracking_uri=sweep.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    failed_runs = [r for r in runs if r.info.status == "FAILED"]
    assert failed_runs and all(r.data.tags.get("sweep.error") for r in failed_runs)
    xgb_run = next(r for r in runs if r.data.tags.get("sweep.role") == "family"
                   and r.data.tags["sweep.family"] == "xgboost")
    assert xgb_run.info.status == "FAILED"
    assert "xgboost" in done.stdout and "failed" in done.stdout
    assert "Champion: elastic_net" in done.stdout


def test_every_family_failing_is_an_error_without_a_model(tmp_path: Path) -> None:
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    (spaces / "elastic_net.yaml").write_text(
        "fixed:\n  max_iter: -1\nsearched:\n  alpha: {type: float, low: 1.0e-3, high: 10.0}\n"
    )
    sweep = Sweep(tmp_path, "all-failing", ("elastic_net",), n_trials=2)
    done = sweep.run(SWEEP_SEARCH_SPACES=str(spaces))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(
        "sweep: error: every family failed, so there is no champion (elastic_net: "
    )
    assert "max_iter" in lines[-1]
    client = MlflowClient(tracking_uri=sweep.uri, registry_uri=sweep.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert [r for r in runs if r.info.status == "RUNNING"] == []
    assert client.search_model_versions(f"name = '{MODEL}'") == []


def test_champion_entry_point_after_stopping_workers_early(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path, "early", ("elastic_net", "random_forest"), n_trials=6)
    process = sweep.start()
    wait_until(lambda: sweep.done() >= 8, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = subprocess.run(
        [sys.executable, str(ROOT / "sweep.py"), "--champion", "--sweep_name", sweep.name,
         "--n_workers", "1",
         "--storage", str(sweep.journal)],
        cwd=tmp_path, env=sweep.env(), text=True, capture_output=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Champion: " in done.stdout
    client = MlflowClient(tracking_uri=sweep.uri, registry_uri=sweep.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    champions = [r for r in runs if r.data.tags.get("champion") == "true"]
    assert len(champions) == 1
    assert client.get_model_version_by_alias(MODEL, "champion").run_id == champions[0].info.run_id
    # The stopped worker's running trial was failed and closed, not left RUNNING.
    states = [t.state for trials in sweep.trials().values() for t in trials]
    assert TrialState.RUNNING not in states


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interruption_that_a_trials_code_turns_into_an_error_still_interrupts(
    signum: int, tmp_path: Path, tracking_uri: str, insurance_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Seen in a run of the SIGTERM test above: the signal landed while Optuna's journal
    # storage wrote a trial's suggested parameter, its lock's cleanup raised FileNotFoundError
    # in place of the interruption, the trial was told as failed, and the sweep went on to
    # register a champion and exit 0. Here a trial's code does the same on purpose.
    import io

    import mlflow

    from sweeper import runner
    from sweeper.config import SweepConfig
    from sweeper.objective import FamilyObjective

    scored = FamilyObjective.__call__

    def objective(self: FamilyObjective, trial: optuna.Trial) -> float:
        if trial.number == 1:
            try:
                signal.raise_signal(signum)
                time.sleep(5)  # the handler raises in this thread at its next bytecode
            except KeyboardInterrupt as interruption:
                raise FileNotFoundError("optuna.journal.lock….rename") from interruption
        return scored(self, trial)

    monkeypatch.setattr(FamilyObjective, "__call__", objective)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    config = SweepConfig(n_trials=3, families="elastic_net", data=str(insurance_csv),
                         cv_folds=2, n_workers=1, verbose=0)
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(runner.SweepInterrupted) as raised:
            runner.run_sweep(config, out=io.StringIO())
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
    assert raised.value.signum == signum
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == previous
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna-sweeps.journal")))
    (name,) = [s.study_name for s in optuna.get_all_study_summaries(storage)
               if s.study_name.endswith(".elastic_net")]
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    # Trial 1 failed as interrupted (and its replacement waits for a resume); none ran after.
    assert [t.state for t in trials] == [
        TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING, TrialState.WAITING]
    assert trials[1].system_attrs["sweep:killed"] == (
        f"interrupted ({signal.Signals(signum).name})")
    runs = MlflowClient(tracking_uri).search_runs(
        [mlflow.get_experiment_by_name("Default").experiment_id])
    assert runs and {r.info.status for r in runs} <= {"FINISHED", "KILLED"}
