"""CPU time of a process tree and the run-queue wait of a thread, read from Linux's ``/proc``.

The tracking rows of the benchmark report, beside their wall time, what ran on the cores while
the trials ran: the sweep's own process, the helpers it starts (trial logger, drawing) and,
over HTTP, the tracking server. On a 2-core machine the trials' core and the other share caches
and memory bandwidth, so work on the other core is what tracking can cost the trials at best.

Where ``/proc`` is missing (not Linux), the tree's CPU time is 0.0 and the wait ``None``.
"""

from __future__ import annotations

import os
import resource
import threading
from pathlib import Path

__all__ = ["process_cpu", "thread_wait", "tree_cpu"]

_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces), or
    ``None`` when the process is gone or unreadable."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def tree_cpu(root: int, *, include_root: bool = True) -> float:
    """CPU seconds (user and system) of ``root`` and its live descendants, each with the CPU of
    the children it has waited for.

    Every process of the tree is counted once at any moment: a live one by its own time, one
    that has ended by the ``cutime``/``cstime`` of the process that waited for it. Pass
    ``include_root=False`` for a tree whose root is the caller (then add the caller's own
    ``RUSAGE_CHILDREN``, as :func:`process_cpu` does).
    """
    if not _PROC.is_dir():
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        # After the name: state, ppid, ...; utime, stime, cutime, cstime are fields 14-17 of
        # the whole line, 11-14 here.
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        times[int(entry.name)] = sum(int(value) for value in fields[11:15]) / tick
    total = times.get(root, 0.0) if include_root else 0.0
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        total += times.get(pid, 0.0)
        pending.extend(children.get(pid, []))
    return total


def process_cpu() -> tuple[float, float]:
    """``(this process's CPU seconds, its descendants' CPU seconds)`` so far: all threads of
    this process; every process it started, ended (waited for) or live."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (own.ru_utime + own.ru_stime,
            ended.ru_utime + ended.ru_stime + tree_cpu(os.getpid(), include_root=False))


def thread_wait(native_id: int | None = None) -> float | None:
    """Seconds a thread of this process (default: the main thread) has spent runnable but
    waiting for a core (``run_delay`` of ``/proc/self/task/<id>/schedstat``)."""
    tid = native_id if native_id is not None else threading.main_thread().native_id
    try:
        fields = (_PROC / "self" / "task" / str(tid) / "schedstat").read_text().split()
    except OSError:
        return None
    return int(fields[1]) / 1e9
