"""Every bad input ends the sweep with one line on stderr, exit code 2, and nothing half-written.

One table (:data:`CASES`) drives both tests: every case runs in-process through ``sweep.main``
(fast), and a representative few also run as real ``python sweep.py`` processes, which is
where a traceback or a library warning would show on stderr. After each case the case's own
SQLite tracking store holds no run at all (every check runs before the first run is made), so
also none left RUNNING and no registered model version, and no Optuna journal file exists.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

import objectives
import sweep
from conftest import ROOT, QuietHandler, free_port, http_server, subprocess_env

MODEL_NAME = "bad-input-model"
# Every case starts from a valid command line; a case appends its own flags (argparse keeps
# the last value of a repeated flag) and so changes exactly one thing.
BASE_ARGS = (
    "--data", "<insurance>",
    "--families", "elastic_net",
    "--n_trials", "1",
    "--storage", "<tmp>/optuna.journal",
    "--sweep_name", "bad-input",
    "--model_name", MODEL_NAME,
)
STORAGE_WAY_OUT = (
    "give an Optuna storage URL such as postgresql+psycopg://user:pass@host/db, or a journal "
    "file path"
)
# Warnings Python shows nobody by default (outside __main__); in-process they are recorded
# all the same, so they are left out of the "no warnings" check.
SILENT_BY_DEFAULT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def _write_frame(name: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[..., None]:
    def write(tmp: Path, insurance: Path) -> None:
        change(pd.read_csv(insurance)).to_csv(tmp / name, index=False)

    return write


def _write_bytes(name: str, content: bytes) -> Callable[..., None]:
    def write(tmp: Path, insurance: Path) -> None:
        (tmp / name).write_bytes(content)

    return write


def _blank_target_rows(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[[3, 10, 20], "charges"] = np.nan
    return frame


def _constant_target(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(charges=1.0)


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        id: The pytest id.
        args: Flags appended to :data:`BASE_ARGS`; ``<tmp>``, ``<insurance>`` and ``<port>``
            are replaced by the case's directory, the insurance copy and a closed port.
        message: The expected stderr line after ``sweep: error: ``, with the same placeholders.
        setup: Writes the case's input files into its directory.
        search_space: ``(family, yaml text)``: that family's search space file is replaced
            (in-process only: the search spaces directory is a module global).
        unreachable_tracking: The tracking URI is an http server on a closed port.
        healthy_tracking: The tracking URI is a stub server that answers ``GET /health`` and
            records every request (a sweep that got past its checks would ask for more).
        env: Environment variables set for the case.
        in_subprocess: Also run this case as a real ``python sweep.py`` process.
    """

    id: str
    args: tuple[str, ...]
    message: str
    setup: Callable[[Path, Path], None] | None = None
    search_space: tuple[str, str] | None = None
    unreachable_tracking: bool = False
    healthy_tracking: bool = False
    env: tuple[tuple[str, str], ...] = ()
    in_subprocess: bool = False


ELASTIC_NET_OK = "searched:\n  alpha: {type: float, low: 1.0e-3, high: 10.0, log: true}\n"

