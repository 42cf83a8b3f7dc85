"""The benchmark cannot rot: ``bench/run.py --smoke`` runs every row (tiny sizes) and renders
the table. It asserts nothing about speed."""

from __future__ import annotations

import contextlib
import importlib.util
import re
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, subprocess_env

ROWS = (
    "**this sweep**, defaults",
    "sweep, tracking on SQLite (1 worker)",
    "sweep, tracking over HTTP `mlflow server` (1 worker)",
    "same trials, no tracking (1 worker)",
    "plain Optuna TPE",
    "FLAML AutoML",
    "this sweep, time_budget=",
    "plain Optuna random search",
    "this sweep, pruning=none",
)


@pytest.mark.e2e
def test_bench_smoke_runs_every_row(tmp_path: Path) -> None:
    output = tmp_path / "results.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--output", str(output)],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = output.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for name in ROWS:
        matching = [line for line in rows if line.startswith(f"| {name}")]
        assert len(matching) == 1, f"row {name!r} missing from:\n{text}"
        assert "FAILED" not in matching[0], matching[0]
    assert "FAILED" not in text, text
    assert "Serving (" in text and "rows/s" in text, text
    # Single rows timed from both clients, and the handler's time without the server.
    assert re.search(r"requests from `http.client` .*: p50 [\d.]+ ms, p99 [\d.]+ ms.* from "
                     r"`requests.Session`, in alternating rounds: p50 [\d.]+ ms", text), text
    assert re.search(r"MLflow's request handler [\d.]+ ms for one row.* the served model's "
                     r"own predict [\d.]+ ms", text), text
    assert "| 1. tracking overhead on SQLite" in text and "n/a (smoke)" in text, text
    # The overhead split into the trials' own time and the rest, for both stores.
    for store in ("SQLite", "HTTP"):
        assert re.search(rf"- {store}: the trials' own time [\d.]+× \(median trial [\d.]+×\); "
                         r"outside the trials [+-][\d.]+ s\.", text), text
    # The CPU beside each tracking row's wall time: the server's only over HTTP.
    number = r"[\d.]+ s"
    for store, server in (("no tracking", ""), ("SQLite", ""),
                          ("HTTP", rf", the tracking server {number}")):
        assert re.search(rf"- {store}: wall {number}; CPU: the sweep's process {number}, its "
                         rf"helpers {number}{server}; the trials' thread waited {number}\.",
                         text), text
    # Trial runs logged to the bench's server both ways (kept-alive and a connection each).
    assert re.search(r"Trial-run logging to the same `mlflow server`.* kept-alive connections "
                     r"\(MLflow's default\) [\d.]+ ms per run .* a connection per request "
                     r"[\d.]+ ms .*: kept alive takes [\d.]+× the time\.", text), text


def test_plot_bench_times_every_family_and_plot(tmp_path: Path) -> None:
    from objectives import FAMILIES

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "plots.py"), "--trials", "3", "--repeats", "1"],
        cwd=tmp_path, env=subprocess_env(TMPDIR=str(scratch)), capture_output=True, text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert list(scratch.iterdir()) == []  # its drawings are removed
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == (
        "| family | searched | Optuna's parallel coordinate | optimization_history.png | "
        "param_importances.png | parallel_coordinate.png |"
    )
    assert [row.split(" | ")[0][2:] for row in rows[2:]] == list(FAMILIES)
    for row in rows[2:]:
        cells = row.strip("| ").split(" | ")
        assert all(float(seconds) > 0 for seconds in cells[2:]), row


def test_serving_bench_times_every_familys_largest_model(tmp_path: Path) -> None:
    from objectives import FAMILIES

    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "serving_families.py"), "--repeats", "3"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == ("| family | largest model | served model (ms) | fitted pipeline (ms) | "
                       "ratio |")
    assert [row.split(" | ")[0][2:] for row in rows[2:]] == list(FAMILIES)
    for row in rows[2:]:
        served, pipeline = (float(cell) for cell in row.strip("| ").split(" | ")[2:4])
        assert served > 0 and pipeline > 0, row
    # At the top of the search space: its upper bounds, not the library defaults.
    searched = FAMILIES["random_forest"].search_space().searched
    assert (f"| random_forest | n_estimators={searched['n_estimators'].high}, "
            f"max_depth={searched['max_depth'].high},") in done.stdout


