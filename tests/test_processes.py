"""Tests for :mod:`sweeper.processes` helpers not covered elsewhere."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sweeper.processes import lowered_priority


def test_a_helper_is_niced_before_it_imports_its_initializer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, object]] = []
    monkeypatch.setattr(os, "nice", lambda increment: events.append(("nice", increment)))
    (tmp_path / "heavy_helper_init.py").write_text(
        "import os\n"
        "os.nice(0)  # recorded when the module is imported\n"
        "def start(*args):\n"
        "    os.nice(100 + len(args))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "heavy_helper_init", raising=False)
    lowered_priority(10, "heavy_helper_init", "start", "a", "b")
    assert events == [("nice", 10), ("nice", 0), ("nice", 102)]
    events.clear()
    lowered_priority(0, "heavy_helper_init", "start")  # no niceness: not even a call
    assert events == [("nice", 100)]
