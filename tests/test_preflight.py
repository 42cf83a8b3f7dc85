"""Tests for :func:`sweeper.preflight.check_tracking_server`: one request, seconds, one line."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from conftest import QuietHandler, free_port, http_server
from sweeper.errors import SweepError
from sweeper.preflight import check_tracking_server

WAY_OUT = "start it or set MLFLOW_TRACKING_URI to a reachable server"


class _Health(QuietHandler):
    """Answers like an MLflow server: GET /health -> 200 "OK"; anything else -> 404."""

    paths: list[str]

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.paths.append(self.path)
        self.reply(*((200, b"OK") if self.path == "/health" else (404, b"")))


@pytest.fixture()
def health_server() -> Iterator[tuple[str, list[str]]]:
    paths: list[str] = []
    with http_server(type("Handler", (_Health,), {"paths": paths})) as url:
        yield url, paths


def test_closed_port_fails_in_seconds_with_one_line() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(SweepError) as excinfo:
        check_tracking_server(uri)
    assert time.monotonic() - started < 10
    assert str(excinfo.value) == (
        f"cannot reach the MLflow tracking server at {uri} (Connection refused); {WAY_OUT}"
    )


def test_default_uri_is_mlflows(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr("mlflow.get_tracking_uri", lambda: uri)
    with pytest.raises(SweepError, match="^cannot reach the MLflow tracking server at "):
        check_tracking_server()


def test_credentials_are_not_shown() -> None:
    port = free_port()
    with pytest.raises(SweepError) as excinfo:
        check_tracking_server(f"http://alice:s3cret@127.0.0.1:{port}/")
    assert str(excinfo.value) == (
        f"cannot reach the MLflow tracking server at http://127.0.0.1:{port}/ (Connection "
        f"refused); {WAY_OUT}"
    )


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listening:  # accepts connections (backlog) but never answers
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        uri = f"http://127.0.0.1:{listening.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(SweepError) as excinfo:
            check_tracking_server(uri, timeout=0.5)
        assert time.monotonic() - started < 5
    assert str(excinfo.value) == (
        f"cannot reach the MLflow tracking server at {uri} (no answer within 0.5s); {WAY_OUT}"
    )


def test_a_server_answering_health_passes(health_server: tuple[str, list[str]]) -> None:
    uri, paths = health_server
    check_tracking_server(uri)
    check_tracking_server(uri + "/")
    assert paths == ["/health", "/health"]


def test_a_server_that_is_not_mlflow_is_refused(health_server: tuple[str, list[str]]) -> None:
    uri, _ = health_server
    with pytest.raises(SweepError) as excinfo:
        check_tracking_server(uri + "/not-mlflow")
    assert str(excinfo.value) == (
        f"the MLflow tracking server at {uri}/not-mlflow answered GET /health with HTTP 404 "
        "Not Found instead of 200 OK; set MLFLOW_TRACKING_URI to the URL of a running MLflow "
        "server"
    )


@pytest.mark.parametrize(
    "uri",
    ["sqlite:////nonexistent/dir/mlflow.db", "/nonexistent/mlruns", "file:///nonexistent",
     "databricks"],
)
def test_non_http_uris_are_not_checked(uri: str) -> None:
    check_tracking_server(uri)  # no request, no error