def test_interference_bench_times_a_trial_beside_each_kind_of_work(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "interference.py"), "--family", "elastic_net",
         "--trials", "2", "--rounds", "1"],
        cwd=tmp_path, env=subprocess_env(TMPDIR=str(scratch)), capture_output=True, text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == ("| beside the trial | median trial (s) | ratio to alone (median of "
                       "rounds) | rounds | side work done |")
    cells = [row.strip("| ").split(" | ") for row in rows[2:]]
    assert [c[0] for c in cells] == [
        "nothing (the trial alone)", "a pure-Python loop", "a loop streaming a 32 MB array",
        "the sweep's drawing of a family's plots", "MLflow trial runs logged to SQLite"]
    assert cells[0][2:] == ["1.000×", "1.000"]  # (and no side work)
    for kind, unit in zip(cells[1:], ("M loops/s", "passes/s", "families/s", "runs/s"),
                          strict=True):
        assert float(kind[1]) > 0 and float(kind[2].rstrip("×")) > 0, kind
        rate, rate_unit = kind[4].split(" ", 1)
        assert float(rate) > 0 and rate_unit == unit, kind  # the side process did its work
    assert list(scratch.iterdir()) == []


def _bench_run(monkeypatch: pytest.MonkeyPatch) -> Any:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    run = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_run", run)  # its dataclasses look themselves up
    spec.loader.exec_module(run)
    return run


def test_the_tracking_rounds_rotate_their_order_and_pair_repeats_by_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _bench_run(monkeypatch)
    ran: list[str] = []

    @contextlib.contextmanager
    def fake_server(workdir: Path) -> Iterator[tuple[str, int]]:
        yield "http://127.0.0.1:1", 4242

    def fake_row(key: str, label: str, spec: dict[str, Any], workdir: Path,
                 tracking_uri: str | None = None) -> Any:
        ran.append(label)
        if spec["kind"] == "trial_logging":
            return run.Result(key, label, {"median_ms": 1.0})
        # Only the sweep over HTTP measures the server's CPU (its process tree's root).
        assert spec.get("server_pid") == (4242 if key == "tracking_http" else None), spec
        # The round in the tens, the position in the round in the units.
        round_ = int(label.rsplit("#", 1)[1])
        seconds = 10.0 * round_ + sum(1 for done in ran if done.endswith(f"#{round_}"))
        return run.Result(key, label, {"seconds": seconds, "trial_values": [1.0]})

    monkeypatch.setattr(run, "mlflow_server", fake_server)
    monkeypatch.setattr(run, "run_row", fake_row)
    merged, _ = run.tracking_rows({**run.FULL, "repeats": 4}, tmp_path)
    assert ran[:12] == [f"tracking {variant} #{round_}" for round_, order in enumerate(
        (("none", "sqlite", "http"), ("sqlite", "http", "none"), ("http", "none", "sqlite"),
         ("none", "sqlite", "http"))) for variant in order]
    # Each variant's repeats stay in round order, so repeat i of one pairs with repeat i of
    # another (the same round), whatever their positions in it.
    assert {r.key: r.get("all_seconds") for r in merged} == {
        "tracking_none": [1.0, 13.0, 22.0, 31.0],
        "tracking_sqlite": [2.0, 11.0, 23.0, 32.0],
        "tracking_http": [3.0, 12.0, 21.0, 33.0],
    }


def test_the_tracking_verdict_is_on_the_rounds_ratios(monkeypatch: pytest.MonkeyPatch) -> None:
    run = _bench_run(monkeypatch)

    def row(key: str, walls: list[float], loops: list[float]) -> Any:
        return run.Result(key, key, {
            "seconds": statistics.median(walls), "all_seconds": walls,
            "all_phases": [{"sweep.trials": loop} for loop in loops],
            "all_trials": [[1.0]] * len(walls),
        })

    # One slow round: the medians come from different rounds (1.042×), the rounds' ratios
    # (1.003×, 1.008×, 1.044×) say what tracking cost beside the same machine state.
    none = row("tracking_none", [77.5, 74.0, 74.6], [76.8, 73.4, 73.6])
    sqlite = row("tracking_sqlite", [77.7, 74.6, 77.9], [76.1, 73.0, 76.1])
    # Every round 3 % slower: missed either way.
    http = row("tracking_http", [79.8, 76.2, 76.8], [79.1, 75.6, 75.8])
    lines = [line for line in run.targets(
        {"tracking_none": none, "tracking_sqlite": sqlite, "tracking_http": http}, None, False)
        if line.startswith("| 1.")]
    assert lines == [
        "| 1. tracking overhead on SQLite ≤ 1.02× | 1.008× (the median of the rounds' ratios "
        "1.003×, 1.008×, 1.044×; the medians 77.7 s vs 74.6 s: 1.042×; identical trials: yes); "
        "the trials alone (without set-up, champion logging and plots): 0.995× | **met** |",
        "| 1. tracking overhead on HTTP ≤ 1.02× | 1.030× (the median of the rounds' ratios "
        "1.030×, 1.030×, 1.029×; the medians 76.8 s vs 74.6 s: 1.029×; identical trials: yes); "
        "the trials alone (without set-up, champion logging and plots): 1.030× | **missed** |",
    ]


