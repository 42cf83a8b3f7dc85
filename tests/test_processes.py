"""Tests for :mod:`sweeper.processes` helpers not covered elsewhere."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from conftest import process_alive
from sweeper.processes import lowered_priority


def test_a_helper_is_niced_before_it_imports_its_initializer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[object, ...]] = []
    monkeypatch.setattr(os, "nice", lambda increment: events.append(("nice", increment)))
    # Recorded, not made: ignoring Ctrl-C here would ignore it in this test process (and in
    # every later test that sends SIGINT).
    monkeypatch.setattr(signal, "signal",
                        lambda signum, handler: events.append(("signal", signum, handler)))
    (tmp_path / "heavy_helper_init.py").write_text(
        "import os\n"
        "os.nice(0)  # recorded when the module is imported\n"
        "def start(*args):\n"
        "    os.nice(100 + len(args))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "heavy_helper_init", raising=False)
    lowered_priority(10, os.getppid(), "heavy_helper_init", "start", "a", "b")
    # Ctrl-C ignored and niced, both before the module is imported.
    ignore_ctrl_c = ("signal", signal.SIGINT, signal.SIG_IGN)
    assert events == [ignore_ctrl_c, ("nice", 10), ("nice", 0), ("nice", 102)]
    events.clear()
    lowered_priority(0, os.getppid(), "heavy_helper_init", "start")  # no niceness: no call
    assert events == [ignore_ctrl_c, ("nice", 100)]


#: A sweep-like parent: starts a helper whose initializer's module takes 3 s to import (like
#: MLflow's at a low priority), prints the helper's pid, and waits to be killed.
_PARENT = """
import concurrent.futures, multiprocessing, os, sys, time
sys.path[:0] = [{root!r}, {modules!r}]
from sweeper.processes import lowered_priority
pool = concurrent.futures.ProcessPoolExecutor(
    1, mp_context=multiprocessing.get_context("spawn"), initializer=lowered_priority,
    initargs=(0, os.getpid(), "slow_helper_init", "start"))
pool.submit(os.getpid)
while not pool._processes:
    time.sleep(0.01)
print(next(iter(pool._processes)), flush=True)
time.sleep(60)
"""


def test_a_helper_dies_with_a_sweep_killed_while_it_was_starting(tmp_path: Path) -> None:
    import subprocess
    import time

    from conftest import ROOT

    (tmp_path / "slow_helper_init.py").write_text(
        "import time\ntime.sleep(3)\ndef start():\n    pass\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT.format(root=str(ROOT), modules=str(tmp_path))],
        stdout=subprocess.PIPE, text=True,
    )
    helper = int(parent.stdout.readline())  # type: ignore[union-attr]
    parent.send_signal(signal.SIGKILL)  # before the helper got to its initializer
    parent.wait()
    deadline = time.monotonic() + 30
    while process_alive(helper) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_alive(helper), "the helper outlived the sweep that started it"
