"""Tests for :mod:`sweeper.connections`: requests to a plain-HTTP tracking server keep their
connections alive only where the server answers those sooner (``mlflow server`` without uvloop
delays every response on a kept-alive connection by 40 ms)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.tracking.request_header import registry as header_registry

from conftest import QuietHandler, http_server
from services import tracking_server
from sweeper import connections
from sweeper.errors import SweepError


@pytest.fixture()
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """MLflow's header providers and this module's flag as a new process has them; restored
    afterwards (the registration is for the whole process, and an earlier test's sweep in
    this process may have made it)."""
    providers = [p for p in header_registry._request_header_provider_registry._registry
                 if not isinstance(p, connections._CloseConnection)]
    monkeypatch.setattr(header_registry._request_header_provider_registry, "_registry", providers)
    monkeypatch.setattr(connections, "_registered", False)
    monkeypatch.delenv(connections.CONNECTIONS_ENV, raising=False)
    monkeypatch.delenv(connections._PROBED_FOR_ENV, raising=False)
    return providers


def _closers(providers: list[object]) -> int:
    return sum(isinstance(p, connections._CloseConnection) for p in providers)


@pytest.mark.parametrize(
    ("uri", "applies"),
    [
        ("http://127.0.0.1:5000", True),
        ("HTTP://tracking.internal:80/", True),
        ("https://tracking.example.com", False),
        ("sqlite:///mlflow.db", False),
        ("postgresql://u:p@db/mlflow", False),
        ("databricks", False),
        ("file:///tmp/mlruns", False),
    ],
)
def test_applies_to_plain_http_only(fresh_registry: list[object], uri: str, applies: bool) -> None:
    assert connections.close_after_each_request(uri) is applies
    assert connections.closes_connections() is applies
    headers = header_registry.resolve_request_headers()
    assert (headers.get("Connection") == "close") is applies
    assert _closers(fresh_registry) == int(applies)


def test_registers_once(fresh_registry: list[object]) -> None:
    assert connections.close_after_each_request("http://a:1")
    assert connections.close_after_each_request("http://b:2")
    # Once on, it stays on (the process's requests all go through the same hook).
    assert connections.close_after_each_request("sqlite:///x.db")
    assert _closers(fresh_registry) == 1
    assert header_registry.resolve_request_headers()["Connection"] == "close"


class _Experiments(QuietHandler):
    """Answers MLflow's get-experiment-by-name like a tracking server (HTTP/1.1, kept alive
    unless asked otherwise) and records each request's client port and Connection header."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[int, str | None]]

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.seen.append((self.client_address[1], self.headers.get("Connection")))
        body = json.dumps({"experiment": {"experiment_id": "7", "name": "e",
                                          "lifecycle_stage": "active"}}).encode()
        self.reply(200, body, "application/json")


@pytest.fixture()
def experiments_server() -> Iterator[tuple[str, list[tuple[int, str | None]]]]:
    seen: list[tuple[int, str | None]] = []
    with http_server(type("Handler", (_Experiments,), {"seen": seen})) as url:
        yield url, seen


@pytest.mark.parametrize("close", [False, True], ids=["mlflow-default", "closed"])
def test_each_request_gets_its_own_connection(
    fresh_registry: list[object],
    experiments_server: tuple[str, list[tuple[int, str | None]]],
    close: bool,
) -> None:
    url, seen = experiments_server
    if close:
        connections.close_after_each_request(url)
    client = MlflowClient(url)
    for _ in range(3):
        assert client.get_experiment_by_name("e").experiment_id == "7"
    ports = [port for port, _ in seen]
    assert len(ports) == 3
    if close:
        assert len(set(ports)) == 3
        assert {header for _, header in seen} == {"close"}
    else:
        # MLflow's own behaviour, which the closed case changes: one kept-alive connection.
        assert len(set(ports)) == 1
        assert {header for _, header in seen} != {"close"}


# ----------------------------------------------------------------------------------------------
# asking the server: kept alive or a connection per request
# ----------------------------------------------------------------------------------------------


class _Health(QuietHandler):
    """``GET /health`` as a tracking server answers it (HTTP/1.1, kept alive unless asked
    otherwise, ``TCP_NODELAY`` set as uvloop sets it), with ``delay(n)`` seconds of waiting
    before the ``n``-th answer on a connection (0 for its first); records the Connection
    header of every request."""

    protocol_version = "HTTP/1.1"
    seen: list[str | None]
    status = 200

    @staticmethod
    def delay(n: int) -> float:
        return 0.0

    def setup(self) -> None:
        super().setup()
        # http.server writes the headers and the body apart: without this, its own kept-alive
        # answers wait for the delayed ACK, the very problem the stubs below stand for.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        # One handler per connection: the count is the connection's.
        n = getattr(self, "answered", 0)
        self.answered = n + 1
        self.seen.append(self.headers.get("Connection"))
        time.sleep(self.delay(n))
        self.reply(self.status, b"OK", "text/plain")


#: Stub servers: (delay of the n-th answer on a connection, status) -> what the probe chooses.
PROBES = {
    # Each kept-alive answer waits for the client's delayed ACK (uvicorn with several workers
    # and without uvloop): a connection per request.
    "delayed-ack": ((lambda n: 0.04 if n else 0.0), 200, "close"),
    # A server without the problem: MLflow's kept-alive connections.
    "prompt": ((lambda n: 0.0), 200, "keep"),
    # Kept-alive answers a little later, as noise makes them: well under a delayed ACK, kept.
    "noisy": ((lambda n: 0.005 if n else 0.0), 200, "keep"),
    # A new connection costs more than a request on an open one (a distant server): kept.
    "slow-to-connect": ((lambda n: 0.0 if n else 0.02), 200, "keep"),
    # The probe fails: a connection per request, which cannot cost 40 ms a request.
    "unhealthy": ((lambda n: 0.0), 503, "close"),
}


