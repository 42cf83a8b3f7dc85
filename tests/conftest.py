"""Shared fixtures: the project root, the shared insurance copy, a throwaway tracking store."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeper.processes import child_env, free_port, running_server

__all__ = ["ROOT", "free_port", "running_server", "serve_model", "subprocess_env"]

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


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child processes (:func:`sweeper.processes.child_env`)."""
    return child_env(**extra)


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
