"""Tests for :mod:`sweeper.connections`: requests to a plain-HTTP tracking server do not reuse
connections (``mlflow server``'s defaults delay every response on a kept-alive one)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from mlflow import MlflowClient
from mlflow.tracking.request_header import registry as header_registry

from conftest import QuietHandler, http_server
from sweeper import connections


@pytest.fixture()
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """MLflow's header providers and this module's flag as a new process has them; restored
    afterwards (the registration is for the whole process, and an earlier test's sweep in
    this process may have made it)."""
    providers = [p for p in header_registry._request_header_provider_registry._registry
                 if not isinstance(p, connections._CloseConnection)]
    monkeypatch.setattr(header_registry._request_header_provider_registry, "_registry", providers)
    monkeypatch.setattr(connections, "_registered", False)
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
