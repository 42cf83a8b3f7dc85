"""Finished trials whose runs a killed worker never logged (:mod:`sweeper.orphans`), and the
background logging that makes them possible (:class:`sweeper.tracking.TrialLogProcess`,
:class:`sweeper.tracking.BackgroundLogger`).

The whole path (a real SIGKILL between telling and logging, then a resume) is
``test_resilience.py::test_sigkill_between_telling_and_logging_then_resume``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from sweeper import ledger, orphans
from sweeper import trial_attrs as attrs
from sweeper.processes import lowered_priority
from sweeper.study import open_storage
from sweeper.tracking import BackgroundLogger, SweepTracker, TrialLogProcess


def _dead_worker() -> str:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}"


ME = ledger.worker_id()
LIVE = f"{socket.gethostname()}:{os.getppid()}"
DEAD = _dead_worker()
REMOTE = "elsewhere.invalid:4242"


def _trial(
    worker: str | None,
    state: TrialState = TrialState.COMPLETE,
    *,
    killed: bool = False,
    heartbeat: float | None = None,
    value: float = 1.0,
) -> FrozenTrial:
    system_attrs: dict[str, object] = {}
    if worker is not None:
        system_attrs[ledger.ATTR_WORKER] = worker
    if heartbeat is not None:
        system_attrs[ledger.ATTR_HEARTBEAT] = heartbeat
    if killed:
        system_attrs[ledger.ATTR_KILLED] = f"worker {worker} died"
    return optuna.trial.create_trial(
        state=state,
        value=value if state in (TrialState.COMPLETE, TrialState.PRUNED) else None,
        params={"alpha": 0.5},
        distributions={"alpha": optuna.distributions.FloatDistribution(0.1, 1.0)},
        user_attrs={attrs.ATTR_FOLD_RMSE: [value, value], attrs.ATTR_MAE: 0.5, attrs.ATTR_R2: 0.9,
                    attrs.ATTR_RMSE_STD: 0.1},
        system_attrs=system_attrs,
    )


NOW = _trial(None).datetime_complete.timestamp()  # type: ignore[union-attr]

# (case, trials, flushed workers, seconds after the trials finished, workers gone)
GONE_CASES = [
    ("this worker is alive", [_trial(ME)], [], 0.0, set()),
    ("a live worker of this host", [_trial(LIVE)], [], 0.0, set()),
    ("a dead worker of this host, at once", [_trial(DEAD)], [], 0.0, {DEAD}),
    ("a dead worker that said it flushed", [_trial(DEAD)], [DEAD], 0.0, set()),
    ("a dead worker's pruned and failed trials",
     [_trial(DEAD, TrialState.PRUNED), _trial(DEAD, TrialState.FAIL)], [], 0.0, {DEAD}),
    ("a trial failed for a dead worker is its reaper's to log",
     [_trial(DEAD, TrialState.FAIL, killed=True)], [], 0.0, set()),
    ("a RUNNING trial is the reaper's, not an orphan", [_trial(DEAD, TrialState.RUNNING)], [],
     0.0, set()),
    ("a trial nobody popped", [_trial(None)], [], 0.0, set()),
    ("another host, recently seen", [_trial(REMOTE)], [], 10.0, set()),
    ("another host, silent too long", [_trial(REMOTE)], [], ledger.STALE_AFTER + 1, {REMOTE}),
    ("another host, silent trials but beating for a running one",
     [_trial(REMOTE), _trial(REMOTE, TrialState.RUNNING, heartbeat=NOW + ledger.STALE_AFTER)],
     [], ledger.STALE_AFTER + 1, set()),
]


@pytest.mark.parametrize(
    ("trials", "flushed", "after", "gone"),
    [case[1:] for case in GONE_CASES],
    ids=[case[0] for case in GONE_CASES],
)
def test_gone_workers(
    trials: list[FrozenTrial], flushed: list[str], after: float, gone: set[str]
) -> None:
    assert orphans.gone_workers(trials, flushed, NOW + after) == gone


@pytest.fixture()
def family(tmp_path: Path, tracking_uri: str) -> tuple[optuna.storages.BaseStorage, optuna.Study,
                                                        SweepTracker, str]:
    storage = open_storage(str(tmp_path / "sweep.journal"))
    study = optuna.create_study(storage=storage, study_name="s.elastic_net")
    client = MlflowClient()
    root = client.create_run("0").info.run_id
    tracker = SweepTracker(client, root, "s")
    return storage, study, tracker, tracker.create_family_run("elastic_net", "s.elastic_net")


def _runs(tracker: SweepTracker, family_run: str) -> dict[int, tuple[str, dict[str, float]]]:
    return {n: (r.info.status, r.data.metrics) for n, r in tracker.trial_runs(family_run).items()}


def test_a_dead_workers_orphans_are_logged_once_and_a_half_made_run_is_completed(
    family: tuple[optuna.storages.BaseStorage, optuna.Study, SweepTracker, str],
) -> None:
    storage, study, tracker, family_run = family
    trials = [
        _trial(DEAD, value=10.0),                      # 0: told, never logged
        _trial(DEAD, TrialState.PRUNED, value=20.0),   # 1: run made, not filled
        _trial(DEAD, value=30.0),                      # 2: logged before the kill
        _trial(DEAD, TrialState.FAIL, killed=True),    # 3: its reaper's
        _trial(ME, value=40.0),                        # 4: this live worker's, in its queue
    ]
    for trial in trials:
        study.add_trial(trial)
    frozen = study.get_trials(deepcopy=False)
    half_made = tracker.client.create_run(
        tracker.experiment_id, tags=tracker._trial_tags(family_run, "elastic_net", frozen[1])
    ).info.run_id
    tracker.log_finished(family_run, "elastic_net", frozen[2])

    assert orphans.log_orphans(storage, study, tracker, family_run, "elastic_net", seed=0) == 2

    runs = _runs(tracker, family_run)
    assert sorted(runs) == [0, 1, 2]
    assert runs[0] == ("FINISHED", {"rmse": 10.0, "fold_rmse": 10.0, "mae": 0.5, "r2": 0.9,
                                    "rmse_std": 0.1})
    # The half-made run is the one completed; a pruned trial's value is no `rmse`.
    assert tracker.trial_runs(family_run)[1].info.run_id == half_made
    assert runs[1][0] == "KILLED"
    assert runs[1][1]["partial_rmse"] == 20.0 and "rmse" not in runs[1][1]
    assert runs[2][0] == "FINISHED"
    # Done once: the dead worker is now marked flushed, so later checks find nothing to do.
    assert orphans.log_orphans(storage, study, tracker, family_run, "elastic_net", seed=0) == 0
    assert sorted(_runs(tracker, family_run)) == [0, 1, 2]
    assert orphans.gone_workers(study.get_trials(deepcopy=False), [DEAD], NOW) == set()


def test_orphans_claimed_by_a_live_worker_are_left_to_it(
    family: tuple[optuna.storages.BaseStorage, optuna.Study, SweepTracker, str],
) -> None:
    storage, study, tracker, family_run = family
    study.add_trial(_trial(DEAD))
    claim, _ = ledger.claim_study(storage, f"s.elastic_net.runs-of.{DEAD}", seed=0)
    claim.set_user_attr(ledger.ATTR_OWNER, LIVE)
    assert orphans.log_orphans(storage, study, tracker, family_run, "elastic_net", seed=0) == 0
    assert tracker.trial_runs(family_run) == {}
    # Its owner died before finishing: the next worker takes the claim over and logs them.
    claim.set_user_attr(ledger.ATTR_OWNER, _dead_worker())
    assert orphans.log_orphans(storage, study, tracker, family_run, "elastic_net", seed=0) == 1
    assert sorted(tracker.trial_runs(family_run)) == [0]


def test_a_worker_that_flushed_leaves_no_orphans(
    family: tuple[optuna.storages.BaseStorage, optuna.Study, SweepTracker, str],
) -> None:
    storage, study, tracker, family_run = family
    study.add_trial(_trial(DEAD))
    orphans.mark_flushed(storage, study, DEAD)
    assert orphans.log_orphans(storage, study, tracker, family_run, "elastic_net", seed=0) == 0
    assert tracker.trial_runs(family_run) == {}


def test_claim_done_needs_the_claim_taken_first(tmp_path: Path) -> None:
    claim = ledger.OwnedClaim(open_storage(str(tmp_path / "c.journal")), "c", seed=0)
    with pytest.raises(RuntimeError, match=r"^claim 'c': is_done\(\) needs try_take\(\) first$"):
        claim.is_done()
    with pytest.raises(RuntimeError, match=r"^claim 'c': mark_done\(\) needs try_take\(\) first$"):
        claim.mark_done()
    assert claim.try_take() and not claim.is_done()
    claim.mark_done()
    other = ledger.OwnedClaim(claim.storage, "c", seed=0)
    assert not other.try_take()  # its owner (this process) is alive
    assert other.is_done()


def test_the_background_logger_queues_a_call_even_when_it_then_raises() -> None:
    # A trial is told before its run is queued: when an earlier call failed, the new call must
    # still be queued (and run) before the error stops the sweep.
    logger = BackgroundLogger()
    ran: list[str] = []
    failed = threading.Event()

    def fail() -> None:
        raise ConnectionError("tracking server gone")

    logger.submit(fail)
    logger.submit(failed.set)
    assert failed.wait(5)
    with pytest.raises(ConnectionError, match="tracking server gone"):
        logger.submit(lambda: ran.append("told trial"))
    logger.close()
    assert ran == ["told trial"]


def test_the_trial_logging_process_logs_runs_in_order_and_ignores_ctrl_c(
    family: tuple[optuna.storages.BaseStorage, optuna.Study, SweepTracker, str],
    tracking_uri: str,
) -> None:
    _, study, tracker, family_run = family
    for value in (10.0, 20.0, 30.0):
        study.add_trial(_trial(ME, value=value))
    logs = TrialLogProcess(tracking_uri, tracker)
    try:
        helper = logs._pool.submit(os.getpid).result(timeout=60)  # the helper's, once started
        os.kill(helper, signal.SIGINT)  # Ctrl-C reaches the whole process group
        for trial in study.get_trials(deepcopy=False):
            logs.submit(family_run, "elastic_net", trial)
        logs.flush()
    finally:
        logs.close()
    runs = tracker.trial_runs(family_run)
    assert {n: r.data.metrics["rmse"] for n, r in runs.items()} == {0: 10.0, 1: 20.0, 2: 30.0}
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    assert all(r.data.tags["sweep.name"] == "s" for r in runs.values())
    assert [r.info.start_time <= r.info.end_time for r in runs.values()] == [True] * 3


def test_a_trial_logging_process_that_cannot_log_fails_the_flush(
    family: tuple[optuna.storages.BaseStorage, optuna.Study, SweepTracker, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, _, tracker, _ = family
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the helper inherits it
    # A tracking server that is away: the helper starts (it makes no request at start), and
    # the trial's logging fails with MLflow's error, which flush raises in the sweep.
    logs = TrialLogProcess("http://127.0.0.1:9", tracker)
    try:
        logs.submit("family-run", "elastic_net", _trial(ME))
        with pytest.raises(Exception, match="Failed to establish|Max retries|refused") as error:
            logs.flush()
        assert not isinstance(error.value, BrokenProcessPool)
        # Raised once: a later submit queues, and its own failure comes with the next flush.
        logs.submit("family-run", "elastic_net", _trial(ME))
        with pytest.raises(Exception, match="Failed to establish|Max retries|refused"):
            logs.flush()
    finally:
        logs.close()


def test_a_trial_logging_process_that_cannot_start_fails_the_flush(
    family: tuple[optuna.storages.BaseStorage, optuna.Study, SweepTracker, str],
) -> None:
    _, _, tracker, _ = family
    # A helper whose imports fail (a broken installation): every logging call fails at once.
    helper = ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=lowered_priority,
        initargs=(0, os.getpid(), "sweeper.no_such_module", "start"),
    )
    logs = TrialLogProcess("sqlite:///unused.db", tracker, helper=helper)
    with pytest.raises(BrokenProcessPool):
        logs.submit("family-run", "elastic_net", _trial(ME))
        logs.flush()
    # Reported once; a later submit fails at once, and closing neither hangs nor raises again.
    with pytest.raises(BrokenProcessPool):
        logs.submit("family-run", "elastic_net", _trial(ME))
    logs.close()


@pytest.mark.parametrize(
    ("n_workers", "spawned_by", "expected"),
    [(1, None, "TrialLogProcess"), (0, None, "TrialLogThread"), (1, "2", "TrialLogThread")],
    ids=["one worker, a core to spare", "a worker per core", "a worker spawned beside another"],
)
def test_trial_runs_are_logged_from_a_process_only_with_a_core_to_spare(
    family: tuple[optuna.storages.BaseStorage, optuna.Study, SweepTracker, str],
    monkeypatch: pytest.MonkeyPatch,
    n_workers: int,
    spawned_by: str | None,
    expected: str,
) -> None:
    from sweeper import prestart, runner
    from sweeper.config import SweepConfig

    _, _, tracker, _ = family
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # 2 cores
    if spawned_by is not None:
        monkeypatch.setenv(prestart.WORKERS_ENV, spawned_by)
    else:
        monkeypatch.delenv(prestart.WORKERS_ENV, raising=False)
    logs = runner._trial_logs(tracker, SweepConfig(n_workers=n_workers))
    try:
        assert type(logs).__name__ == expected
        if isinstance(logs, TrialLogProcess):
            # Niced from its start: it yields to a trial that shares its core.
            niceness = logs._pool.submit(os.nice, 0).result(timeout=60)
            assert niceness == min(19, os.nice(0) + prestart.LOGGER_NICENESS)
    finally:
        logs.close()
    # The drawing helpers start at the lowest priority on the same condition.
    assert runner.spare_core(SweepConfig(n_workers=n_workers)) is (expected == "TrialLogProcess")
