"""Worker processes started before the sweep knows what they will work on.

A worker the sweep spawns spends its first 2-3 s of CPU starting Python and importing MLflow,
Optuna and the estimators before it runs a trial, while the command's own process is already
running trials: on 2 cores the sweep runs on one core for those seconds. Started at the top of
the command, before the command's own imports, a worker imports on the core that is idle then,
and waits (:func:`wait_for_work`) until the sweep hands it its arguments and environment
(:meth:`Prestarted.hand`), which the sweep knows only once its MLflow run and sweep name exist.

Where the command's workers leave a core of the machine free, the command's helpers start here
too, for the same reason: the trial logger process (:class:`sweeper.tracking.TrialLogProcess`,
4 s of CPU to import MLflow and its SQL store) and the drawing helpers
(:class:`sweeper.drawing.Drawer`, 3.2-3.6 s each for the estimators and matplotlib). Started by the
sweep, their imports ran on the free core while the first trials ran on the other, and slowed
them; started here, they import while the command does, on a core that is idle then.

This module imports nothing heavy: it runs before the imports it is there to overlap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from sweeper.processes import die_with_parent, lowered_priority

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    from sweeper.config import SweepConfig
    from sweeper.drawing import Drawer

__all__ = [
    "LOGGER_NICENESS", "SPAWNED_ENV", "SWEEP_SCRIPT", "WAIT_FLAG", "WORKERS_ENV", "Prestarted",
    "drawing_processes", "for_command", "spare_core", "start_trial_logger", "start_worker",
    "wait_for_work",
]

#: The command-line flag of a prestarted worker (``sweep.py --wait-for-work``).
WAIT_FLAG = "--wait-for-work"
#: Set in the workers a command spawns: they are not alone on the machine, and spawn nothing.
SPAWNED_ENV = "SWEEP_SPAWNED_BY"
#: The command-line entry point that every worker runs, prestarted or spawned.
SWEEP_SCRIPT = Path(__file__).resolve().parent.parent / "sweep.py"
#: Set in the workers a command spawns: the number of worker processes of that command.
WORKERS_ENV = "SWEEP_COMMAND_WORKERS"
#: Added to the trial-logging helper's niceness: it yields to a trial it shares a core with
#: (in interleaved runs with 1 worker on 2 cores, 100 trials spent 1.7-1.9 s off the CPU beside
#: helpers at normal priority, 0.4-0.6 s beside niced ones), and still comes before the drawing
#: helpers (19), whose plots can wait for the end.
LOGGER_NICENESS = 10


def spare_core(config: SweepConfig) -> bool:
    """Whether the command's workers leave a core of this machine free for its helpers."""
    workers = int(os.environ.get(WORKERS_ENV, config.workers))  # the command's, all together
    return workers < len(os.sched_getaffinity(0))


def drawing_processes() -> int:
    """Drawing helpers once the trials are done: one per core (the trials no longer need
    them), at most one per plot job that can run at once."""
    return max(1, min(os.cpu_count() or 1, 4))


def start_trial_logger(niceness: int = LOGGER_NICENESS) -> ProcessPoolExecutor:
    """The trial logger's helper process, started now at ``niceness`` added: it imports MLflow
    and the tracking store's code, then waits for :class:`sweeper.tracking.TrialLogProcess` to
    tell it the sweep's runs."""
    import concurrent.futures
    import multiprocessing

    pool = concurrent.futures.ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=lowered_priority,
        initargs=(niceness, os.getpid(), "sweeper.tracking", "start_trial_logger_helper"),
    )
    pool.submit(os.getpid)  # the executor starts its process on the first submission
    return pool


