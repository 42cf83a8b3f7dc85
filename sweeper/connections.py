"""Kept-alive connections to a tracking server over plain HTTP, or a fresh one per request
where the server answers those sooner.

``mlflow server`` runs uvicorn with four worker processes by default, and uvicorn's
multi-worker mode leaves Nagle's algorithm on for the connections it accepts (uvicorn issue
#3149: its pre-bound listener has ``proto`` 0, so asyncio never sets ``TCP_NODELAY``). It writes
a response as two segments, headers then body; on a connection that is kept alive the body
waits for the client's delayed ACK: 40 ms on Linux, on every request after a connection's first.
A trial run takes three requests: against a local ``mlflow server`` (uvicorn, 2 workers) it
took 216 ms on kept-alive connections and 45 ms on fresh ones, with about the same CPU in the
client (``bench/run.py`` measures both in every run; these are from a run without uvloop). A
fresh TCP connection costs one round trip more, far less than that even across a network.

Over ``https://`` a fresh connection costs a TLS handshake, and such servers usually sit behind
a proxy that does not have the problem: those connections are kept. Servers started with
``--workers 1`` do not have the problem either, nor do servers whose environment has uvloop
(uvicorn's event loop then sets ``TCP_NODELAY`` itself; this project's requirements install
it, and ``bench/run.py`` measured 109 ms per trial run kept alive against 117 ms with a
connection each), but the sweep cannot tell them apart without asking.

So it asks (:func:`settle_connections`): once per sweep, before its first run, it times
``GET /health`` on one kept-alive connection and on fresh ones, and opens a connection per
request only where the kept-alive answers come at least 20 ms later than the fresh ones (the
delayed ACK is 40 ms; a fresh connection is never slower by that much on the same server, so
noise does not flip the choice). A server with the problem answers a kept-alive request in
44 ms and a fresh one in 2-3 ms; with uvloop, 1.1 ms kept alive and 1.4-2.2 ms fresh
(loopback, this project's environment, 2026-11-30; ``tests/test_connections.py`` starts both
kinds of server and checks the choice). ``SWEEP_HTTP_CONNECTIONS=keep`` or ``close`` decides
without asking; the answer is written back to the environment, so that the helper processes
and the workers a sweep starts, which inherit it, follow it without asking again.
"""

from __future__ import annotations

import logging
import os
import statistics
import time

import requests
from mlflow.tracking.request_header.abstract_request_header_provider import (
    RequestHeaderProvider,
)

from sweeper.errors import SweepError
from sweeper.preflight import without_credentials

__all__ = [
    "CONNECTIONS_ENV", "CONNECTION_MODES", "close_after_each_request", "closes_connections",
    "probe_connections", "settle_connections",
]

_logger = logging.getLogger(__name__)

#: How the sweep's processes connect to a plain-HTTP tracking server.
CONNECTIONS_ENV = "SWEEP_HTTP_CONNECTIONS"
#: Its values: ask the server (the default), keep connections alive, a connection per request.
CONNECTION_MODES = ("auto", "keep", "close")
#: The server whose probe set ``SWEEP_HTTP_CONNECTIONS`` (unset when the user set it).
_PROBED_FOR_ENV = "SWEEP_HTTP_CONNECTIONS_FOR"
#: Requests timed each way: the median of three is not fooled by one slow answer.
_PROBES = 3
#: How much later kept-alive answers must come than fresh ones for a connection per request:
#: half the 40 ms that a delayed ACK holds an answer back.
_STALL_SECONDS = 0.020

_registered = False


class _CloseConnection(RequestHeaderProvider):
    """Asks the server to close the connection after its response (HTTP/1.1 ``Connection:
    close``); the client then opens a new one for the next request."""

    def in_context(self) -> bool:
        return True

    def request_headers(self) -> dict[str, str]:
        return {"Connection": "close"}


