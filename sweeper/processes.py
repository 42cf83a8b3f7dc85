"""Child processes: a sweep's (spawned workers, drawing helpers) die with it; a server that
the tests and the benchmark start runs and stops as one process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["child_env", "die_with_parent", "free_port", "lowered_priority", "running_server"]

#: Variables a child must not inherit: `mlflow run` sets the first three for its own run, and
#: mlflow.set_tracking_uri/set_registry_uri write the last two into os.environ.
_NOT_INHERITED = (
    "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI",
)


def die_with_parent(parent: int | None = None, signum: int = signal.SIGTERM) -> None:
    """In a child process: get ``signum`` (SIGTERM unless told) when the parent dies, even by
    SIGKILL (Linux; a no-op elsewhere), so that killing a sweep's command stops every process
    it started.

    ``parent`` is the pid of the process that started this one: if it died before this call
    (a spawned helper takes a moment to get here), this process gets the signal now, where
    the kernel would never send it and the helper would outlive the sweep.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signum)
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signum)


def lowered_priority(niceness: int, parent: int, module: str, function: str, *args: Any) -> None:
    """Initializer of a helper process started by ``parent`` (a pid): die with it (see
    :func:`die_with_parent`), ignore Ctrl-C, add ``niceness`` to the helper's CPU niceness, then
    import ``module`` and call its ``function(*args)``.

    Passed to an executor instead of the helper's own initializer so that both hold from the
    start: a spawned helper imports its initializer's module before calling it, and a
    helper's imports (MLflow, matplotlib: 1.5-2 s of CPU each) are most of its work beside the
    trials, and long enough for the sweep to be killed in the middle (which left helpers
    running on their own). This module imports nothing heavy.
    """
    die_with_parent(parent)
    # Ctrl-C reaches the whole process group: the sweep decides what happens to its helpers
    # (a helper interrupted in its imports would print a traceback and break its executor).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if niceness:
        os.nice(niceness)
    import importlib

    getattr(importlib.import_module(module), function)(*args)


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child process of the tests or the benchmark: no MLflow run, tracking
    or registry of this process (a child gets only the stores it is given in ``extra``), and
    this virtualenv's bin first on PATH, because `mlflow run --env-manager local` and
    `mlflow models serve` run the `python` found there."""
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    """A free loopback port (closed again: the caller's server binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    log_path: Path,
    ready_url: str,
    timeout: float = 180.0,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server in its own process group; yield it once ``ready_url`` answers 200.

    It is stopped (SIGTERM, then SIGKILL) as a whole on exit, so worker processes it starts
    (uvicorn, gunicorn) cannot outlive it. Its output goes to ``log_path``, quoted in the
    RuntimeError raised when it does not come up within ``timeout`` seconds.
    """
    import requests

    with open(log_path, "w") as log:
        server = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if requests.get(ready_url, timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{' '.join(argv[:4])} did not come up:\n{log_path.read_text()}"
                    )
                time.sleep(0.3)
            yield server
        finally:
            _stop_group(server)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # Workers of the group that outlived its leader.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