class Prestarted:
    """Worker processes waiting for work, started by :meth:`start`; each is handed work once
    (:meth:`hand`), and :meth:`close` stops those that never were. Also the command's helpers
    started with them, each taken once by the sweep (:meth:`take_trial_logger`,
    :meth:`take_drawer`) or stopped by :meth:`close`."""

    def __init__(
        self,
        processes: Sequence[subprocess.Popen[bytes]] = (),
        *,
        trial_logger: ProcessPoolExecutor | None = None,
        drawer: Drawer | None = None,
    ) -> None:
        self._waiting = list(processes)
        self._trial_logger = trial_logger
        self._drawer = drawer

    def take_trial_logger(self) -> ProcessPoolExecutor | None:
        """The prestarted trial logger (:func:`start_trial_logger`), once; then ``None``."""
        pool, self._trial_logger = self._trial_logger, None
        return pool

    def take_drawer(self) -> Drawer | None:
        """The prestarted drawing helpers (a started :class:`~sweeper.drawing.Drawer`), once;
        then ``None``."""
        drawer, self._drawer = self._drawer, None
        return drawer

    @classmethod
    def start(
        cls,
        n: int,
        script: Path = SWEEP_SCRIPT,
        *,
        trial_logger: ProcessPoolExecutor | None = None,
        drawer: Drawer | None = None,
    ) -> Prestarted:
        """Start ``n`` processes of ``script`` (``sweep.py``) with :data:`WAIT_FLAG`; hold them
        and the helpers given, started by the caller."""
        if n < 0:
            raise ValueError(f"Prestarted.start: n must be >= 0, but got {n}")
        # Not this command's MLflow run: a worker makes its own (the final environment,
        # handed over with the work, replaces this one anyway).
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
        return cls(
            [start_worker([WAIT_FLAG], env, script=script, stdin=subprocess.PIPE)
             for _ in range(n)],
            trial_logger=trial_logger, drawer=drawer,
        )

    def __len__(self) -> int:
        return len(self._waiting)

    def hand(self, argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes] | None:
        """Give one waiting worker its command-line arguments and whole environment; that
        worker, or ``None`` when none is left (or the next one is gone: the caller starts
        one itself)."""
        while self._waiting:
            process = self._waiting.pop(0)
            if process.poll() is not None:
                continue
            message = json.dumps({"argv": list(argv), "env": dict(env)}).encode() + b"\n"
            try:
                if process.stdin is None:
                    raise BrokenPipeError("no stdin")
                process.stdin.write(message)
                process.stdin.close()
            except OSError:  # it died since poll(): no worse than never having started it
                process.kill()
                process.wait()
                continue
            return process
        return None

    def close(self) -> None:
        """Stop the workers never handed work (the sweep failed first, or needed fewer), and
        the helpers never taken."""
        if self._trial_logger is not None:
            self._trial_logger.shutdown(wait=True, cancel_futures=True)
            self._trial_logger = None
        if self._drawer is not None:
            self._drawer.close()
            self._drawer = None
        for process in self._waiting:
            if process.stdin is not None:
                process.stdin.close()  # this end of its pipe
            if process.poll() is None:
                process.terminate()
        for process in self._waiting:
            process.wait()
        self._waiting.clear()


def start_worker(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    script: Path = SWEEP_SCRIPT,
    stdin: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start one worker process of a command: ``script`` (``sweep.py``) with ``argv`` and
    ``env``, its output discarded (the command reports for its workers)."""
    return subprocess.Popen(
        [sys.executable, str(script), *argv], stdin=stdin, stdout=subprocess.DEVNULL,
        env=dict(env),
        # Killing the command stops its workers, waiting or working; a working one's trials
        # are reaped on resume.
        preexec_fn=partial(die_with_parent, os.getpid()),
    )


def for_command(
    config: SweepConfig, script: Path = SWEEP_SCRIPT, *, helpers: bool = True
) -> Prestarted:
    """The workers a command will spawn (``workers - 1``), started now; none in a worker
    that was itself spawned, which spawns nothing.

    With ``helpers`` and a core the workers leave free (:func:`spare_core`), the command's
    trial logger and, unless a time budget has the families end together (they are drawn at
    the end then), its drawing helpers start now too.
    """
    if SPAWNED_ENV in os.environ:
        return Prestarted()
    trial_logger, drawer = None, None
    try:
        if helpers and spare_core(config):
            trial_logger = start_trial_logger()
            if config.time_budget <= 0:
                from sweeper.drawing import Drawer  # light: its helpers import what they need

                drawer = Drawer(config.storage, processes=drawing_processes(), spare_core=True)
                drawer.start()
        return Prestarted.start(config.workers - 1, script, trial_logger=trial_logger,
                                drawer=drawer)
    except BaseException:
        # A worker that could not start: stop the helpers started before it.
        Prestarted(trial_logger=trial_logger, drawer=drawer).close()
        raise


def wait_for_work() -> list[str] | None:
    """In a prestarted worker, once its imports are done: block until the command hands it
    work; its command-line arguments, with this process's environment replaced by the one
    handed over. ``None`` when the command closed the pipe without handing any."""
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return None
    work = json.loads(line)
    os.environ.clear()
    os.environ.update(work["env"])
    return [str(a) for a in work["argv"]]
