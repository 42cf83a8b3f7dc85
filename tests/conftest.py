"""Shared fixtures: the project root, the shared insurance copy, a throwaway tracking store."""

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

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_INSURANCE = ROOT.parent / "shared" / "data" / "insurance.csv"

# Tests use the shared copy of the insurance data instead of downloading it (CI sets the same).
if "SWEEP_INSURANCE_CSV" not in os.environ and SHARED_INSURANCE.exists():
    os.environ["SWEEP_INSURANCE_CSV"] = str(SHARED_INSURANCE)


@pytest.fixture(scope="session")
def insurance_csv() -> Path:
    path = Path(os.environ.get("SWEEP_INSURANCE_CSV", SHARED_INSURANCE))
    if not path.exists():
        pytest.fail(f"the insurance copy is missing: set SWEEP_INSURANCE_CSV (looked at {path})")
    return path


def free_port() -> int:
    """A free loopback port (closed again: the caller's server binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: this virtualenv's bin first on PATH, because
    `mlflow run --env-manager local` and `mlflow models serve` run the `python` found there."""
    env = dict(os.environ)
    # mlflow.set_tracking_uri/set_registry_uri in this process write MLFLOW_TRACKING_URI and
    # MLFLOW_REGISTRY_URI into os.environ: a child must get only the stores its test names.
    for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME",
                "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(key, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@pytest.fixture()
def tracking_uri(tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite tracking store, also set as this process's tracking URI."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri(previous)


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
    (uvicorn, gunicorn) cannot outlive the test. Its output goes to ``log_path``, quoted in the
    RuntimeError raised when it does not come up within ``timeout`` seconds.
    """
    import requests

    with open(log_path, "w") as log:
        server = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
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


@contextlib.contextmanager
def serve_model(
    model_uri: str, tracking_uri: str, log_path: Path, *, timeout: float = 180.0
) -> Iterator[str]:
    """Run the real `mlflow models serve` for ``model_uri``; yield its base URL once /ping is 200
    (see :func:`running_server`)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
            "-p", str(port), "--host", "127.0.0.1", "--env-manager", "local"]
    with running_server(
        argv, env=subprocess_env(MLFLOW_TRACKING_URI=tracking_uri), log_path=log_path,
        ready_url=f"{url}/ping", timeout=timeout,
    ):
        yield url


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