CASES = [
    # --- data ---
    Case(
        "missing-data-file",
        ("--data", "<tmp>/nope.csv"),
        "data file not found: <tmp>/nope.csv; data accepts a CSV path, an http(s) URL or "
        "'insurance'",
        in_subprocess=True,
    ),
    Case(
        "empty-file",
        ("--data", "<tmp>/empty.csv"),
        "data file <tmp>/empty.csv is empty; data needs a CSV with a header row and at least "
        "one row",
        setup=_write_bytes("empty.csv", b""),
    ),
    Case(
        "header-only",
        ("--data", "<tmp>/header.csv"),
        "data file <tmp>/header.csv has a header but no rows; add rows or point data at "
        "another CSV",
        setup=_write_bytes("header.csv", b"age,sex,bmi,children,smoker,region,charges\n"),
    ),
    Case(
        "not-a-csv-binary",
        ("--data", "<tmp>/image.csv"),
        "data file <tmp>/image.csv is not a CSV (it contains NUL bytes: binary data or UTF-16 "
        "text); data accepts a comma-separated UTF-8 text file with a header row",
        setup=_write_bytes("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    ),
    Case(
        "not-a-csv-semicolons",
        ("--data", "<tmp>/semicolons.csv"),
        "data file <tmp>/semicolons.csv is not a CSV (it has a single column; is it "
        "comma-separated?); data accepts a comma-separated UTF-8 text file with a header row",
        setup=_write_bytes("semicolons.csv", b"age;charges\n19;16884.9\n18;1725.5\n"),
    ),
    Case(
        "target-column-missing",
        ("--target", "price"),
        "target column 'price' not in <insurance>; its columns are 'age', 'sex', 'bmi', "
        "'children', 'smoker', 'region', 'charges'; set target to one of them",
    ),
    Case(
        "target-not-numeric",
        ("--target", "sex"),
        "target column 'sex' in <insurance> is not numeric (e.g. 'female'); the target must be "
        "a number in every row",
    ),
    Case(
        "target-missing-values",
        ("--data", "<tmp>/target-gaps.csv"),
        "target column 'charges' in <tmp>/target-gaps.csv: 3 rows have no value; fill them in "
        "or drop those rows",
        setup=_write_frame("target-gaps.csv", _blank_target_rows),
    ),
    Case(
        "too-few-rows-for-cv-folds",
        ("--data", "<tmp>/ten-rows.csv"),
        "too few rows: test_size=0.2 and cv_folds=5 need at least 13 rows (2 test rows and 2 "
        "validation rows per fold), but the data has 10; add rows or lower cv_folds",
        setup=_write_frame("ten-rows.csv", lambda frame: frame.head(10)),
    ),
    Case(
        "constant-target",
        ("--data", "<tmp>/constant.csv"),
        "target column 'charges' in <tmp>/constant.csv is constant (every row is 1.0); there "
        "is nothing to learn, pick another target",
        setup=_write_frame("constant.csv", _constant_target),
    ),
    # --- families and search spaces ---
    Case(
        "unknown-family",
        ("--families", "elastic_net,lasso"),
        "families: unknown family 'lasso'; known families: elastic_net, extra_trees, "
        "hist_gradient_boosting, random_forest, xgboost",
        in_subprocess=True,
    ),
    Case(
        "family-listed-twice",
        ("--families", "elastic_net,xgboost,elastic_net"),
        "families: 'elastic_net' is listed twice",
    ),
    Case(
        "malformed-yaml",
        (),
        "<tmp>/search_spaces/elastic_net.yaml: malformed YAML at line 3, column 1: expected "
        "',' or '}', but got '<stream end>'",
        search_space=("elastic_net", "searched:\n  alpha: {type: float, low: 1.0e-3\n"),
    ),
    Case(
        "search-space-key-not-accepted",
        (),
        "<tmp>/search_spaces/elastic_net.yaml: fixed.alpah: not a parameter of ElasticNet "
        "(see its get_params()); did you mean 'alpha'?",
        search_space=(
            "elastic_net",
            "fixed:\n  alpah: 1.0\nsearched:\n  l1_ratio: {type: float, low: 0.0, high: 1.0}\n",
        ),
    ),
    Case(
        "low-above-high",
        (),
        "<tmp>/search_spaces/elastic_net.yaml: searched.alpha: `low <= high` must hold, but "
        "got (low=10.0, high=0.001)",
        search_space=(
            "elastic_net", "searched:\n  alpha: {type: float, low: 10.0, high: 1.0e-3}\n"
        ),
    ),
    Case(
        "searched-number-as-string",
        (),
        "<tmp>/search_spaces/elastic_net.yaml: searched.alpha.low: must be a number, but got "
        "the string '1e-3' (PyYAML reads `1e-3` as a string: a YAML 1.1 float needs a dot and "
        "a signed exponent; write `1.0e-3`)",
        search_space=(
            "elastic_net", "searched:\n  alpha: {type: float, low: 1e-3, high: 10.0, log: true}\n"
        ),
    ),
    Case(
        "fixed-number-as-string",
        (),
        "<tmp>/search_spaces/elastic_net.yaml: fixed.tol: must be a number, but got the string "
        "'1e-3' (PyYAML reads `1e-3` as a string: a YAML 1.1 float needs a dot and a signed "
        "exponent; write `1.0e-3`)",
        search_space=("elastic_net", "fixed:\n  tol: 1e-3\n" + ELASTIC_NET_OK),
    ),
    # --- sweep parameters ---
    Case("n-trials-zero", ("--n_trials", "0"), "n_trials: must be >= 1, but got 0",
         in_subprocess=True),
    Case("n-trials-negative", ("--n_trials", "-3"), "n_trials: must be >= 1, but got -3"),
    Case(
        "n-trials-not-an-int",
        ("--n_trials", "ten"),
        "argument --n_trials: n_trials: expected int, but got 'ten' (see `python sweep.py "
        "--help`)",
    ),
    Case("cv-folds-one", ("--cv_folds", "1"), "cv_folds: must be >= 2, but got 1"),
    Case(
        "test-size-zero",
        ("--test_size", "0"),
        "test_size: must be in the open interval (0, 1), but got 0.0",
    ),
    Case(
        "test-size-one",
        ("--test_size", "1"),
        "test_size: must be in the open interval (0, 1), but got 1.0",
    ),
    Case(
        "test-size-above-one",
        ("--test_size", "1.5"),
        "test_size: must be in the open interval (0, 1), but got 1.5",
    ),
    Case(
        "timeout-negative",
        ("--timeout", "-1"),
        "timeout: must be >= 0 (0 means no timeout), but got -1.0",
    ),
    # --- environment: tracking server and Optuna storage ---
    Case(
        "tracking-server-unreachable",
        (),
        "cannot reach the MLflow tracking server at http://127.0.0.1:<port> (Connection "
        "refused); start it or set MLFLOW_TRACKING_URI to a reachable server",
        unreachable_tracking=True,
        in_subprocess=True,
    ),
    Case(
        "http-connections-unknown",
        (),
        "SWEEP_HTTP_CONNECTIONS must be one of auto, keep, close, but got 'sometimes'; unset it "
        "to have the sweep ask the tracking server",
        healthy_tracking=True,
        env=(("SWEEP_HTTP_CONNECTIONS", "sometimes"),),
        in_subprocess=True,
    ),
    Case(
        "storage-postgres-closed-port",
        ("--storage", "postgresql+psycopg://u:p@127.0.0.1:<port>/db"),
        "storage: cannot open 'postgresql+psycopg://u:***@127.0.0.1:<port>/db' (OperationalError: "
        "(psycopg.OperationalError) connection failed: connection to server at \"127.0.0.1\", "
        f"port <port> failed: Connection refused); {STORAGE_WAY_OUT}",
    ),
    Case(
        "storage-sqlite-cannot-open",
        ("--storage", "sqlite:////proc/forbidden/optuna.db"),
        "storage: cannot open 'sqlite:////proc/forbidden/optuna.db' (OperationalError: "
        f"(sqlite3.OperationalError) unable to open database file); {STORAGE_WAY_OUT}",
    ),
    Case(
        "storage-journal-in-proc",
        ("--storage", "/proc/forbidden/x.journal"),
        "storage: cannot open '/proc/forbidden/x.journal' (FileNotFoundError: [Errno 2] No such "
        f"file or directory: '/proc/forbidden'); {STORAGE_WAY_OUT}",
    ),
    Case(
        "storage-journal-is-a-directory",
        ("--storage", "<tmp>/a-directory"),
        "storage: cannot open '<tmp>/a-directory' (IsADirectoryError: <tmp>/a-directory is a "
        f"directory); {STORAGE_WAY_OUT}",
        setup=lambda tmp, insurance: (tmp / "a-directory").mkdir(),
    ),
]
SUBPROCESS_CASES = [case for case in CASES if case.in_subprocess]


def _ids(cases: list[Case]) -> list[str]:
    return [case.id for case in cases]


def test_case_ids_are_unique() -> None:
    assert len(set(_ids(CASES))) == len(CASES)


@dataclass(frozen=True)
class Prepared:
    argv: list[str]
    message: str
    tracking_uri: str
    journal: Path


class _Health(QuietHandler):
    """Answers ``GET /health`` as an MLflow server does and records every request's method and
    path (one class per server: ``requests`` is set on a subclass)."""

    requests: list[str]

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.requests.append(f"GET {self.path}")
        if self.path == "/health":
            self.reply(200, b"OK", "text/plain")
        else:
            self.reply(404, b"", "text/plain")

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        self.requests.append(f"POST {self.path}")
        self.reply(404, b"", "text/plain")


@pytest.fixture(scope="module")
def health_stub() -> Iterator[tuple[str, list[str]]]:
    """A stub tracking server for the ``healthy_tracking`` cases: its URL and the requests it
    got (cleared by each case that uses it)."""
    seen: list[str] = []
    with http_server(type("Handler", (_Health,), {"requests": seen})) as url:
        yield url, seen


def _prepare(
    case: Case, tmp: Path, insurance: Path, health_url: str | None = None
) -> Prepared:
    """Write the case's files; return its command line and expected line with placeholders
    filled in, and its tracking URI (a fresh SQLite store, http on a closed port, or
    ``health_url``)."""
    port = str(free_port())

    def fill(text: str) -> str:
        return (
            text.replace("<tmp>", str(tmp))
            # Messages name the file as the loader resolved it (symlinks followed).
            .replace("<insurance>", str(insurance.resolve()))
            .replace("<port>", port)
        )

    if case.setup is not None:
        case.setup(tmp, insurance)
    if case.unreachable_tracking:
        tracking_uri = f"http://127.0.0.1:{port}"
    elif case.healthy_tracking:
        if health_url is None:
            raise ValueError(f"case {case.id} needs the health stub's URL")
        tracking_uri = health_url
    else:
        tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
    return Prepared(
        argv=[fill(arg) for arg in (*BASE_ARGS, *case.args)],
        message="sweep: error: " + fill(case.message),
        tracking_uri=tracking_uri,
        journal=tmp / "optuna.journal",
    )


def _assert_nothing_written(prepared: Prepared, stub_requests: list[str] | None = None) -> None:
    assert not prepared.journal.exists(), "an Optuna journal was created"
    if stub_requests is not None:
        # The stub server was asked whether it is up, and nothing else.
        assert set(stub_requests) <= {"GET /health"}, stub_requests
    if not prepared.tracking_uri.startswith("sqlite:"):
        return  # an unreachable server or the stub cannot have been written to
    database = Path(prepared.tracking_uri.removeprefix("sqlite:///"))
    if not database.exists():
        # MLflow creates the database on first use: no file, no run and no model version.
        # (Opening it here would cost a second of schema migrations per case.)
        return
    client = MlflowClient(tracking_uri=prepared.tracking_uri, registry_uri=prepared.tracking_uri)
    experiments = client.search_experiments(view_type=ViewType.ALL)
    runs = client.search_runs(
        [e.experiment_id for e in experiments], run_view_type=ViewType.ALL, max_results=1000
    )
    # Zero runs implies none left RUNNING; the RUNNING check stays to say so when it fails.
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    assert [(r.info.run_name, r.info.status) for r in runs] == []
    assert client.search_model_versions() == []
    assert client.search_registered_models() == []


@pytest.fixture(autouse=True)
def _fresh_search_spaces() -> Iterator[None]:
    """Empty every family's search-space cache for the test, and restore it afterwards.

    ``Family.search_space()`` caches the loaded space per family instance, and the instances
    are module-level (``objectives.FAMILIES``): without this, a space loaded by an earlier test
    would hide a broken file, and one loaded here from a temp copy would leak into later tests.
    """
    saved = {name: dict(family._cache) for name, family in objectives.FAMILIES.items()}
    for family in objectives.FAMILIES.values():
        family._cache.clear()
    try:
        yield
    finally:
        for name, family in objectives.FAMILIES.items():
            family._cache.clear()
            family._cache.update(saved[name])


@pytest.fixture()
def use_tracking_uri() -> Iterator[Callable[[str], None]]:
    """Point this process's MLflow (fluent API, registry, and the env var) at a URI."""
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with pytest.MonkeyPatch.context() as patch:

        def use(uri: str) -> None:
            patch.setenv("MLFLOW_TRACKING_URI", uri)
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)

        try:
            yield use
        finally:
            mlflow.set_tracking_uri(previous[0])
            mlflow.set_registry_uri(previous[1])


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: Case,
    tmp_path: Path,
    insurance_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    use_tracking_uri: Callable[[str], None],
    health_stub: tuple[str, list[str]],
) -> None:
    health_url, stub_requests = health_stub
    stub_requests.clear()
    prepared = _prepare(case, tmp_path, insurance_csv, health_url)
    for name, value in case.env:
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # a default storage or mlflow.db would land here, not in ROOT
    use_tracking_uri(prepared.tracking_uri)
    if case.search_space is not None:
        spaces = tmp_path / "search_spaces"
        shutil.copytree(objectives.SEARCH_SPACES_DIR, spaces)
        family, text = case.search_space
        (spaces / f"{family}.yaml").write_text(text, encoding="utf-8")
        # Family.search_space_path reads the module global at call time.
        monkeypatch.setattr(objectives, "SEARCH_SPACES_DIR", spaces)
    capfd.readouterr()

    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = sweep.main(prepared.argv)
    elapsed = time.monotonic() - started
    out, err = capfd.readouterr()

    assert err.splitlines() == [prepared.message]
    assert code == 2
    assert out == ""
    assert [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if not issubclass(w.category, SILENT_BY_DEFAULT)
    ] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= 30] == []
    assert elapsed < 10, f"took {elapsed:.1f} s"
    _assert_nothing_written(prepared, stub_requests if case.healthy_tracking else None)


