"""Coordination of workers through the Optuna storage, the one thing every worker shares.

A sweep may run as one process, several processes on one machine, or many machines on
PostgreSQL, and may be killed and resumed at any moment. Nothing here is home-made locking: it
rests on two atomic operations that every Optuna storage (journal file, SQLite, PostgreSQL)
provides:

- creating a study: exactly one of many concurrent creators succeeds (a *claim*);
- ``set_trial_state_values``: moving a trial WAITING -> RUNNING or RUNNING -> FAIL succeeds for
  exactly one caller (a *compare-and-set*).

Each family study gets a pool of exactly ``n_trials`` WAITING trials when it is created; workers
pop trials from it with a compare-and-set, so together they run exactly ``n_trials``. A trial
whose worker died (SIGKILL, a lost machine) is failed by whichever worker notices first, and that
worker alone enqueues its replacement and closes its MLflow run: nothing is lost or duplicated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from sweeper.errors import SweepError

#: Trial system attrs: who runs a trial and when it last said so.
ATTR_WORKER = "sweep:worker"
ATTR_HEARTBEAT = "sweep:heartbeat"
#: Why a trial was failed without an error of its own (killed worker, interruption).
ATTR_KILLED = "sweep:killed"

#: Seconds between heartbeats, and after which a silent worker on another host is dead.
HEARTBEAT_INTERVAL = 10.0
STALE_AFTER = 60.0


def worker_id() -> str:
    """``host:pid`` of this process (computed on each call, so forks get their own)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_is_dead(worker: str | None, last_seen: float, now: float) -> bool:
    """Whether the worker that owns a trial is gone.

    On this host a dead pid is certain at once (what makes resume after SIGKILL immediate);
    elsewhere only silence longer than :data:`STALE_AFTER` tells.
    """
    if worker:
        host, _, pid = worker.rpartition(":")
        if host == socket.gethostname() and pid.isdigit():
            if int(pid) == os.getpid():
                return False
            if not _pid_alive(int(pid)):
                return True
    return now - last_seen > STALE_AFTER


def claim_study(
    storage: BaseStorage,
    name: str,
    *,
    seed: int,
    pruner: optuna.pruners.BasePruner | None = None,
) -> tuple[optuna.Study, bool]:
    """Create the study, or load it when another worker (or an earlier attempt) did.

    Returns ``(study, created)``; ``created`` is true for exactly one caller ever. The caller
    that creates the study samples with ``seed`` (so a one-worker sweep is reproducible); one
    that joins it samples with a seed of its own, :func:`joining_seed`.
    """
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner,
        )
        return study, True
    except DuplicatedStudyError:
        sampler = optuna.samplers.TPESampler(seed=joining_seed(seed))
        study = optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
        return study, False


