"""Throughput of one sweep with 1, 2 and 3 worker processes on PostgreSQL + an MLflow server.

    .venv/bin/python bench/scale_out.py                  # 2 families x 10 trials, 1/2/3 workers
    .venv/bin/python bench/scale_out.py --smoke          # tiny sizes (CI)
    .venv/bin/python bench/scale_out.py --families xgboost,random_forest --n_trials 20

Starts a throwaway PostgreSQL cluster and ``mlflow server --serve-artifacts`` on loopback
(``tests/services.py``, the same code as the tests), then for each worker count runs a fresh
sweep: that many ``python sweep.py --n_workers 1`` processes started together on one sweep
name, timed from start until the last one exits (start-up, trials, champion refit and
registration included). Prints a markdown table. Each worker fits with one thread, so the
speed-up is bounded by the CPU cores (``nproc``). Needs the PostgreSQL server binaries
(``apt-get install -y postgresql``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import optuna  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from optuna.storages import RDBStorage  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from conftest import subprocess_env  # noqa: E402
from services import postgres_cluster, tracking_server  # noqa: E402

EXPERIMENT = "scale-out-bench"


def run_once(workers: int, *, families: str, n_trials: int, storage: str, tracking: str,
             workdir: Path) -> tuple[float, int]:
    """One sweep with ``workers`` processes; returns (wall seconds, done trials)."""
    name = f"bench-{workers}w-{int(time.time())}"
    argv = [
        sys.executable, str(ROOT / "sweep.py"), "--n_trials", str(n_trials),
        "--families", families, "--sweep_name", name, "--storage", storage,
        "--n_workers", "1", "--model_name", f"bench-{workers}w",
    ]
    env = subprocess_env(MLFLOW_TRACKING_URI=tracking, MLFLOW_EXPERIMENT_NAME=EXPERIMENT)
    logs = [workdir / f"{name}-{i}.log" for i in range(workers)]
    started = time.monotonic()
    processes = [
        subprocess.Popen(argv, cwd=workdir, env=env, stdout=open(log, "w"),
                         stderr=subprocess.STDOUT)
        for log in logs
    ]
    codes = [process.wait() for process in processes]
    seconds = time.monotonic() - started
    if any(codes):
        tail = "\n".join(log.read_text()[-2000:] for log in logs)
        raise SystemExit(f"workers exited with {codes}:\n{tail}")
    rdb = RDBStorage(storage)
    done = 0
    for family in families.split(","):
        study = optuna.load_study(storage=rdb, study_name=f"{name}.{family}")
        done += sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                    for t in study.get_trials(deepcopy=False))
    rdb.engine.dispose()
    return seconds, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="elastic_net,random_forest")
    parser.add_argument("--n_trials", type=int, default=10, help="trials per family")
    parser.add_argument("--workers", default="1,2,3", help="comma list of worker counts")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes: elastic_net x 2 trials, 1 and 2 workers")
    args = parser.parse_args()
    if args.smoke:
        args.families, args.n_trials, args.workers = "elastic_net", 2, "1,2"
    counts = [int(w) for w in args.workers.split(",")]

    rows = []
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp, \
            postgres_cluster(durable=True) as pg:
        workdir = Path(tmp)
        pg.create_database("optuna")
        pg.create_database("mlflow")
        storage = pg.url("optuna")
        RDBStorage(storage).engine.dispose()  # the schema, once (workers would race for it)
        with tracking_server(pg.url("mlflow"), workdir / "server") as server:
            MlflowClient(server.url).create_experiment(EXPERIMENT)
            for workers in counts:
                seconds, done = run_once(
                    workers, families=args.families, n_trials=args.n_trials,
                    storage=storage, tracking=server.url, workdir=workdir,
                )
                rows.append((workers, seconds, done))
                print(f"  {workers} worker(s): {done} trials in {seconds:.1f} s",
                      file=sys.stderr, flush=True)

    base = rows[0][2] / rows[0][1]
    print(f"\n{args.families} x {args.n_trials} trials, {os.cpu_count()} CPU cores, "
          "PostgreSQL 15 + mlflow server (2 workers) on loopback\n")
    print("| workers | wall s | trials | trials/min | speed-up |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for workers, seconds, done in rows:
        rate = done / seconds
        print(f"| {workers} | {seconds:.1f} | {done} | {rate * 60:.1f} | {rate / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
