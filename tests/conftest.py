"""Shared fixtures: the project root, the shared insurance copy, a throwaway tracking store."""

from __future__ import annotations

import contextlib
import http.server
import os
import sys
import threading
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


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a zombie, dead but not yet reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


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


@pytest.fixture()
def in_process(tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
               ) -> Iterator[Path]:
    """For a sweep run in this process: ``tmp_path`` as the working directory (its default
    journal storage), the fresh tracking store, no ``MLFLOW_RUN_ID`` to resume; runs the sweep
    left on MLflow's fluent stack are ended afterwards."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    yield tmp_path
    while mlflow.active_run() is not None:
        mlflow.end_run()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler for the tests' stub servers: logs nothing, answers with :meth:`reply`."""

    def reply(self, status: int, body: bytes, content_type: str | None = None) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served from a thread on a free loopback port; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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
