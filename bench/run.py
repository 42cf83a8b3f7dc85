"""Benchmark: this sweep side by side with plain Optuna and FLAML, on this machine, in one run.

    .venv/bin/python bench/run.py            # full run (13-45 min on 2 cores), writes bench/results.md
    .venv/bin/python bench/run.py --smoke    # every row, tiny sizes (~2 min); asserts no speed
    .venv/bin/python bench/run.py --only baseline,sweep,serving

Every row runs in its own process and working directory (``bench/_row.py``): a fresh Optuna
journal, a fresh SQLite tracking store (created before the clock starts: a brand-new store's
schema migration is a one-off cost, reported separately), or the local ``mlflow server`` this
script starts on a free loopback port. "wall time" is measured around the work in that process
(interpreter start-up and imports excluded, the same for every row); what is left of the start-up
of the sweep's extra worker processes when the clock starts (they are started before the row's
imports, as ``sweep.py`` starts them before its own: ``sweeper/prestart.py``), the drain and the
champion's refit, logging and registration are included. The tracking rows also record the CPU
time of the sweep's process, its helpers and the tracking server around the same work, and how
long the thread running the trials waited for a core (``bench/_cpu.py``, Linux's ``/proc``).
Needs the bench requirements (``pip install -r requirements-bench.txt``); without FLAML its row
says "skipped".
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sweeper import processes  # noqa: E402 - needs ROOT on the path
from sweeper.processes import free_port, running_server  # noqa: E402

ROW = Path(__file__).resolve().parent / "_row.py"
RESULTS = Path(__file__).resolve().parent / "results.md"
SHARED_INSURANCE = ROOT.parent / "shared" / "data" / "insurance.csv"
MARKER = "BENCH-RESULT "
BIN = Path(sys.executable).parent

#: The families of the issue's plain-Optuna baseline (the sweep itself runs all five).
BASELINE_FAMILIES = "elastic_net,random_forest,hist_gradient_boosting,xgboost"

ROWS = ("baseline", "random", "sweep", "no_pruning", "tracking", "flaml", "budget", "serving")

FULL = {
    "n_trials": 50, "baseline_families": BASELINE_FAMILIES, "sweep_families": "all",
    "tracking_trials": 20, "tracking_families": "all", "repeats": 3,
    "budget": 30.0, "flaml_budget": 30.0, "requests": 300, "batch_rows": 10_000, "batches": 5,
    "logging_runs": 60,
}
SMOKE = {
    "n_trials": 2, "baseline_families": "elastic_net", "sweep_families": "elastic_net,xgboost",
    "tracking_trials": 2, "tracking_families": "elastic_net", "repeats": 1,
    "budget": 5.0, "flaml_budget": 3.0, "requests": 20, "batch_rows": 1_000, "batches": 2,
    "logging_runs": 3,
    # Only the default row starts a second worker process (seconds of start-up each).
    "other_sweeps": {"n_workers": 1},
}


@dataclass
class Result:
    key: str
    label: str
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    process_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and "skipped" not in self.data

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)


# ----------------------------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    env = processes.child_env()
    env["PYTHONWARNINGS"] = "ignore"
    env.setdefault("GIT_PYTHON_REFRESH", "quiet")
    if "SWEEP_INSURANCE_CSV" not in env and SHARED_INSURANCE.exists():
        env["SWEEP_INSURANCE_CSV"] = str(SHARED_INSURANCE)
    env.update(extra)
    return env


def run_row(key: str, label: str, spec: dict[str, Any], workdir: Path,
            tracking_uri: str | None = None, timeout: float = 1800) -> Result:
    """Run one ``bench/_row.py`` spec in ``workdir``; its result, or the reason it failed."""
    workdir.mkdir(parents=True, exist_ok=True)
    extra = {"MLFLOW_TRACKING_URI": tracking_uri} if tracking_uri else {}
    print(f"[bench] {label} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, str(ROW), json.dumps(spec)], cwd=workdir, env=child_env(**extra),
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return Result(key, label, error=f"timed out after {timeout:.0f} s")
    elapsed = time.perf_counter() - start
    (workdir / "row.log").write_text(done.stdout + done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        tail = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        reason = tail[-1] if tail else f"exit code {done.returncode}"
        return Result(key, label, error=f"exit {done.returncode}: {reason[:200]}",
                      process_seconds=elapsed)
    result = Result(key, label, json.loads(lines[-1][len(MARKER):]), process_seconds=elapsed)
    seconds = result.get("seconds")
    print(f"[bench] {label}: {seconds if seconds is None else round(seconds, 1)} s, "
          f"cv {result.get('cv_rmse')}", file=sys.stderr, flush=True)
    return result


@contextlib.contextmanager
def mlflow_server(workdir: Path) -> Iterator[tuple[str, int]]:
    """A local ``mlflow server`` (SQLite backend, serving artifacts) on a free loopback port:
    its URL, and the process id of its command (the root of its process tree)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [str(BIN / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{workdir / 'server.db'}",
            "--serve-artifacts", "--artifacts-destination", str(workdir / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    with running_server(argv, log_path=workdir / "server.log", cwd=workdir,
                        ready_url=f"{url}/health",
                        env=child_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")) as server:
        yield url, server.pid


# ----------------------------------------------------------------------------------------------
# rows
# ----------------------------------------------------------------------------------------------


def sweep_spec(size: dict[str, Any], tracking: str = "mlflow", **config: Any) -> dict[str, Any]:
    base = {"n_trials": size["n_trials"], "families": size["sweep_families"]}
    if config:
        base.update(size.get("other_sweeps", {}))
    return {"kind": "sweep", "tracking": tracking, "config": {**base, **config}}


def sqlite_uri(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


#: The tracking rows' variants, in the order of their first round.
TRACKING_VARIANTS = ("none", "sqlite", "http")


def round_order(variants: Sequence[str], repeat: int) -> tuple[str, ...]:
    """The order of ``variants`` in round ``repeat``: rotated by one each round, so that over
    as many rounds as variants each runs once in every position. This machine's speed drifts
    by several percent within minutes (untracked repeats of one run: 74.8, 75.5, 82.2 s), and
    in a fixed order a drift that lasts a round would land on the variants run last."""
    shift = repeat % len(variants)
    return (*variants[shift:], *variants[:shift])


def tracking_rows(size: dict[str, Any], tmp: Path) -> tuple[list[Result], dict[str, Result]]:
    """The same single-worker sweep with no tracking, on SQLite and over HTTP, interleaved
    ``repeats`` times in rounds whose order rotates (:func:`round_order`) so that load changes
    hit every variant alike; then trial runs logged one after another to the same server with
    MLflow's kept-alive connections and with a connection per request (which the sweep uses
    where its probe finds kept-alive answers held back, sweeper.connections)."""
    config = {"n_trials": size["tracking_trials"], "families": size["tracking_families"],
              "n_workers": 1}
    runs: dict[str, list[Result]] = {variant: [] for variant in TRACKING_VARIANTS}
    with mlflow_server(tmp / "server") as (url, server):
        for repeat in range(size["repeats"]):
            for variant in round_order(TRACKING_VARIANTS, repeat):
                workdir = tmp / f"tracking-{variant}-{repeat}"
                uri = {"none": f"sqlite:///{workdir / 'leak.db'}", "sqlite": sqlite_uri(workdir),
                       "http": url}[variant]
                spec = {"kind": "sweep", "tracking": "none" if variant == "none" else "mlflow",
                        "config": config}
                if variant == "http":
                    spec["server_pid"] = server  # its CPU is measured around the sweep
                runs[variant].append(run_row(f"tracking_{variant}", f"tracking {variant} #{repeat}",
                                             spec, workdir, uri))
        log_rows = {
            mode: run_row(f"logging_{mode}", f"trial-run logging, {mode}",
                          {"kind": "trial_logging", "close": mode == "close",
                           "runs": size["logging_runs"], "warmup": 3},
                          tmp / f"logging-{mode}", url)
            for mode in ("keep", "close")
        }
    labels = {"none": "same trials, no tracking (1 worker)",
              "sqlite": "sweep, tracking on SQLite (1 worker)",
              "http": "sweep, tracking over HTTP `mlflow server` (1 worker)"}
    merged = []
    for variant, results in runs.items():
        failed = [r for r in results if not r.ok]
        if failed:
            merged.append(Result(f"tracking_{variant}", labels[variant], error=failed[0].error))
            continue
        seconds = [r.get("seconds") for r in results]
        median = statistics.median(seconds)
        # The repeat whose time is the median (the upper one for an even count).
        chosen = sorted(results, key=lambda r: r.get("seconds"))[len(results) // 2]
        data = dict(chosen.data)
        data.update(seconds=median, all_seconds=seconds,
                    all_phases=[r.get("phases") for r in results],
                    all_trials=[r.get("trial_values") for r in results],
                    all_trial_seconds=[r.get("trial_seconds") for r in results],
                    all_cpu=[r.get("cpu") for r in results])
        merged.append(Result(f"tracking_{variant}", labels[variant], data,
                             process_seconds=statistics.median(r.process_seconds for r in results)))
    return merged, log_rows


#: The default sweep's rows: the sweep as it ships, and the same sweep without pruning.
DEFAULT_ROWS = ("sweep", "no_pruning")


def default_rows(size: dict[str, Any], tmp: Path, keys: Sequence[str]) -> list[Result]:
    """The default sweep and the same sweep with ``pruning=none`` (``keys``: either or both of
    :data:`DEFAULT_ROWS`), ``repeats`` times each in rounds whose order rotates
    (:func:`round_order`); each row is its repeat of median wall time. With one worker per
    core the workers share each family's trials in an order that changes from run to run, so
    the trials drawn (and the forests' sizes) differ: single runs of one commit took 107-180 s
    on a 2-core machine where the plain Optuna baseline took 289 s."""
    n = size["n_trials"]
    specs = {
        "sweep": (f"**this sweep**, defaults (n_trials={n}, one worker per core, pruning on), "
                  "SQLite", sweep_spec(size)),
        "no_pruning": ("this sweep, pruning=none, SQLite", sweep_spec(size, pruning="none")),
    }
    runs: dict[str, list[Result]] = {key: [] for key in keys}
    for repeat in range(size["repeats"]):
        for key in round_order(tuple(keys), repeat):
            label, spec = specs[key]
            workdir = tmp / f"{key}-{repeat}"
            result = run_row(key, f"{label} #{repeat}", spec, workdir, sqlite_uri(workdir))
            if result.ok:
                result.data["tracking_uri"] = sqlite_uri(workdir)  # where its champion is
            runs[key].append(result)
    return [median_repeat(key, specs[key][0], runs[key]) for key in keys]


def median_repeat(key: str, label: str, runs: Sequence[Result]) -> Result:
    """The repeat of median wall time (the upper one for an even count), whole (its trials,
    CV, champion), with every repeat's wall time (``all_seconds``, in round order) and best CV
    RMSE (``all_cv_rmse_each``); failed when any repeat failed."""
    failed = [r for r in runs if not r.ok]
    if failed:
        return Result(key, label, error=failed[0].error)
    chosen = sorted(runs, key=lambda r: r.get("seconds"))[len(runs) // 2]
    seconds = [r.get("seconds") for r in runs]
    data = dict(chosen.data, all_seconds=seconds,
                all_cv_rmse_each=[r.get("cv_rmse") for r in runs])
    return Result(key, label, data, process_seconds=chosen.process_seconds)


def median_cv(result: Result) -> float:
    """The median of a row's repeats' best CV RMSE (the row's own when it ran once)."""
    return statistics.median(result.get("all_cv_rmse_each") or [result.get("cv_rmse")])


def budget_row(size: dict[str, Any], tmp: Path) -> Result:
    """The sweep with ``time_budget``, ``repeats`` times; the row is the repeat with the median
    best CV RMSE. Which trials fit in a budget depends on how fast the machine runs from one
    second to the next, so one run's best CV RMSE moves by about ±0.5 % (21 runs of one commit
    in a row: 4,493.5 to 4,536.2), as much as the target's margin."""
    label = f"this sweep, time_budget={size['budget']:.0f}, SQLite"
    runs = [run_row("budget", f"{label} #{repeat}", sweep_spec(size, time_budget=size["budget"]),
                    tmp / f"budget-{repeat}", sqlite_uri(tmp / f"budget-{repeat}"))
            for repeat in range(size["repeats"])]
    failed = [r for r in runs if not r.ok]
    if failed:
        return Result("budget", label, failed[0].data, error=failed[0].error)
    # The median repeat (the upper one for an even count), whole: its time, trials and test RMSE.
    chosen = sorted(runs, key=lambda r: r.get("cv_rmse"))[len(runs) // 2]
    data = dict(chosen.data, budget=size["budget"], all_cv_rmse=[r.get("cv_rmse") for r in runs])
    return Result("budget", label, data, process_seconds=chosen.process_seconds)


def serving_row(model_uri: str, tracking_uri: str, size: dict[str, Any], tmp: Path,
                X: Any) -> dict[str, Any]:
    """``mlflow models serve`` of the champion: single-row latency and batch throughput.

    Single rows are timed from two clients, in alternating rounds so that both see the same
    machine: the standard library's ``http.client`` on one kept-alive connection (a lean
    client, as curl is: what the server takes, plus loopback), which the target is checked
    on, and ``requests.Session``, whose own Python costs about 2 ms a call here.
    """
    import http.client

    import numpy as np
    import requests

    workdir = tmp / "serving"
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "-p", str(port),
            "--host", "127.0.0.1", "--env-manager", "local"]
    out: dict[str, Any] = {"command": " ".join(shlex.quote(a) for a in argv[1:])}
    one = {"dataframe_split": json.loads(X.head(1).to_json(orient="split", index=False))}
    big = X.sample(n=size["batch_rows"], replace=True, random_state=0).reset_index(drop=True)
    batch = json.dumps({"dataframe_split": json.loads(big.to_json(orient="split", index=False))})
    body = json.dumps(one)
    headers = {"Content-Type": "application/json"}
    with running_server(argv, log_path=workdir / "serve.log", cwd=workdir,
                        ready_url=f"{url}/ping", env=child_env(MLFLOW_TRACKING_URI=tracking_uri)):
        session = requests.Session()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def lean(method: str, path: str, data: str | None = None) -> bytes:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            content = response.read()
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: HTTP {response.status}: {content[:200]!r}")
            return content

        def timed(n: int, request: Any) -> tuple[list[float], list[Any]]:
            """Seconds of each of ``n`` sequential ``request()`` calls, and their results."""
            seconds, results = [], []
            for _ in range(n):
                start = time.perf_counter()
                result = request()
                seconds.append(time.perf_counter() - start)
                results.append(result)
            return seconds, results

        invoke = f"{url}/invocations"
        by_requests = lambda: session.post(invoke, data=body, headers=headers)  # noqa: E731
        for _ in range(20):  # warm-up: lazy imports, first-request paths, both clients
            lean("POST", "/invocations", body)
            by_requests().raise_for_status()
        latencies: list[float] = []
        latencies_requests: list[float] = []
        rounds = 3
        for _ in range(rounds):
            latencies += timed(size["requests"] // rounds,
                               lambda: lean("POST", "/invocations", body))[0]
            seconds, responses = timed(size["requests"] // rounds, by_requests)
            for response in responses:
                response.raise_for_status()
            latencies_requests += seconds
        pings = timed(min(100, size["requests"]), lambda: lean("GET", "/ping"))[0]
        pings_requests = timed(min(100, size["requests"]),
                               lambda: session.get(f"{url}/ping"))[0]
        batch_seconds, responses = timed(
            size["batches"], lambda: session.post(invoke, data=batch, headers=headers))
        for response in responses:
            response.raise_for_status()
            assert len(response.json()["predictions"]) == len(big)
        connection.close()

    def percentiles(seconds: list[float]) -> tuple[float, float, float]:
        ms = np.array(seconds) * 1000
        return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.mean())

    p50, p99, mean = percentiles(latencies)
    p50_requests, p99_requests, _ = percentiles(latencies_requests)
    out.update(
        p50_ms=p50, p99_ms=p99, mean_ms=mean, requests=len(latencies),
        requests_p50_ms=p50_requests, requests_p99_ms=p99_requests,
        ping_p50_ms=percentiles(pings)[0], requests_ping_p50_ms=percentiles(pings_requests)[0],
        batch_rows=len(big),
        batch_seconds=float(statistics.median(batch_seconds)),
        rows_per_s=float(len(big) / statistics.median(batch_seconds)),
    )
    try:
        out.update(profile_in_process(model_uri, tracking_uri, X, one, big, workdir))
    except Exception as error:  # noqa: BLE001 - the served numbers stand without it
        out["profile_error"] = f"{type(error).__name__}: {error}"[:200]
    return out


def profile_in_process(model_uri: str, tracking_uri: str, X: Any, one: dict[str, Any],
                       big: Any, workdir: Path) -> dict[str, Any]:
    """Where a request's time goes, without the server: MLflow's request handler whole (what
    the server runs in a thread per request), its JSON parsing into a DataFrame, the pyfunc
    predict (schema enforcement + the served model), the served model's own predict (the
    compiled pipeline), and the bare scikit-learn predict."""
    code = r"""
import json, sys, time, statistics, warnings
warnings.simplefilter("ignore")
import mlflow, pandas as pd
from mlflow.pyfunc.scoring_server import infer_and_parse_data, invocations
uri, one, big = sys.argv[1], sys.argv[2], sys.argv[3]
model = mlflow.pyfunc.load_model(uri)
raw = model.get_raw_model() if hasattr(model, "get_raw_model") else model._model_impl.sklearn_model
served = model._model_impl  # what the model's loader_module returned
schema = model.metadata.get_input_schema()
def t(fn, n):
    fn(); out = []
    for _ in range(n):
        s = time.perf_counter(); fn(); out.append(time.perf_counter() - s)
    return statistics.median(out) * 1000
df1 = infer_and_parse_data(json.loads(one))
dfb = infer_and_parse_data(json.loads(open(sys.argv[4]).read()))
body = one.encode()
res = {
  "handler_1_ms": t(lambda: invocations(body, "application/json", model, schema), 200),
  "parse_1_ms": t(lambda: infer_and_parse_data(json.loads(one)), 200),
  "pyfunc_predict_1_ms": t(lambda: model.predict(df1), 200),
  "served_predict_1_ms": t(lambda: served.predict(df1), 200),
  "sklearn_predict_1_ms": t(lambda: raw.predict(df1), 200),
  "parse_batch_ms": t(lambda: infer_and_parse_data(json.loads(open(sys.argv[4]).read())), 3),
  "pyfunc_predict_batch_ms": t(lambda: model.predict(dfb), 3),
  "sklearn_predict_batch_ms": t(lambda: raw.predict(dfb), 3),
}
print("BENCH-RESULT " + json.dumps(res))
"""
    batch_file = workdir / "batch.json"
    batch_file.write_text(json.dumps(
        {"dataframe_split": json.loads(big.to_json(orient="split", index=False))}))
    done = subprocess.run(
        [sys.executable, "-c", code, model_uri, json.dumps(one), "-", str(batch_file)],
        cwd=workdir, env=child_env(MLFLOW_TRACKING_URI=tracking_uri), capture_output=True,
        text=True, timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        return {"profile_error": (done.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(lines[-1][len(MARKER):])


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(results: list[Result]) -> str:
    lines = ["| row | wall time (s) | trials | best CV RMSE | test RMSE | notes |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        if r.error is not None:
            lines.append(f"| {r.label} | – | – | – | – | FAILED: {r.error} |")
            continue
        if "skipped" in r.data:
            lines.append(f"| {r.label} | – | – | – | – | skipped ({r.data['skipped']}) |")
            continue
        notes = []
        if r.get("family"):
            notes.append(f"best: {r.get('family')}")
        if r.get("pruned"):
            notes.append(f"{r.get('pruned')} pruned")
        if r.get("all_seconds") and len(r.get("all_seconds")) > 1:
            notes.append("median of " + ", ".join(f"{s:.1f}" for s in r.get("all_seconds")))
        if r.get("all_cv_rmse_each") and len(r.get("all_cv_rmse_each")) > 1:
            notes.append("best CV of each " + ", ".join(
                f"{v:,.1f}" for v in r.get("all_cv_rmse_each")))
        if r.get("all_cv_rmse") and len(r.get("all_cv_rmse")) > 1:
            notes.append("median best CV of " + ", ".join(f"{v:,.1f}" for v in r.get("all_cv_rmse")))
        if r.get("flaml_reported_cv") is not None:
            notes.append(f"FLAML's own CV {r.get('flaml_reported_cv'):,.1f} on the same folds")
        if r.get("phases"):
            # This command's phases, as the sweep measured them (SweepOutcome.timings).
            p = r.get("phases")
            notes.append(f"setup {p.get('sweep.setup', 0):.1f} s, trials "
                         f"{p.get('sweep.trials', 0):.1f} s, champion "
                         f"{p.get('sweep.champion', 0):.1f} s, then waited "
                         f"{p.get('sweep.drawing_wait', 0):.1f} s for the plots")
        lines.append(f"| {r.label} | {fmt(r.get('seconds'))} | {fmt(r.get('trials'))} | "
                     f"{fmt(r.get('cv_rmse'))} | {fmt(r.get('test_rmse'))} | {'; '.join(notes)} |")
    return "\n".join(lines)


def targets(by: dict[str, Result], serving: dict[str, Any] | None, smoke: bool) -> list[str]:
    def ok(*keys: str) -> bool:
        return all(k in by and by[k].ok for k in keys)

    def verdict(met: bool) -> str:
        return "n/a (smoke)" if smoke else ("**met**" if met else "**missed**")

    out = ["| target | measured | verdict |", "| --- | --- | --- |"]
    none = by.get("tracking_none")
    for variant, name in (("sqlite", "SQLite"), ("http", "HTTP")):
        key = f"tracking_{variant}"
        if ok(key, "tracking_none"):
            out.append(_tracking_target(by[key], none, name, verdict))
    if ok("sweep", "baseline"):
        s, b = by["sweep"], by["baseline"]
        ratio = s.get("seconds") / b.get("seconds")
        cv = median_cv(s) / b.get("cv_rmse") - 1
        out.append(f"| 2. default sweep ≤ 0.5× plain Optuna, CV within +0.5 % | {ratio:.3f}× "
                   f"({s.get('seconds'):.1f} s{_of_repeats(s)} vs {b.get('seconds'):.1f} s); "
                   f"CV {cv:+.2%}{' (the median of the repeats)' if _repeated(s) else ''} | "
                   f"{verdict(ratio <= 0.5 and cv <= 0.005)} |")
    if ok("budget", "flaml"):
        ours, theirs = by["budget"].get("cv_rmse"), by["flaml"].get("cv_rmse")
        repeats = by["budget"].get("all_cv_rmse") or []
        each = (f"; repeats {', '.join(f'{v:,.1f}' for v in repeats)}, "
                f"{sum(v <= theirs for v in repeats)} of {len(repeats)} ≤ FLAML's"
                if len(repeats) > 1 else "")
        out.append(f"| 3. time_budget={by['budget'].get('budget', '')} CV ≤ FLAML's | "
                   f"{ours:,.1f} vs {theirs:,.1f} ({ours / theirs - 1:+.2%}; the median of "
                   f"{max(1, len(repeats))}{each}) | {verdict(ours <= theirs)} |")
    if ok("sweep", "no_pruning"):
        on, off = by["sweep"], by["no_pruning"]
        rounds = [1 - a / b for a, b in zip(on.get("all_seconds") or [on.get("seconds")],
                                             off.get("all_seconds") or [off.get("seconds")],
                                             strict=True)]
        saved = statistics.median(rounds)
        medians = 1 - on.get("seconds") / off.get("seconds")
        cv = median_cv(on) / median_cv(off) - 1
        how = (f"the median of the rounds' {', '.join(f'{r:.1%}' for r in rounds)}; the "
               f"medians {on.get('seconds'):.1f} s vs {off.get('seconds'):.1f} s: {medians:.1%}"
               if len(rounds) > 1 else f"{on.get('seconds'):.1f} s vs {off.get('seconds'):.1f} s")
        out.append(f"| 4. pruning saves time, champion no worse (within 0.5 %) | saves "
                   f"{saved:.1%} ({how}); CV {cv:+.2%}"
                   f"{' (the medians of the repeats)' if _repeated(on) else ''} | "
                   f"{verdict(saved > 0 and cv <= 0.005)} |")
    if ok("random", "baseline"):
        r, b = by["random"], by["baseline"]
        out.append(f"| 5. random search (same trials) | {r.get('seconds'):.1f} s, CV "
                   f"{r.get('cv_rmse'):,.1f} vs TPE {b.get('cv_rmse'):,.1f} | (reference) |")
    if serving and "p50_ms" in serving:
        met = serving["p50_ms"] <= 8 and serving["p99_ms"] <= 20
        out.append(f"| 6. serving p50 ≤ 8 ms, p99 ≤ 20 ms | p50 {serving['p50_ms']:.1f} ms, "
                   f"p99 {serving['p99_ms']:.1f} ms (`http.client`; `requests` "
                   f"{serving['requests_p50_ms']:.1f} / {serving['requests_p99_ms']:.1f} ms) | "
                   f"{verdict(met)} |")
    return out


def _repeated(result: Result) -> bool:
    return len(result.get("all_seconds") or []) > 1


def _of_repeats(result: Result) -> str:
    """", the median of 37.7, 38.1, 36.0" for a row that ran more than once, else ""."""
    if not _repeated(result):
        return ""
    return ", the median of " + ", ".join(f"{s:.1f}" for s in result.get("all_seconds"))


def _tracking_target(tracked: Result, none: Result, name: str,
                     verdict: Callable[[bool], str]) -> str:
    """Target 1's line for one store. The verdict is on the median of the rounds' ratios (each
    tracked repeat over the untracked one of the same round, :func:`round_order`): a round's
    runs follow one another, while between rounds this machine's speed drifts by as much as
    the target's margin. The ratio of the two medians, which mixes rounds, is shown beside
    it."""
    walls = [t / u for t, u in zip(tracked.get("all_seconds") or [],
                                   none.get("all_seconds") or [], strict=False)]
    loops = [t / u for t, u in zip(_all_loop_seconds(tracked), _all_loop_seconds(none),
                                   strict=False)]
    of_medians = tracked.get("seconds") / none.get("seconds")
    same = tracked.get("all_trials") == none.get("all_trials")
    if len(walls) > 1:
        ratio = statistics.median(walls)
        measured = (f"{ratio:.3f}× (the median of the rounds' ratios "
                    f"{', '.join(f'{r:.3f}×' for r in walls)}; the medians "
                    f"{tracked.get('seconds'):.1f} s vs {none.get('seconds'):.1f} s: "
                    f"{of_medians:.3f}×; identical trials: {'yes' if same else 'no'})")
    else:
        ratio = of_medians
        measured = (f"{ratio:.3f}× ({tracked.get('seconds'):.1f} s vs "
                    f"{none.get('seconds'):.1f} s; identical trials: {'yes' if same else 'no'})")
    loop = statistics.median(loops) if loops else float("nan")
    return (f"| 1. tracking overhead on {name} ≤ 1.02× | {measured}; the trials alone "
            f"(without set-up, champion logging and plots): {loop:.3f}× | "
            f"{verdict(ratio <= 1.02)} |")


def _all_loop_seconds(result: Result) -> list[float]:
    """Each repeat's trials phase alone (its trials and the wait for other workers' last ones),
    without set-up, the champion's refit, logging and registration, and the plots; in round
    order."""
    return [float((phases or {}).get("sweep.trials", seconds))
            for phases, seconds in zip(result.get("all_phases") or [],
                                       result.get("all_seconds") or [], strict=True)]


def overhead_split(tracked: Result, untracked: Result) -> list[tuple[float, float, float]]:
    """Where a tracked sweep's extra wall time went, repeat by repeat against the untracked
    run of the same round: ``(trials' own time ratio, median trial's ratio, extra seconds
    outside the trials)``. The same trials (same numbers, same parameters) are paired, so the
    first two say whether the trials themselves ran slower beside tracking (the work tracking
    adds on the other cores), the third what tracking added to the sweep around them
    (set-up, between trials, the champion's logging, waiting for plots)."""
    out = []
    pairs = zip(tracked.get("all_seconds") or [], untracked.get("all_seconds") or [],
                tracked.get("all_trial_seconds") or [], untracked.get("all_trial_seconds") or [],
                strict=False)
    for t_wall, u_wall, t_trials, u_trials in pairs:
        t = {(f, n): s for f, rows in (t_trials or {}).items() for n, s in rows}
        u = {(f, n): s for f, rows in (u_trials or {}).items() for n, s in rows}
        common = [k for k in t if k in u and u[k] > 0]
        if not common:
            continue
        ratio = sum(t[k] for k in common) / sum(u[k] for k in common)
        median = statistics.median(t[k] / u[k] for k in common)
        outside = (t_wall - sum(t.values())) - (u_wall - sum(u.values()))
        out.append((ratio, median, outside))
    return out


def split_text(by: dict[str, Result]) -> list[str]:
    """The tracking rows' overhead split into the trials' own time and the rest."""
    none = by.get("tracking_none")
    lines = []
    for variant, name in (("sqlite", "SQLite"), ("http", "HTTP")):
        tracked = by.get(f"tracking_{variant}")
        if none is None or tracked is None or not (none.ok and tracked.ok):
            continue
        split = overhead_split(tracked, none)
        if split:
            lines.append(
                f"- {name}: the trials' own time {', '.join(f'{r:.3f}×' for r, _, _ in split)} "
                f"(median trial {', '.join(f'{m:.3f}×' for _, m, _ in split)}); outside the "
                f"trials {', '.join(f'{o:+.1f} s' for _, _, o in split)}.")
    if not lines:
        return []
    return ["Tracking overhead split, repeat by repeat (each tracked repeat against the "
            "untracked one of the same round, the same trials paired by number): how much longer "
            "the trials themselves took beside tracking, and the extra time outside them.",
            "", *lines, ""]


def cpu_medians(result: Result) -> dict[str, float | None]:
    """The median over a tracking row's repeats of each CPU figure its sweeps recorded
    (``bench/_row.py``: ``sweep``, ``helpers``, ``server``, ``waited``); ``None`` where no
    repeat has it (the server of a row without one; ``/proc`` missing)."""
    repeats = [cpu for cpu in result.get("all_cpu") or [] if cpu]
    out: dict[str, float | None] = {}
    for name in ("sweep", "helpers", "server", "waited"):
        values = [cpu[name] for cpu in repeats if cpu.get(name) is not None]
        out[name] = statistics.median(values) if values else None
    return out


def cpu_text(by: dict[str, Result]) -> list[str]:
    """What ran on the cores during the tracking rows' sweeps (CPU seconds, medians of the
    repeats): the sweep's process, its helpers, the tracking server; and how long the thread
    running the trials waited for a core."""
    lines = []
    for variant, name in (("none", "no tracking"), ("sqlite", "SQLite"), ("http", "HTTP")):
        result = by.get(f"tracking_{variant}")
        if result is None or not result.ok or not result.get("all_cpu"):
            continue
        cpu = cpu_medians(result)
        if cpu["sweep"] is None:
            continue
        helpers = "n/a" if cpu["helpers"] is None else f"{cpu['helpers']:.1f} s"
        parts = [f"the sweep's process {cpu['sweep']:.1f} s", f"its helpers {helpers}"]
        if cpu["server"] is not None:
            parts.append(f"the tracking server {cpu['server']:.1f} s")
        waited = "n/a" if cpu["waited"] is None else f"{cpu['waited']:.2f} s"
        lines.append(f"- {name}: wall {result.get('seconds'):.1f} s; CPU: {', '.join(parts)}; "
                     f"the trials' thread waited {waited}.")
    if not lines:
        return []
    return ["CPU time during the same sweeps (medians of each row's repeats, read from `/proc` "
            "by `bench/_cpu.py`): the sweep's own process, the helpers it starts (trial logger, "
            "drawing, the champion prepared ahead) and the tracking server, which run beside "
            "the trials on the cores they leave free; and how long the thread running the "
            "trials waited for a core.", "", *lines, ""]


def logging_text(log_rows: dict[str, Result]) -> list[str]:
    """The trial-run logging rows: per-run latency to the bench's `mlflow server`."""
    if not log_rows:
        return []
    failed = [r for r in log_rows.values() if not r.ok]
    if failed:
        return [f"Trial-run logging: FAILED: {failed[0].error}", ""]
    keep, close = log_rows["keep"], log_rows["close"]
    ratio = keep.get("median_ms") / close.get("median_ms")
    return [
        f"Trial-run logging to the same `mlflow server` (uvicorn, 2 worker processes), "
        f"{keep.get('runs')} runs one after another as the sweep logs them (3 requests each): "
        f"kept-alive connections (MLflow's default) {keep.get('median_ms'):.1f} ms per run "
        f"(median; client CPU {keep.get('cpu_median_ms'):.1f} ms), a connection per request "
        f"{close.get('median_ms'):.1f} ms (client CPU {close.get('cpu_median_ms'):.1f} ms): "
        f"kept alive takes {ratio:.2f}× the time. The sweep keeps connections alive unless its "
        f"probe finds the server holding kept-alive answers back (`sweeper/connections.py`).",
        ""]


def serving_text(serving: dict[str, Any] | None) -> list[str]:
    if not serving:
        return []
    if "error" in serving:
        return [f"Serving: FAILED: {serving['error']}"]
    lines = [
        f"Serving (`{serving['command']}`, loopback, one uvicorn worker): "
        f"{serving['requests']} sequential single-row requests from `http.client` (one "
        f"kept-alive connection): p50 {serving['p50_ms']:.1f} ms, p99 {serving['p99_ms']:.1f} ms, "
        f"mean {serving['mean_ms']:.1f} ms (GET /ping p50 {serving['ping_p50_ms']:.1f} ms); as "
        f"many from `requests.Session`, in alternating rounds: p50 "
        f"{serving['requests_p50_ms']:.1f} ms, p99 {serving['requests_p99_ms']:.1f} ms (GET /ping "
        f"p50 {serving['requests_ping_p50_ms']:.1f} ms); one {serving['batch_rows']:,}-row "
        f"`dataframe_split` request: {serving['batch_seconds'] * 1000:,.0f} ms = "
        f"{serving['rows_per_s']:,.0f} rows/s.",
    ]
    if "parse_1_ms" in serving:
        lines.append(
            f"In-process, without the server (medians): MLflow's request handler "
            f"{serving['handler_1_ms']:.2f} ms for one row, of which parse JSON → DataFrame "
            f"{serving['parse_1_ms']:.2f} ms and pyfunc predict (schema enforcement + the "
            f"served model) {serving['pyfunc_predict_1_ms']:.2f} ms; the served model's own "
            f"predict {serving['served_predict_1_ms']:.2f} ms, the bare scikit-learn pipeline's "
            f"{serving['sklearn_predict_1_ms']:.2f} ms. {serving['batch_rows']:,} rows: parse "
            f"{serving['parse_batch_ms']:,.0f} ms, pyfunc predict "
            f"{serving['pyfunc_predict_batch_ms']:,.0f} ms, scikit-learn "
            f"{serving['sklearn_predict_batch_ms']:,.0f} ms.")
    elif "profile_error" in serving:
        lines.append(f"(in-process profile failed: {serving['profile_error']})")
    return lines


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "?"


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: every row runs, no speed claims")
    parser.add_argument("--only", default="", help=f"comma list of rows: {', '.join(ROWS)}")
    parser.add_argument("--repeats", type=int, help="repeats of the tracking, default-sweep, pruning=none and time-budget rows (median)")
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write the markdown (default: bench/results.md; "
                             "--smoke writes nothing unless given)")
    parser.add_argument("--keep", action="store_true", help="keep the working directories")
    args = parser.parse_args(argv)
    size = dict(SMOKE if args.smoke else FULL)
    if args.repeats:
        size["repeats"] = args.repeats
    only = [r.strip() for r in args.only.split(",") if r.strip()] or list(ROWS)
    unknown = set(only) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    if args.output is not None and args.output.suffix == ".json":
        # The raw numbers go beside the markdown, with .json: they would overwrite it.
        parser.error(f"--output names the markdown file (the JSON is written beside it, as "
                     f".json), but got {str(args.output)!r}")
    if "serving" in only and "sweep" not in only:
        only.append("sweep")  # serving serves the default sweep's champion

    command = " ".join(shlex.quote(a) for a in [
        os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable,
        "bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    started = datetime.datetime.now().astimezone()
    load_before = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    results: list[Result] = []
    serving: dict[str, Any] | None = None
    log_rows: dict[str, Result] = {}
    n = size["n_trials"]
    try:
        if "baseline" in only:
            results.append(run_row("baseline", f"plain Optuna TPE, 1 process, no tracking "
                                   f"({len(size['baseline_families'].split(','))} families × {n})",
                                   {"kind": "optuna", "sampler": "tpe", "n_trials": n,
                                    "families": size["baseline_families"]}, tmp / "baseline"))
        if "random" in only:
            results.append(run_row("random", "plain Optuna random search, same trials",
                                   {"kind": "optuna", "sampler": "random", "n_trials": n,
                                    "families": size["baseline_families"]}, tmp / "random"))
        sweep = None
        defaults = [key for key in DEFAULT_ROWS if key in only]
        if defaults:
            results.extend(default_rows(size, tmp, defaults))
            sweep = next((r for r in results if r.key == "sweep"), None)
        if "tracking" in only:
            try:
                tracked, log_rows = tracking_rows(size, tmp)
                results.extend(tracked)
            except Exception as error:  # noqa: BLE001 - e.g. the server did not start
                results.append(Result("tracking_http", "tracking rows", error=str(error)[:200]))
        if "flaml" in only:
            results.append(run_row("flaml", f"FLAML AutoML, {size['flaml_budget']:.0f} s budget, same folds",
                                   {"kind": "flaml", "budget": size["flaml_budget"]}, tmp / "flaml"))
        if "budget" in only:
            results.append(budget_row(size, tmp))
        if "serving" in only:
            if sweep is not None and sweep.ok:
                print("[bench] serving ...", file=sys.stderr, flush=True)
                os.environ.setdefault("SWEEP_INSURANCE_CSV", str(SHARED_INSURANCE))
                from sweeper.data import load_dataset, split_dataset

                split = split_dataset(load_dataset("insurance", "charges"), test_size=0.2,
                                      seed=42, cv_folds=5)
                try:
                    serving = serving_row(sweep.get("model_uri"), sweep.get("tracking_uri"),
                                          size, tmp, split.X_train)
                except Exception as error:  # noqa: BLE001
                    serving = {"error": f"{type(error).__name__}: {error}"[:300]}
            else:
                serving = {"error": "the default sweep row failed, nothing to serve"}
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"[bench] working directories kept in {tmp}", file=sys.stderr)

    by = {r.key: r for r in results}
    order = ["sweep", "tracking_sqlite", "tracking_http", "tracking_none", "baseline", "flaml",
             "budget", "random", "no_pruning"]
    results.sort(key=lambda r: order.index(r.key) if r.key in order else len(order))
    head = (f"Benchmark of {started:%Y-%m-%d %H:%M %Z} on {os.cpu_count()} cores "
            f"(`nproc` = {len(os.sched_getaffinity(0))}), load average before {load_before}, "
            f"after {load_average()}{' — SMOKE sizes, no speed claims' if args.smoke else ''}.\n"
            f"Command: `{command}`\n\n"
            "Insurance data, 80/20 split seed 42, the same 5 CV folds for every row. Wall time "
            "is measured in each row's own process around the work (imports excluded); the "
            "sweep rows include what is left of their extra worker processes' start-up when "
            "the clock starts (started before the imports, as sweep.py starts them), the drain "
            "and the champion's refit, model logging and registration. Tracking rows: "
            f"{size['tracking_trials']} trials × {size['tracking_families']} families, 1 worker, "
            f"median of {size['repeats']} interleaved repeats (the order rotated each round). "
            f"Default sweep and pruning=none rows: the repeat of median wall time of "
            f"{size['repeats']}, interleaved likewise. Time-budget row: the repeat with "
            f"the median best CV RMSE of {size['repeats']}.")
    text = "\n".join([head, "", table(results), "", *targets(by, serving, args.smoke), "",
                      *split_text(by), *cpu_text(by), *logging_text(log_rows),
                      *serving_text(serving)]) + "\n"
    print(text)
    output = args.output or (None if args.smoke else RESULTS)
    if output is not None:
        output.write_text(text)
        bulky = ("trial_values", "all_trials", "trial_seconds", "all_trial_seconds")
        raw = {r.key: {**{k: v for k, v in r.data.items() if k not in bulky},
                       "error": r.error, "process_seconds": r.process_seconds}
               for r in [*results, *log_rows.values()]}
        output.with_suffix(".json").write_text(json.dumps({"rows": raw, "serving": serving},
                                                          indent=1, default=str))
        print(f"[bench] written to {output}", file=sys.stderr)
    failed = [r for r in [*results, *log_rows.values()] if r.error is not None]
    if serving and "error" in serving:
        failed.append(Result("serving", "serving", error=serving["error"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