@pytest.fixture(scope="module")
def processes(
    tmp_path_factory: pytest.TempPathFactory, insurance_csv: Path,
    health_stub: tuple[str, list[str]],
) -> dict[str, tuple[Prepared, subprocess.CompletedProcess[str], float]]:
    """Run every subprocess case at once (each pays seconds of imports), keyed by case id."""
    started: dict[str, tuple[Prepared, subprocess.Popen[str], float]] = {}
    for case in SUBPROCESS_CASES:
        assert case.search_space is None, "a subprocess cannot see a monkeypatched search space"
        tmp = tmp_path_factory.mktemp(case.id)
        prepared = _prepare(case, tmp, insurance_csv, health_stub[0])
        env = subprocess_env(
            MLFLOW_TRACKING_URI=prepared.tracking_uri,
            SWEEP_INSURANCE_CSV=str(insurance_csv),
            SWEEP_CACHE_DIR=str(tmp / "cache"),
            **dict(case.env),
        )
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "sweep.py"), *prepared.argv],
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started[case.id] = (prepared, process, time.monotonic())
    done = {}
    for case_id, (prepared, process, began) in started.items():
        try:
            # Far above the few seconds a case takes, far below MLflow's minutes of retries.
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            err += "\n[killed after 60 s]"
        elapsed = time.monotonic() - began
        done[case_id] = (
            prepared,
            subprocess.CompletedProcess(process.args, process.returncode, out, err),
            elapsed,
        )
    return done


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=_ids(SUBPROCESS_CASES))
def test_bad_input_in_a_real_process_is_one_line_without_traceback(
    case: Case,
    processes: dict[str, tuple[Prepared, subprocess.CompletedProcess[str], float]],
) -> None:
    prepared, done, elapsed = processes[case.id]
    # The whole stderr, so that a traceback or any warning (Python's or a library's log) fails.
    assert done.stderr == prepared.message + "\n"
    assert done.returncode == 2
    assert done.stdout == ""
    # Imports take a few seconds; MLflow's own retries against a closed port take minutes.
    assert elapsed < 30, f"took {elapsed:.1f} s"
    _assert_nothing_written(prepared)