def joining_seed(seed: int) -> int:
    """The sampler seed of a worker that joins a study: ``seed`` mixed with this worker's id.

    Workers sampling with one seed suggest the same parameters in the same order (TPE's first
    trials are random draws): with two workers on 2 cores, 6-7 of a sweep's 250 trials
    repeated another trial's configuration, most of them in the first trials of a family.
    """
    digest = hashlib.sha256(f"{seed}/{worker_id()}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


#: User attrs of an :class:`OwnedClaim`'s study: the ``host:pid`` of its owner, and whether
#: the work was done.
ATTR_OWNER = "worker"
ATTR_DONE = "done"


class OwnedClaim:
    """Work that one worker at a time may do, such as registering a champion: whoever creates
    the study ``name`` owns it, and it is taken over when its owner died.

    Creating the study and writing the owner's name are two storage calls: a claim found
    without an owner belongs to a worker that died in between, and is taken over once it has
    stayed so for ``unowned_grace`` seconds.
    """

    def __init__(
        self, storage: BaseStorage, name: str, *, seed: int, unowned_grace: float = 10.0
    ) -> None:
        self.storage = storage
        self.name = name
        self.seed = seed
        self.unowned_grace = unowned_grace
        self._unowned_since: float | None = None
        self._study: optuna.Study | None = None

    def try_take(self) -> bool:
        """Own the claim now if nobody alive does; false when another live worker owns it."""
        study, created = claim_study(self.storage, self.name, seed=self.seed)
        self._study = study
        owner = study.user_attrs.get(ATTR_OWNER)
        if owner:
            self._unowned_since = None
        elif self._unowned_since is None:
            self._unowned_since = time.monotonic()
        abandoned = (
            self._unowned_since is not None
            and time.monotonic() - self._unowned_since >= self.unowned_grace
        )
        now = time.time()
        if created or abandoned or (owner and worker_is_dead(owner, now, now)):
            study.set_user_attr(ATTR_OWNER, worker_id())
            return True
        return False

    def is_done(self) -> bool:
        """Whether an owner finished the work (:meth:`mark_done`); call after :meth:`try_take`."""
        if self._study is None:
            raise RuntimeError(f"claim {self.name!r}: is_done() needs try_take() first")
        return bool(self._study.user_attrs.get(ATTR_DONE))

    def mark_done(self) -> None:
        """Record that the work is done, so that later takers of the claim skip it."""
        if self._study is None:
            raise RuntimeError(f"claim {self.name!r}: mark_done() needs try_take() first")
        self._study.set_user_attr(ATTR_DONE, True)


def wait_for_attrs(
    study: optuna.Study, keys: tuple[str, ...], *, timeout: float = 120.0
) -> Mapping[str, Any]:
    """Wait until another worker has written ``keys`` into the study's user attrs."""
    deadline = time.monotonic() + timeout
    while True:
        attrs = study.user_attrs
        if all(key in attrs for key in keys):
            return attrs
        if time.monotonic() > deadline:
            raise SweepError(
                f"study {study.study_name!r} exists but its creator never finished setting it "
                f"up (missing {', '.join(k for k in keys if k not in attrs)}); the creating "
                "worker probably died at start: rerun with a new sweep_name"
            )
        time.sleep(0.2)


def check_same(study: optuna.Study, expected: Mapping[str, Any]) -> None:
    """Resuming or joining a sweep needs the parameters that define its results unchanged."""
    recorded = study.user_attrs
    for key, value in expected.items():
        if key in recorded and recorded[key] != value:
            raise SweepError(
                f"sweep {study.study_name!r} was started with {key}={recorded[key]!r}, but this "
                f"run has {key}={value!r}; resume with the same value or pick a new sweep_name"
            )


def study_trial_id(storage: BaseStorage, study: optuna.Study, number: int) -> int:
    """The storage's id of a trial, from public storage calls only."""
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def pop_waiting(storage: BaseStorage, study: optuna.Study) -> tuple[optuna.Trial, int] | None:
    """Atomically take one WAITING trial of the pool: ``(trial, trial_id)``, or ``None`` when
    the pool is empty. Call it with signals deferred (:func:`deferred_signals`) so that an
    interruption cannot fall between taking the trial and signing it."""
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = study_trial_id(storage, study, frozen.number)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                continue  # another worker took it first
        except UpdateFinishedTrialError:
            continue
        storage.set_trial_system_attr(trial_id, ATTR_WORKER, worker_id())
        storage.set_trial_system_attr(trial_id, ATTR_HEARTBEAT, time.time())
        return optuna.trial.Trial(study, trial_id), trial_id
    return None


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, so a few storage writes that belong
    together are never split by an interruption (SIGKILL cannot be held: see reap_dead).

    Held with Python handlers that record the signal, not with a signal mask: the kernel
    hands a process signal to any thread that does not block it (the logging and heartbeat
    threads), and Python then raises in the main thread anyway. A held signal is raised
    again when the block ends, to whatever handler was there before.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in _HELD_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            # None: a handler installed outside Python, which cannot be put back; the default.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(held):  # each once, in the order they came
            signal.raise_signal(signum)


_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def kill_trial(
    storage: BaseStorage, study: optuna.Study, trial: FrozenTrial, reason: str
) -> FrozenTrial | None:
    """Fail a RUNNING trial that will never finish and enqueue its replacement.

    Returns the failed trial for exactly one caller (who must then close its MLflow run), and
    ``None`` for everyone else. The replacement re-runs the same configuration when the dead
    trial had sampled all of it, so a resumed seeded sweep stays reproducible.
    """
    trial_id = study_trial_id(storage, study, trial.number)
    try:
        storage.set_trial_system_attr(trial_id, ATTR_KILLED, reason)
        won = storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
    except UpdateFinishedTrialError:
        return None
    if not won:
        return None
    fixed = trial.system_attrs.get("fixed_params", {})
    params = {**trial.params, **fixed} if trial.params else dict(fixed)
    study.enqueue_trial(params, user_attrs={"replaces": trial.number})
    return storage.get_trial(trial_id)


#: A RUNNING trial without a worker attr was popped by a worker that died within milliseconds
#: of popping it; it is dead once this much older than its start.
_UNCLAIMED_GRACE = 15.0


def reap_dead(
    storage: BaseStorage,
    study: optuna.Study,
    on_killed: Callable[[FrozenTrial], None],
) -> int:
    """Fail every RUNNING trial whose worker is dead; returns how many this caller failed."""
    now = time.time()
    reaped = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        worker = trial.system_attrs.get(ATTR_WORKER)
        if worker is None:
            if now - started <= _UNCLAIMED_GRACE:
                continue
        elif not worker_is_dead(worker, float(trial.system_attrs.get(ATTR_HEARTBEAT, started)), now):
            continue
        killed = kill_trial(storage, study, trial, f"worker {worker or '(unknown)'} died")
        if killed is not None:
            on_killed(killed)
            reaped += 1
    return reaped


@dataclasses.dataclass
class Heartbeat:
    """Beats for this process's unfinished trials on a daemon thread.

    A trial is beaten from the moment it is popped until it is told, as soon as its objective
    returns (its run is logged afterwards, in the background).
    """

    storage: BaseStorage
    interval: float = HEARTBEAT_INTERVAL

    def __post_init__(self) -> None:
        self._trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-heartbeat", daemon=True)
        self._thread.start()

    def add(self, trial_id: int) -> None:
        with self._lock:
            self._trial_ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._trial_ids.discard(trial_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(self._trial_ids)
            for trial_id in ids:
                try:
                    self.storage.set_trial_system_attr(trial_id, ATTR_HEARTBEAT, time.time())
                except (UpdateFinishedTrialError, KeyError):
                    self.discard(trial_id)
                except Exception:  # noqa: BLE001 - a missed beat is retried next interval
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
