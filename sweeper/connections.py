"""A fresh connection per request to a tracking server over plain HTTP.

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
connection each), but the sweep cannot tell them apart.
"""

from __future__ import annotations

from mlflow.tracking.request_header.abstract_request_header_provider import (
    RequestHeaderProvider,
)

__all__ = ["close_after_each_request", "closes_connections"]

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
    if _registered or not tracking_uri.lower().startswith("http://"):
        return _registered
    # MLflow's hook for plugins' request headers (a plugin registers through the
    # "mlflow.request_header_provider" entry point; the sweep is not an installed package).
    from mlflow.tracking.request_header.registry import _request_header_provider_registry

    _request_header_provider_registry.register(_CloseConnection)
    _registered = True
    return True


def closes_connections() -> bool:
    """Whether :func:`close_after_each_request` applies to this process."""
    return _registered