def _blank_feature_cells(frame: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Blank about ``fraction`` of the cells of every feature column (not the target)."""
    rng = np.random.default_rng(seed)
    frame = frame.copy()
    for column in frame.columns.drop("charges"):
        frame.loc[rng.random(len(frame)) < fraction, column] = np.nan
    return frame


def test_sweep_runs_on_data_with_missing_feature_values(
    tmp_path: Path,
    insurance_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    use_tracking_uri: Callable[[str], None],
) -> None:
    gappy = _blank_feature_cells(pd.read_csv(insurance_csv), fraction=0.05, seed=0)
    path = tmp_path / "insurance-gaps.csv"
    gappy.to_csv(path, index=False)
    # Numeric (age, bmi, children) and categorical (sex, smoker, region) columns have gaps.
    written = pd.read_csv(path)
    assert all(written[c].isna().sum() > 0 for c in written.columns.drop("charges"))
    assert written["charges"].notna().all()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    use_tracking_uri(uri)
    monkeypatch.chdir(tmp_path)
    code = sweep.main([
        "--data", str(path),
        "--n_trials", "2",
        "--families", "elastic_net,hist_gradient_boosting",
        "--storage", str(tmp_path / "optuna.journal"),
        "--sweep_name", "gaps",
        "--model_name", "gaps-charges",
    ])

    out, err = capfd.readouterr()
    assert code == 0, err
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("gaps-charges", "champion")
    assert str(champion.version) == "1"
    experiments = client.search_experiments(view_type=ViewType.ALL)
    runs = client.search_runs([e.experiment_id for e in experiments], max_results=1000)
    # Pruned trials end KILLED; nothing may be left RUNNING or have FAILED.
    assert {r.info.status for r in runs} <= {"FINISHED", "KILLED"}
    assert [r.info.run_name for r in runs if r.info.status == "FINISHED"]
    # Both families scored: the pipelines impute the gaps instead of failing.
    families = [r for r in runs if r.data.tags.get("sweep.role") == "family"]
    assert len(families) == 2
    for family in families:
        assert family.data.metrics["rmse"] > 0
    assert "Registered: gaps-charges version 1" in out
