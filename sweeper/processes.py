"""Child processes of a sweep (spawned workers, drawing helpers) die with the sweep."""

from __future__ import annotations

import signal
import sys

__all__ = ["die_with_parent"]


def die_with_parent() -> None:
    """In a child process: get SIGTERM when the parent dies, even by SIGKILL (Linux; a no-op
    elsewhere), so that killing a sweep's command stops every process it started."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
