"""Worker processes started before the sweep knows what they will work on.

A worker the sweep spawns spends its first 2-3 s of CPU starting Python and importing MLflow,
Optuna and the estimators before it runs a trial, while the command's own process is already
running trials: on 2 cores the sweep runs on one core for those seconds. Started at the top of
the command, before the command's own imports, a worker imports on the core that is idle then,
and waits (:func:`wait_for_work`) until the sweep hands it its arguments and environment
(:meth:`Prestarted.hand`), which the sweep knows only once its MLflow run and sweep name exist.

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

from sweeper.processes import die_with_parent

if TYPE_CHECKING:
    from sweeper.config import SweepConfig

__all__ = [
    "SPAWNED_ENV", "SWEEP_SCRIPT", "WAIT_FLAG", "Prestarted", "for_command", "start_worker",
    "wait_for_work",
]

#: The command-line flag of a prestarted worker (``sweep.py --wait-for-work``).
WAIT_FLAG = "--wait-for-work"
#: Set in the workers a command spawns: they are not alone on the machine, and spawn nothing.
SPAWNED_ENV = "SWEEP_SPAWNED_BY"
#: The command-line entry point that every worker runs, prestarted or spawned.
SWEEP_SCRIPT = Path(__file__).resolve().parent.parent / "sweep.py"


class Prestarted:
    """Worker processes waiting for work, started by :meth:`start`; each is handed work once
    (:meth:`hand`), and :meth:`close` stops those that never were."""

    def __init__(self, processes: Sequence[subprocess.Popen[bytes]] = ()) -> None:
        self._waiting = list(processes)

    @classmethod
    def start(cls, n: int, script: Path = SWEEP_SCRIPT) -> Prestarted:
        """Start ``n`` processes of ``script`` (``sweep.py``) with :data:`WAIT_FLAG`."""
        if n < 0:
            raise ValueError(f"Prestarted.start: n must be >= 0, but got {n}")
        # Not this command's MLflow run: a worker makes its own (the final environment,
        # handed over with the work, replaces this one anyway).
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
        return cls([
            start_worker([WAIT_FLAG], env, script=script, stdin=subprocess.PIPE)
            for _ in range(n)
        ])

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
        """Stop the workers never handed work (the sweep failed first, or needed fewer)."""
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


def for_command(config: SweepConfig, script: Path = SWEEP_SCRIPT) -> Prestarted:
    """The workers a command will spawn (``workers - 1``), started now; none in a worker
    that was itself spawned, which spawns nothing."""
    if SPAWNED_ENV in os.environ or config.workers <= 1:
        return Prestarted()
    return Prestarted.start(config.workers - 1, script)


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
