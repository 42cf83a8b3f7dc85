"""Prestarted workers (sweeper.prestart): handed their arguments and environment once, stopped
when never handed any, and none where the command spawns nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from sweeper.config import SweepConfig
from sweeper.prestart import (
    LOGGER_NICENESS,
    SPAWNED_ENV,
    WAIT_FLAG,
    WORKERS_ENV,
    Prestarted,
    drawing_processes,
    for_command,
)


@pytest.fixture()
def script(tmp_path: Path) -> Path:
    """A stand-in for sweep.py: waits for work as a prestarted worker does, then writes what
    it was handed (its arguments, two variables, its flag) to out.json."""
    path = tmp_path / "fake_sweep.py"
    path.write_text(textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from sweeper.prestart import wait_for_work
        args = wait_for_work()
        out = {{"flag": sys.argv[1:], "args": args, "handed": os.environ.get("HANDED"),
                "dropped": os.environ.get("DROPPED")}}
        with open({str(tmp_path / "out.json")!r}, "w") as f:
            json.dump(out, f)
    """))
    return path


def test_a_worker_gets_its_arguments_and_exactly_the_environment_handed(
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DROPPED", "inherited at start")
    monkeypatch.setenv("MLFLOW_RUN_ID", "the-commands-run")
    prestarted = Prestarted.start(2, script)
    assert len(prestarted) == 2
    env = {"PATH": os.environ["PATH"], "HANDED": "yes"}
    worker = prestarted.hand(["--n_trials", "3"], env)
    assert worker is not None and len(prestarted) == 1
    assert worker.wait(timeout=60) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out == {"flag": [WAIT_FLAG], "args": ["--n_trials", "3"], "handed": "yes",
                   "dropped": None}
    (left,) = prestarted._waiting
    prestarted.close()  # the one never handed work is stopped
    assert left.returncode is not None and len(prestarted) == 0
    assert prestarted.hand(["--n_trials", "3"], env) is None  # none left: the caller starts one


def test_a_worker_that_died_is_skipped(script: Path) -> None:
    prestarted = Prestarted.start(2, script)
    first = prestarted._waiting[0]
    first.kill()
    first.wait()
    worker = prestarted.hand([], {"PATH": os.environ["PATH"]})
    assert worker is not None and worker is not first
    assert worker.wait(timeout=60) == 0
    prestarted.close()


def test_closing_the_pipe_without_work_ends_the_worker_quietly(
    script: Path, tmp_path: Path
) -> None:
    # What a real worker does once past its imports when the command ends before needing it.
    worker = subprocess.Popen([sys.executable, str(script), WAIT_FLAG], stdin=subprocess.PIPE)
    worker.communicate(b"", timeout=60)
    assert worker.returncode == 0
    assert json.loads((tmp_path / "out.json").read_text())["args"] is None


@pytest.mark.parametrize(
    ("n_workers", "spawned", "expected"), [(1, False, 0), (3, False, 2), (3, True, 0)]
)
def test_a_command_prestarts_the_workers_it_will_spawn(
    n_workers: int, spawned: bool, expected: int, script: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if spawned:
        monkeypatch.setenv(SPAWNED_ENV, "1234")
    else:
        monkeypatch.delenv(SPAWNED_ENV, raising=False)
    prestarted = for_command(SweepConfig(n_workers=n_workers), script)
    try:
        assert len(prestarted) == expected
    finally:
        prestarted.close()


def test_a_negative_count_is_refused(script: Path) -> None:
    with pytest.raises(ValueError) as raised:
        Prestarted.start(-1, script)
    assert str(raised.value) == "Prestarted.start: n must be >= 0, but got -1"


def test_sweep_py_without_work_exits_0_once_imported(tmp_path: Path) -> None:
    # The real entry point: imports the sweep, then ends when the pipe closes without work.
    worker = subprocess.run(
        [sys.executable, str(ROOT / "sweep.py"), WAIT_FLAG], input=b"", capture_output=True,
        timeout=120, cwd=tmp_path,
    )
    assert (worker.returncode, worker.stdout, worker.stderr) == (0, b"", b"")


#: Prints which of the modules only some processes need a fresh interpreter has imported.
_PRINT_LOADED = (
    'print(json.dumps({m: m in sys.modules for m in ("skops.io", "matplotlib")}))'
)


def _loaded_by(
    code: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Any:
    """The JSON that ``code``, run in a fresh interpreter with the project importable, printed
    last (such as a :data:`_PRINT_LOADED` line)."""
    script = f"import json, sys\nsys.path.insert(0, {str(ROOT)!r})\n{textwrap.dedent(code)}"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env, cwd=cwd, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_worker_imports_nothing_only_the_registering_process_or_the_drawing_needs() -> None:
    # What a prestarted worker imports before its first trial (sweep.py --wait-for-work):
    # skops (2 s of CPU on 2 cores) saves the champion, matplotlib draws in helpers.
    assert _loaded_by(f"import sweeper.runner\n{_PRINT_LOADED}") == {
        "skops.io": False, "matplotlib": False}
    assert _loaded_by(
        f"from sweeper.champion import import_model_saving\nimport_model_saving()\n"
        f"{_PRINT_LOADED}"
    ) == {"skops.io": True, "matplotlib": False}


@pytest.mark.parametrize("spawned", [False, True], ids=["the command", "a spawned worker"])
def test_sweep_py_imports_model_saving_before_the_sweep_only_where_it_registers(
    spawned: bool,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != SPAWNED_ENV}
    if spawned:
        env[SPAWNED_ENV] = "1"
    # sweep.py's main, with run_sweep replaced by a probe of what was imported when it began.
    assert _loaded_by(f"""
        import sweeper.runner
        sweeper.runner.run_sweep = lambda config, prestarted: {_PRINT_LOADED}
        import sweep
        sys.exit(sweep.main(["--n_workers", "1", "--n_trials", "1"]))
    """, env) == {"skops.io": not spawned, "matplotlib": False}


@pytest.mark.parametrize(("uri", "imported"), [
    (None, True),  # MLflow's default: sqlite:///mlflow.db
    ("sqlite:///elsewhere/mlflow.db", True),
    ("postgresql+psycopg://sweep@127.0.0.1:5432/mlflow", True),
    ("http://127.0.0.1:5000", False),
], ids=["default", "sqlite", "postgresql", "http"])
def test_a_prestarted_worker_imports_a_database_tracking_store_while_it_waits(
    uri: str | None, imported: bool, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if uri is not None:
        env["MLFLOW_TRACKING_URI"] = uri
    # sweep.py --wait-for-work, with the wait replaced by a probe of what it has imported.
    assert _loaded_by("""
        import sweep
        sweep.wait_for_work = lambda: print(json.dumps(
            "mlflow.store.tracking.sqlalchemy_store" in sys.modules))
        sys.exit(sweep._work_when_handed())
    """, env, cwd=tmp_path) is imported
    assert list(tmp_path.iterdir()) == []  # imported, not opened: no store was created


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    ("n_workers", "time_budget", "helpers", "expected"),
    [
        (1, 0.0, True, ("trial logger", "drawer")),
        (1, 30.0, True, ("trial logger",)),  # with a budget the families are drawn at the end
        (1, 0.0, False, ()),  # the benchmark's untracked row
        (2, 0.0, True, ()),  # every core runs a worker: the sweep starts its helpers itself
    ],
)
def test_a_command_with_a_core_to_spare_prestarts_its_helpers(
    n_workers: int, time_budget: float, helpers: bool, expected: tuple[str, ...],
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # 2 cores
    monkeypatch.delenv(SPAWNED_ENV, raising=False)
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    config = SweepConfig(n_workers=n_workers, time_budget=time_budget,
                         storage=str(tmp_path / "journal.log"))
    prestarted = for_command(config, script, helpers=helpers)
    logger, drawer = prestarted.take_trial_logger(), prestarted.take_drawer()
    try:
        assert len(prestarted) == n_workers - 1
        assert tuple(name for name, helper in (("trial logger", logger), ("drawer", drawer))
                     if helper is not None) == expected
        if logger is not None:
            # Niced from its start, as the sweep starts it; taken once.
            niceness = logger.submit(os.nice, 0).result(timeout=120)
            assert niceness == min(19, os.nice(0) + LOGGER_NICENESS)
            assert prestarted.take_trial_logger() is None
        if drawer is not None:
            assert drawer.spare_core and drawer.processes == drawing_processes()
            assert drawer.submit(os.nice, 0).result(timeout=120) == 19
            assert prestarted.take_drawer() is None
    finally:
        prestarted.close()
        if logger is not None:
            logger.shutdown(wait=True)
        if drawer is not None:
            drawer.close()


def test_helpers_never_taken_are_stopped_by_close(
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sweep failed before it took them (a bad input, say).
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv(SPAWNED_ENV, raising=False)
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    prestarted = for_command(SweepConfig(n_workers=1, storage=str(tmp_path / "journal.log")),
                             script)
    logger_pid = prestarted._trial_logger.submit(os.getpid).result(timeout=120)  # type: ignore[union-attr]
    drawer = prestarted._drawer
    assert drawer is not None
    drawing_pid = drawer.submit(os.getpid).result(timeout=120)
    directory = drawer.directory
    assert directory.is_dir()
    prestarted.close()
    assert prestarted.take_trial_logger() is None and prestarted.take_drawer() is None
    assert not _alive(logger_pid) and not _alive(drawing_pid)
    assert not directory.exists()


def test_helpers_are_stopped_when_a_worker_cannot_start(
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweeper import prestart
    from sweeper.drawing import Drawer

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})  # 2 workers, 4 cores
    monkeypatch.delenv(SPAWNED_ENV, raising=False)
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    started: list[Any] = []
    start_trial_logger = prestart.start_trial_logger
    monkeypatch.setattr(prestart, "start_trial_logger",
                        lambda: started.append(start_trial_logger()) or started[-1])
    drawer_start = Drawer.start

    def recorded_start(self: Drawer) -> Any:
        started.append(self)
        return drawer_start(self)

    monkeypatch.setattr(Drawer, "start", recorded_start)

    def no_fork(*args: Any, **kwargs: Any) -> Any:
        raise OSError("[Errno 11] Resource temporarily unavailable")

    monkeypatch.setattr(prestart, "start_worker", no_fork)
    with pytest.raises(OSError, match="Resource temporarily unavailable"):
        for_command(SweepConfig(n_workers=2, storage=str(tmp_path / "journal.log")), script)
    logger, drawer = started
    with pytest.raises(RuntimeError, match="after shutdown"):
        logger.submit(os.getpid)  # stopped
    assert drawer._pool is None and drawer._dir is None  # stopped, its directory removed