def close_after_each_request(tracking_uri: str) -> bool:
    """Make every MLflow request of this process use a connection of its own when
    ``tracking_uri`` is a plain-HTTP server; a no-op otherwise and on later calls.

    Returns whether this process's requests now close their connections.
    """
    global _registered
    if _registered or not _is_plain_http(tracking_uri):
        return _registered
    # MLflow's hook for plugins' request headers (a plugin registers through the
    # "mlflow.request_header_provider" entry point; the sweep is not an installed package).
    from mlflow.tracking.request_header.registry import _request_header_provider_registry

    _request_header_provider_registry.register(_CloseConnection)
    _registered = True
    return True


def _is_plain_http(uri: str) -> bool:
    return uri.lower().startswith("http://")


def settle_connections(tracking_uri: str, *, timeout: float = 5.0) -> bool:
    """Decide how this process connects to ``tracking_uri`` and apply it: a connection per
    request (:func:`close_after_each_request`) where ``SWEEP_HTTP_CONNECTIONS`` says
    ``close``, or where it says ``auto`` (or is unset) and :func:`probe_connections` answers
    ``close`` (kept-alive answers held back 20 ms or more, or the probe failed). A no-op for
    any URI but plain HTTP.

    A probe's answer is written back to ``SWEEP_HTTP_CONNECTIONS``, with the server it is for
    in ``SWEEP_HTTP_CONNECTIONS_FOR``: the processes this one starts inherit both and follow
    it without asking again, while a later sweep of this process against another server asks
    that one. A value the user set (without the second variable) holds for every server.

    Returns whether this process's requests now close their connections.

    Raises:
        SweepError: ``SWEEP_HTTP_CONNECTIONS`` is not one of ``auto``, ``keep``, ``close``.
    """
    if not _is_plain_http(tracking_uri):
        return _registered
    given = os.environ.get(CONNECTIONS_ENV, "auto")
    mode = given.strip().lower() or "auto"
    if mode not in CONNECTION_MODES:
        raise SweepError(
            f"{CONNECTIONS_ENV} must be one of {', '.join(CONNECTION_MODES)}, but got "
            f"{given!r}; unset it to have the sweep ask the tracking server"
        )
    probed_for = os.environ.get(_PROBED_FOR_ENV)
    if mode == "auto" or (probed_for is not None and probed_for != tracking_uri):
        mode = probe_connections(tracking_uri, timeout=timeout)
        os.environ[CONNECTIONS_ENV] = mode
        os.environ[_PROBED_FOR_ENV] = tracking_uri
    if mode == "close":
        return close_after_each_request(tracking_uri)
    return _registered


def probe_connections(tracking_uri: str, *, timeout: float = 5.0) -> str:
    """``"close"`` when ``GET /health`` on the plain-HTTP server ``tracking_uri`` answers at
    least 20 ms later on one kept-alive connection than on a fresh connection each (medians of
    three requests each way, the kept-alive connection opened first and not timed): the
    delayed-ACK stall. Else ``"keep"``, MLflow's default. Also ``"close"``, the choice that
    cannot cost 40 ms a request, when a probe fails (the sweep has checked already that the
    server answers)."""
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with requests.Session() as session:
            session.get(url, timeout=timeout).raise_for_status()
            kept = [_timed(session, url, {}, timeout) for _ in range(_PROBES)]
        fresh = []
        for _ in range(_PROBES):
            # A session each: a server may close a connection after its answer without
            # saying so, and a session would then send the next request on the dead one.
            with requests.Session() as session:
                fresh.append(_timed(session, url, {"Connection": "close"}, timeout))
    except requests.RequestException as error:
        _logger.info("could not time connections to %s (%s): a connection per request",
                     without_credentials(url), type(error).__name__)
        return "close"
    stalled = statistics.median(kept) - statistics.median(fresh) >= _STALL_SECONDS
    mode = "close" if stalled else "keep"
    _logger.debug("GET %s: kept alive %s s, fresh %s s: %s", without_credentials(url), kept,
                  fresh, mode)
    return mode


def _timed(
    session: requests.Session, url: str, headers: dict[str, str], timeout: float
) -> float:
    began = time.perf_counter()
    session.get(url, headers=headers, timeout=timeout).raise_for_status()
    return time.perf_counter() - began


def closes_connections() -> bool:
    """Whether :func:`close_after_each_request` applies to this process."""
    return _registered