@pytest.mark.parametrize(("repeat", "order"), [
    (0, ("a", "b", "c")), (1, ("b", "c", "a")), (2, ("c", "a", "b")), (3, ("a", "b", "c")),
])
def test_round_order_rotates_by_one_each_round(
    repeat: int, order: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _bench_run(monkeypatch).round_order(("a", "b", "c"), repeat) == order


def test_the_tracking_overhead_split_pairs_the_same_trials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = _bench_run(monkeypatch)
    Result, overhead_split = run.Result, run.overhead_split

    untracked = Result("tracking_none", "none", {
        "all_seconds": [10.0, 20.0],
        "all_trial_seconds": [{"a": [[0, 2.0], [1, 4.0]], "b": [[0, 2.0]]},
                              {"a": [[0, 4.0], [1, 8.0]], "b": [[0, 4.0]]}],
    })
    tracked = Result("tracking_sqlite", "sqlite", {
        # Repeat 1: every trial 10 % slower, 1 s more outside the trials. Repeat 2: one trial
        # twice as long, the others as before; a trial the untracked run does not have (it
        # failed to finish there, say) counts outside the pairing, as time in a trial.
        "all_seconds": [10.0 + 0.8 + 1.0, 20.0 + 8.0 + 3.0],
        "all_trial_seconds": [{"a": [[0, 2.2], [1, 4.4]], "b": [[0, 2.2]]},
                              {"a": [[0, 4.0], [1, 16.0], [2, 3.0]], "b": [[0, 4.0]]}],
    })
    split = overhead_split(tracked, untracked)
    assert [tuple(round(x, 6) for x in row) for row in split] == [
        (1.1, 1.1, 1.0),
        (24.0 / 16.0, 1.0, 0.0),
    ]


def test_the_cpu_text_gives_each_tracking_rows_medians(monkeypatch: pytest.MonkeyPatch) -> None:
    run = _bench_run(monkeypatch)

    def row(key: str, seconds: float, cpus: list[dict[str, Any] | None]) -> Any:
        return run.Result(key, key, {"seconds": seconds, "all_cpu": cpus})

    by = {
        # A repeat without figures (an older row) is left out of the medians.
        "tracking_none": row("tracking_none", 19.9, [
            {"sweep": 19.8, "helpers": 0.0, "server": None, "waited": 0.004},
            {"sweep": 20.2, "helpers": 0.0, "server": None, "waited": 0.002}, None]),
        "tracking_sqlite": row("tracking_sqlite", 20.7, [
            {"sweep": 20.4, "helpers": 9.5, "server": None, "waited": 0.21},
            {"sweep": 20.1, "helpers": 10.3, "server": None, "waited": 0.18},
            {"sweep": 20.3, "helpers": 9.9, "server": None, "waited": 0.25}]),
        # Figures missing (as without /proc) are n/a, not zero.
        "tracking_http": row("tracking_http", 21.3, [
            {"sweep": 20.6, "helpers": None, "server": 2.9, "waited": None}]),
    }
    assert run.cpu_medians(by["tracking_sqlite"]) == {
        "sweep": 20.3, "helpers": 9.9, "server": None, "waited": 0.21}
    text = run.cpu_text(by)
    assert text[0].startswith("CPU time during the same sweeps (medians of each row's repeats")
    assert text[1:] == [
        "",
        "- no tracking: wall 19.9 s; CPU: the sweep's process 20.0 s, its helpers 0.0 s; "
        "the trials' thread waited 0.00 s.",
        "- SQLite: wall 20.7 s; CPU: the sweep's process 20.3 s, its helpers 9.9 s; "
        "the trials' thread waited 0.21 s.",
        "- HTTP: wall 21.3 s; CPU: the sweep's process 20.6 s, its helpers n/a, "
        "the tracking server 2.9 s; the trials' thread waited n/a.",
        "",
    ]
    # Rows that failed, or ran before the bench recorded CPU, are left out; none at all: no text.
    assert run.cpu_text({"tracking_none": run.Result("tracking_none", "x", error="boom"),
                         "tracking_sqlite": row("tracking_sqlite", 1.0, [])}) == []


#: Measured in a fresh process, so that no other process of the test session (servers that
#: fixtures started) is among the descendants whose CPU it reads.
_CPU_SCENARIO = """
import json, os, subprocess, sys
sys.path.insert(0, sys.argv[1])
from bench._cpu import process_cpu, thread_wait, tree_cpu

# A child that burns 0.4 s of CPU in a grandchild it waits for, then 0.4 s itself, then
# sleeps until it is killed.
burn = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.4: pass\\n"
code = ("import subprocess, sys, time\\n"
        f"subprocess.run([sys.executable, '-c', {burn!r}], check=True)\\n"
        f"{burn}print('burnt', flush=True)\\ntime.sleep(60)\\n")
_, before = process_cpu()
child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
try:
    burnt = child.stdout.readline() == "burnt\\n"
    alive = {"tree": tree_cpu(child.pid), "children": tree_cpu(child.pid, include_root=False),
             "ours": process_cpu()[1] - before}
finally:
    child.kill()
    child.wait()
print(json.dumps({"burnt": burnt, "alive": alive, "ended": process_cpu()[1] - before,
                  "gone": tree_cpu(child.pid), "waited": thread_wait(),
                  "tick": os.sysconf("SC_CLK_TCK")}))
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux's /proc")
def test_cpu_of_a_process_tree_counts_each_process_once_alive_or_waited_for() -> None:
    import json

    done = subprocess.run([sys.executable, "-c", _CPU_SCENARIO, str(ROOT)], capture_output=True,
                          text=True, timeout=120, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout)
    assert measured["burnt"] is True
    # The child and its grandchild burnt at least 0.8 s between them (each loop starts after
    # its interpreter's start-up). /proc counts in clock ticks, rounded down per field (user,
    # system, and the same for waited-for children): a live tree reads up to a few ticks low.
    low, high = 0.8 - 5 / measured["tick"], 0.8 + 1.0
    alive = measured["alive"]
    assert low <= alive["tree"] < high, measured  # its own time and its grandchild's
    assert alive["children"] == 0.0, measured  # it has no live children
    assert low <= alive["ours"] < high, measured  # alive: among this process's descendants
    assert low <= measured["ended"] < high, measured  # waited for: in RUSAGE_CHILDREN, once
    assert abs(measured["ended"] - alive["ours"]) < 0.1, measured
    assert measured["gone"] == 0.0, measured
    assert measured["waited"] is not None and measured["waited"] >= 0.0, measured


def test_the_time_budget_row_is_the_repeat_with_the_median_best_cv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _bench_run(monkeypatch)
    repeats = iter([(4_530.0, 41.0), (4_500.0, 39.0), (4_515.0, 40.0)])
    labels: list[str] = []

    def fake_row(key: str, label: str, spec: dict[str, Any], workdir: Path,
                 tracking_uri: str | None = None) -> Any:
        labels.append(label)
        assert spec["config"]["time_budget"] == 30.0
        cv, seconds = next(repeats)
        return run.Result(key, label, {"cv_rmse": cv, "seconds": seconds, "test_rmse": cv - 100})

    monkeypatch.setattr(run, "run_row", fake_row)
    budget = run.budget_row({**run.FULL, "repeats": 3}, tmp_path)
    assert labels == [f"this sweep, time_budget=30, SQLite #{i}" for i in range(3)]
    # The middle repeat, whole (its time and test RMSE with its CV), and every repeat's CV.
    assert (budget.key, budget.label) == ("budget", "this sweep, time_budget=30, SQLite")
    assert {k: budget.get(k) for k in ("cv_rmse", "seconds", "test_rmse", "budget")} == {
        "cv_rmse": 4_515.0, "seconds": 40.0, "test_rmse": 4_415.0, "budget": 30.0}
    assert budget.get("all_cv_rmse") == [4_530.0, 4_500.0, 4_515.0]
    flaml = run.Result("flaml", "FLAML", {"cv_rmse": 4_520.7})
    line = next(row for row in run.targets({"budget": budget, "flaml": flaml}, None, False)
                if row.startswith("| 3."))
    assert line == (
        "| 3. time_budget=30.0 CV ≤ FLAML's | 4,515.0 vs 4,520.7 (-0.13%; the median of 3; "
        "repeats 4,530.0, 4,500.0, 4,515.0, 2 of 3 ≤ FLAML's) | **met** |")
    assert "median best CV of 4,530.0, 4,500.0, 4,515.0" in run.table([budget])


def test_the_default_sweep_rows_interleave_their_repeats_and_take_the_median_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _bench_run(monkeypatch)
    # (seconds, best CV) of each repeat, in the order they run: rounds rotate.
    repeats = {"sweep": iter([(37.7, 4_494.1), (36.0, 4_490.0), (38.1, 4_497.0)]),
               "no_pruning": iter([(40.0, 4_485.7), (41.5, 4_489.0), (39.0, 4_480.0)])}
    order: list[str] = []

    def fake_row(key: str, label: str, spec: dict[str, Any], workdir: Path,
                 tracking_uri: str | None = None) -> Any:
        order.append(label.rsplit(" ", 1)[1] + " " + key)
        assert spec["config"].get("pruning", "margin") == ("none" if key == "no_pruning"
                                                           else "margin")
        assert tracking_uri == f"sqlite:///{workdir / 'mlflow.db'}"
        seconds, cv = next(repeats[key])
        return run.Result(key, label, {"seconds": seconds, "cv_rmse": cv,
                                       "model_uri": f"models:/m-{key}-{seconds}"})

    monkeypatch.setattr(run, "run_row", fake_row)
    sweep, no_pruning = run.default_rows({**run.FULL, "repeats": 3}, tmp_path,
                                         ["sweep", "no_pruning"])
    assert order == ["#0 sweep", "#0 no_pruning", "#1 no_pruning", "#1 sweep", "#2 sweep",
                     "#2 no_pruning"]
    # Each row is its median-time repeat, whole: its champion is the one served.
    assert (sweep.key, sweep.get("seconds"), sweep.get("cv_rmse")) == ("sweep", 37.7, 4_494.1)
    assert sweep.get("model_uri") == "models:/m-sweep-37.7"
    assert sweep.get("tracking_uri") == f"sqlite:///{tmp_path / 'sweep-0' / 'mlflow.db'}"
    assert sweep.get("all_seconds") == [37.7, 36.0, 38.1]
    assert (no_pruning.get("seconds"), no_pruning.get("all_cv_rmse_each")) == (
        40.0, [4_485.7, 4_489.0, 4_480.0])
    assert "median of 37.7, 36.0, 38.1; best CV of each 4,494.1, 4,490.0, 4,497.0" in \
        run.table([sweep])
    baseline = run.Result("baseline", "plain", {"seconds": 70.4, "cv_rmse": 4_487.4})
    lines = run.targets({"sweep": sweep, "no_pruning": no_pruning, "baseline": baseline},
                        None, False)
    two = next(line for line in lines if line.startswith("| 2."))
    assert two == (
        "| 2. default sweep ≤ 0.5× plain Optuna, CV within +0.5 % | 0.536× (37.7 s, the median "
        "of 37.7, 36.0, 38.1 vs 70.4 s); CV +0.15% (the median of the repeats) | **missed** |")
    # Pruning's saving is paired by round: 1 - 37.7/40.0, 1 - 36.0/41.5, 1 - 38.1/39.0.
    four = next(line for line in lines if line.startswith("| 4."))
    assert four == (
        "| 4. pruning saves time, champion no worse (within 0.5 %) | saves 5.7% (the median of "
        "the rounds' 5.7%, 13.3%, 2.3%; the medians 37.7 s vs 40.0 s: 5.7%); CV +0.19% (the "
        "medians of the repeats) | **met** |")


def test_one_default_sweep_row_runs_alone_and_a_failed_repeat_fails_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _bench_run(monkeypatch)
    outcomes = iter([None, "sweep exited 1"])
    keys: list[str] = []

    def fake_row(key: str, label: str, spec: dict[str, Any], workdir: Path,
                 tracking_uri: str | None = None) -> Any:
        keys.append(key)
        error = next(outcomes)
        return run.Result(key, label, {} if error else {"seconds": 30.0, "cv_rmse": 4_500.0},
                          error=error)

    monkeypatch.setattr(run, "run_row", fake_row)
    (row,) = run.default_rows({**run.FULL, "repeats": 2}, tmp_path, ["no_pruning"])
    assert keys == ["no_pruning", "no_pruning"]
    assert (row.key, row.error) == ("no_pruning", "sweep exited 1")


def test_a_failed_time_budget_repeat_fails_the_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _bench_run(monkeypatch)
    outcomes = iter([None, "sweep exited 2"])

    def fake_row(key: str, label: str, spec: dict[str, Any], workdir: Path,
                 tracking_uri: str | None = None) -> Any:
        error = next(outcomes)
        return run.Result(key, label, {} if error else {"cv_rmse": 4_500.0}, error=error)

    monkeypatch.setattr(run, "run_row", fake_row)
    budget = run.budget_row({**run.FULL, "repeats": 2}, tmp_path)
    assert (budget.key, budget.error) == ("budget", "sweep exited 2")
    assert "FAILED: sweep exited 2" in run.table([budget])


def test_an_output_that_would_be_overwritten_by_the_json_is_refused(tmp_path: Path) -> None:
    # The markdown went to results.json, then the raw numbers overwrote it.
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--output",
         str(tmp_path / "results.json")],
        capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "run.py: error: --output names the markdown file (the JSON is written beside it, as "
        f".json), but got {str(tmp_path / 'results.json')!r}")
    assert list(tmp_path.iterdir()) == []


def _journal_of(path: Path, trials: list[tuple[list[float], float, float]]) -> Path:
    """An Optuna journal of one complete study ``sweep.fam``: each trial is ``(fold RMSEs,
    start, end)`` in seconds, its value the folds' mean."""
    import datetime

    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from optuna.trial import FrozenTrial, TrialState

    study = optuna.create_study(study_name="sweep.fam",
                                storage=JournalStorage(JournalFileBackend(str(path))))
    t0 = datetime.datetime(2026, 1, 1)
    for number, (folds, start, end) in enumerate(trials):
        study.add_trial(FrozenTrial(
            number=number, trial_id=number, state=TrialState.COMPLETE,
            value=sum(folds) / len(folds), values=None,
            datetime_start=t0 + datetime.timedelta(seconds=start),
            datetime_complete=t0 + datetime.timedelta(seconds=end),
            params={}, distributions={}, user_attrs={"fold_rmse": folds}, system_attrs={},
            intermediate_values=dict(enumerate(folds)),
        ))
    return path


def test_the_pruning_replay_counts_each_pruners_folds_and_the_best_it_stops(
    tmp_path: Path
) -> None:
    (tmp_path / "syn").mkdir()
    journal = _journal_of(tmp_path / "syn" / "optuna-sweeps.journal", [
        ([100.0] * 5, 0, 5),                      # the first best
        ([200.0] * 5, 5, 10),                     # hopeless: margin stops it after 1 fold,
                                                  # Wilcoxon after 3
        ([104.0, 90.0, 90.0, 90.0, 90.0], 10, 15),  # the family's best (92.8), 4 % worse
                                                    # on its first fold: margin stops it
        ([93.0, 93.3, 92.6, 92.9, 92.7], 15, 20),   # 92.9, within 0.5 % of the best
    ])
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pruning_replay.py"), "--journals", str(journal),
         "--margins", "2:0.5"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows == [
        "| pruner | share of the unpruned trials' time | families whose best was stopped |",
        "| --- | ---: | --- |",
        "| wilcoxon | 0.900 (18.0 of 20.0 s) | none |",
        "| margin {1: 0.03, 2: 0.025} (the default) | 0.600 (12.0 of 20.0 s) | syn/fam (+0.11%) |",
        "| margin {2: 0.5} | 0.850 (17.0 of 20.0 s) | none |",  # the hopeless one: 2 folds
        "| family study | trials within 0.5 % of the best | worst after 1 fold | after 2 folds |",
        "| --- | ---: | ---: | ---: |",
        "| syn/fam | 1 | -10.58% | -3.97% |",
    ]


@pytest.mark.e2e
def test_the_pruning_replay_runs_its_unpruned_sweeps(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pruning_replay.py"), "--seeds", "3",
         "--n_trials", "3", "--families", "elastic_net,xgboost"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Replay of 6 trials of 2 family studies (unpruned sweeps of 3 trials x " \
           "elastic_net,xgboost families, seeds 3)." in done.stdout
    studies = [line.split(" | ")[0] for line in done.stdout.splitlines()
               if line.startswith("| seed-3/")]
    assert studies == ["| seed-3/elastic_net", "| seed-3/xgboost"]