@contextlib.contextmanager
def _health_server(case: str) -> Iterator[tuple[str, list[str | None]]]:
    delay, status, _ = PROBES[case]
    seen: list[str | None] = []
    handler = type("Handler", (_Health,), {"seen": seen, "status": status,
                                           "delay": staticmethod(delay)})
    with http_server(handler) as url:
        yield url, seen


@pytest.mark.parametrize("case", list(PROBES))
def test_the_probe_chooses_what_the_server_answers_sooner(case: str) -> None:
    with _health_server(case) as (url, seen):
        assert connections.probe_connections(url) == PROBES[case][2]
    if PROBES[case][1] == 200:
        # One untimed request opens the kept-alive connection, then three on it, three fresh.
        assert seen == ["keep-alive"] * 4 + ["close"] * 3


def test_a_failed_probe_names_the_server_without_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with _health_server("unhealthy") as (url, _):
        with_password = url.replace("http://", "http://alice:s3cret@")
        with caplog.at_level(logging.INFO, logger="sweeper.connections"):
            assert connections.probe_connections(with_password) == "close"
    assert caplog.messages == [
        f"could not time connections to {url}/health (HTTPError): a connection per request"
    ]


@pytest.mark.parametrize(
    ("given", "probes", "closes"),
    [
        (None, True, True),
        ("auto", True, True),
        ("", True, True),
        ("keep", False, False),
        (" KEEP ", False, False),
        ("close", False, True),
        ("Close", False, True),
    ],
)
def test_settle_follows_the_variable_or_asks(
    fresh_registry: list[object], monkeypatch: pytest.MonkeyPatch, given: str | None,
    probes: bool, closes: bool,
) -> None:
    if given is not None:
        monkeypatch.setenv(connections.CONNECTIONS_ENV, given)
    with _health_server("delayed-ack") as (url, seen):
        assert connections.settle_connections(url) is closes
    assert bool(seen) is probes
    assert connections.closes_connections() is closes
    assert _closers(fresh_registry) == int(closes)
    if probes:
        # Written back for the helpers and workers this process starts: they do not ask again.
        assert os.environ[connections.CONNECTIONS_ENV] == "close"
        assert os.environ[connections._PROBED_FOR_ENV] == url


def test_a_probed_answer_is_for_its_server_only(
    fresh_registry: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    with _health_server("prompt") as (first, seen_first):
        assert connections.settle_connections(first) is False
        assert connections.settle_connections(first) is False  # inherited: not asked again
    assert len(seen_first) == 7
    assert os.environ[connections.CONNECTIONS_ENV] == "keep"
    with _health_server("delayed-ack") as (second, seen_second):
        assert connections.settle_connections(second) is True
    assert len(seen_second) == 7
    assert os.environ[connections._PROBED_FOR_ENV] == second


@pytest.mark.parametrize(
    "uri", ["https://tracking.example.com", "sqlite:///mlflow.db", "databricks",
            "postgresql://u:p@db/mlflow"],
)
def test_settle_leaves_other_stores_alone(fresh_registry: list[object], uri: str) -> None:
    assert connections.settle_connections(uri) is False
    assert connections.CONNECTIONS_ENV not in os.environ
    assert _closers(fresh_registry) == 0


@pytest.mark.parametrize("given", ["sometimes", "keep-alive", "0"])
def test_a_bad_value_is_refused(
    fresh_registry: list[object], monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    monkeypatch.setenv(connections.CONNECTIONS_ENV, given)
    with pytest.raises(SweepError) as error:
        connections.settle_connections("http://127.0.0.1:9")
    assert str(error.value) == (
        f"SWEEP_HTTP_CONNECTIONS must be one of auto, keep, close, but got {given!r}; unset it "
        "to have the sweep ask the tracking server"
    )


@pytest.mark.parametrize(("loop", "expected"), [("asyncio", "close"), ("uvloop", "keep")])
def test_the_probe_tells_real_mlflow_servers_apart(
    tmp_path: Path, loop: str, expected: str
) -> None:
    """`mlflow server` with 2 uvicorn workers: on asyncio's loop its kept-alive answers wait
    for the delayed ACK (uvicorn issue #3149), on uvloop's (this project's environment) not."""
    with tracking_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path, workers=2,
                         extra_args=("--uvicorn-opts", f"--loop {loop}")) as server:
        assert connections.probe_connections(server.url) == expected


@pytest.fixture()
def restored_environ() -> Iterator[None]:
    """The process environment as it was, after a call that replaces it whole."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("mode", ["keep", "close"])
def test_the_trial_logger_follows_the_sweep_without_asking(
    fresh_registry: list[object], restored_environ: None, monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    from sweeper import tracking

    monkeypatch.setattr(tracking, "_process_tracker", None)  # the helper's, set by the call
    with _health_server("delayed-ack") as (url, seen):
        # What the sweep hands its trial-logging helper: its environment, probed for url.
        environ = {**os.environ, connections.CONNECTIONS_ENV: mode,
                   connections._PROBED_FOR_ENV: url}
        tracking._init_trial_logger(environ, url, "root", "sweep", "0", {})
    assert seen == []
    assert connections.closes_connections() is (mode == "close")
