"""Checks of the sweep's environment that must fail fast, before any run or trial is made.

MLflow's REST client retries a request whose connection fails (by default 7 times with
exponential backoff: minutes in all) and then raises with a long traceback. A mistyped or
stopped tracking server would keep a sweep silent for minutes before it fails.
:func:`check_tracking_server` asks the server once, with a short timeout, so the user gets one
line within seconds instead.
"""

from __future__ import annotations

import urllib.parse

import mlflow
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request

from sweeper.errors import SweepError

__all__ = ["check_tracking_server", "without_credentials"]

_HEALTH_ENDPOINT = "/health"
_WAY_OUT = "start it or set MLFLOW_TRACKING_URI to a reachable server"


def check_tracking_server(uri: str | None = None, *, timeout: float = 5.0) -> None:
    """Raise unless the MLflow tracking server at ``uri`` answers ``GET /health`` with 200.

    Only http(s) tracking URIs are checked; any other URI (``sqlite:///...``, a local path,
    ``databricks``) is a no-op. The server is asked once, without retries. The request goes
    through MLflow's own HTTP helper with MLflow's credentials, so proxies, TLS settings
    (``MLFLOW_TRACKING_INSECURE_TLS``, certificates) and auth headers are exactly those of the
    sweep's later requests. An MLflow server answers ``/health`` with ``200 OK`` and without
    authentication; any other status means the URI does not point at a working MLflow server
    (a 5xx, say, which MLflow's client would retry for minutes).

    Args:
        uri: The tracking URI; defaults to :func:`mlflow.get_tracking_uri` (which reads
            ``MLFLOW_TRACKING_URI``).
        timeout: Seconds to wait for the connection, and again for the answer.

    Raises:
        SweepError: The server cannot be reached, does not answer in time, or answers with a
            status other than 200.
    """
    uri = mlflow.get_tracking_uri() if uri is None else uri
    if urllib.parse.urlsplit(uri).scheme.lower() not in ("http", "https"):
        return
    shown = without_credentials(uri)
    try:
        response = http_request(
            get_default_host_creds(uri),
            _HEALTH_ENDPOINT,
            "GET",
            max_retries=0,
            backoff_factor=0,
            timeout=timeout,
            raise_on_status=False,
        )
    except Exception as error:  # noqa: BLE001 - MLflow wraps every failure in MlflowException
        raise SweepError(
            f"cannot reach the MLflow tracking server at {shown} ({_reason(error, timeout)}); "
            f"{_WAY_OUT}"
        ) from None
    if response.status_code != 200:
        raise SweepError(
            f"the MLflow tracking server at {shown} answered GET {_HEALTH_ENDPOINT} with HTTP "
            f"{response.status_code} {response.reason} instead of 200 OK; set MLFLOW_TRACKING_URI "
            "to the URL of a running MLflow server"
        )


def without_credentials(uri: str) -> str:
    """``uri`` without a ``user:password@`` part, for messages that may end up in logs."""
    parts = urllib.parse.urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _reason(error: BaseException, timeout: float) -> str:
    """A short reason such as ``Connection refused``, found in the chain of wrapped errors.

    MLflow wraps requests' error, which wraps urllib3's, which wraps the socket error; only the
    innermost OS-level reason is worth a user's attention (the outer messages repeat the URL
    and connection-pool internals).
    """
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, TimeoutError) or type(current).__name__.endswith("Timeout"):
            return f"no answer within {timeout:g}s"
        if isinstance(current, OSError) and current.strerror:
            return " ".join(current.strerror.split())
        links = (*current.args, getattr(current, "reason", None), current.__cause__,
                 current.__context__)
        pending.extend(link for link in links if isinstance(link, BaseException))
    return type(error).__name__
