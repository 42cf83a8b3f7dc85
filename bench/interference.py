"""How much work beside a trial slows the trial down on this machine.

    .venv/bin/python bench/interference.py [--family hist_gradient_boosting] [--trials 8]
                                           [--rounds 3]

The trial: one configuration of ``--family`` (drawn from its search space, seed 0)
cross-validated on insurance with the sweep's 5 folds, in one thread, as a worker runs it.
It is timed ``--trials`` times alone and beside each kind of work, done over and over in
another process at the lowest CPU priority (as the sweep's helpers run): a pure-Python loop
(CPU only), a loop streaming a 32 MB array (memory bandwidth), this project's drawing of a
family's plots (:func:`sweeper.report.family_plots`), and MLflow trial runs logged to a SQLite
store (made, filled and closed, as the sweep's logger does). The kinds alternate within each
round, so that the machine's drift hits them alike. Prints a markdown table: per kind, the
median trial time, its ratio to the trial alone in the same round (the median over rounds),
and how much of its own work the side process got done.

With a core free for it, work beside the trials costs them nothing on an ideal machine; what
it costs here (shared caches, memory bandwidth, the hypervisor) is what tracking, which adds
such work, can at best cost a sweep.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ("nothing", "python", "memory", "drawing", "logging")
LABELS = {
    "nothing": "nothing (the trial alone)",
    "python": "a pure-Python loop",
    "memory": "a loop streaming a 32 MB array",
    "drawing": "the sweep's drawing of a family's plots",
    "logging": "MLflow trial runs logged to SQLite",
}
UNITS = {"python": "M loops/s", "memory": "passes/s", "drawing": "families/s",
         "logging": "runs/s"}


# ----------------------------------------------------------------------------------------------
# the side process
# ----------------------------------------------------------------------------------------------


def side(kind: str, workdir: Path) -> None:
    """Do ``kind``'s work over and over until SIGTERM; then print the work done per second."""
    os.nice(19)
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    step = _side_step(kind, workdir)
    step()  # warm-up: imports, caches, the store's schema
    print("ready", flush=True)
    done, start = 0, time.perf_counter()
    while not stop:
        done += step()
    print(f"{done / (time.perf_counter() - start):.6g}", flush=True)


def _side_step(kind: str, workdir: Path) -> Any:
    """A function doing some of ``kind``'s work, returning how much (in ``UNITS[kind]``)."""
    if kind == "python":
        def loop() -> float:
            n = 0
            for _ in range(100_000):
                n += 1
            return n / 1e6

        return loop
    if kind == "memory":
        import numpy as np

        array = np.random.default_rng(0).random(4_000_000)  # 32 MB, four times the L3 here

        def stream() -> float:
            array.sum()
            return 1

        return stream
    if kind == "drawing":
        import optuna

        from objectives import FAMILIES
        from sweeper import report

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.simplefilter("ignore")
        report.import_drawing()
        family = FAMILIES["random_forest"]
        space = family.search_space()
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
        for i in range(50):
            trial = study.ask()
            space.suggest(trial)
            study.tell(trial, 4_500.0 + 10.0 * (i % 7))
        out = workdir / "plots"

        def draw() -> float:
            report.family_plots(study, out)
            return 1

        return draw
    if kind == "logging":
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param

        client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
        experiment = client.create_experiment("interference")
        count = 0

        def log() -> float:
            nonlocal count
            count += 1
            run = client.create_run(experiment, run_name=f"trial-{count}",
                                    tags={"sweep.role": "trial"})
            now = int(time.time() * 1000)
            client.log_batch(
                run.info.run_id,
                metrics=[Metric(name, 4_500.0, now, 0) for name in ("rmse", "mae", "r2")],
                params=[Param(f"p{i}", str(i)) for i in range(6)],
            )
            client.set_terminated(run.info.run_id)
            return 1

        return log
    raise ValueError(f"`kind` must be one of {KINDS}, but got {kind!r}")


# ----------------------------------------------------------------------------------------------
# the trial
# ----------------------------------------------------------------------------------------------


def trial_function(family_name: str) -> Any:
    """The timed trial: one configuration cross-validated on the sweep's folds."""
    import optuna
    import threadpoolctl

    from objectives import FAMILIES
    from sweeper.data import load_dataset, split_dataset
    from sweeper.objective import cross_validate

    threadpoolctl.threadpool_limits(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dataset = load_dataset("insurance", "charges")
    split = split_dataset(dataset, test_size=0.2, seed=42, cv_folds=5)
    family = FAMILIES[family_name]
    config = family.search_space().suggest(
        optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask())
    columns = {"numeric": dataset.numeric_columns, "categorical": dataset.categorical_columns}

    def run() -> float:
        start = time.perf_counter()
        cross_validate(lambda: family.build_pipeline(config, **columns, random_state=42),
                       split.X_train, split.y_train, split.folds)
        return time.perf_counter() - start

    return run


def timed_beside(kind: str, trial: Any, n: int, workdir: Path) -> tuple[float, float | None]:
    """The median of ``n`` trials beside ``kind``, and the side's work per second."""
    if kind == "nothing":
        return statistics.median(trial() for _ in range(n)), None
    process = subprocess.Popen(
        [sys.executable, __file__, "--side", kind, "--workdir", str(workdir)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        if process.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
            raise RuntimeError(f"the {kind!r} side process did not start")
        seconds = statistics.median(trial() for _ in range(n))
    finally:
        process.send_signal(signal.SIGTERM)
    rate, _ = process.communicate(timeout=120)
    return seconds, float(rate.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="hist_gradient_boosting")
    parser.add_argument("--trials", type=int, default=8, help="trials per kind and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--side", choices=KINDS[1:], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side, args.workdir)
        return

    trial = trial_function(args.family)
    trial()  # warm-up
    seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory(prefix="bench-interference-") as scratch:
        for round_ in range(args.rounds):
            for kind in KINDS:
                workdir = Path(scratch) / f"{kind}-{round_}"
                workdir.mkdir()
                median, rate = timed_beside(kind, trial, args.trials, workdir)
                seconds[kind].append(median)
                if rate is not None:
                    rates[kind].append(rate)
    alone = seconds["nothing"]
    print(f"One {args.family} trial (5-fold CV, one thread) timed {args.trials} times per "
          f"kind and round, {args.rounds} rounds, on {os.cpu_count()} cores; beside it, "
          "another process at the lowest priority doing:\n")
    print("| beside the trial | median trial (s) | ratio to alone (median of rounds) | "
          "rounds | side work done |")
    print("| --- | ---: | ---: | --- | ---: |")
    for kind in KINDS:
        ratios = [s / a for s, a in zip(seconds[kind], alone, strict=True)]
        done = (f"{statistics.median(rates[kind]):.3g} {UNITS[kind]}" if rates[kind] else "")
        print(f"| {LABELS[kind]} | {statistics.median(seconds[kind]):.3f} | "
              f"{statistics.median(ratios):.3f}× | {', '.join(f'{r:.3f}' for r in ratios)} | "
              f"{done} |")


if __name__ == "__main__":
    main()
