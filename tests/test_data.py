"""Tests for :mod:`sweeper.data`: fetching, caching, validation messages and the split.

Nothing here touches the internet: downloads are served by a local ``http.server`` and the
default ``INSURANCE_URL`` is pointed at a closed port for every test.
"""

from __future__ import annotations

import hashlib
import http.server
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweeper import data
from sweeper.data import (
    INSURANCE_SHA256,
    Dataset,
    check_split_feasible,
    fetch_insurance,
    fetch_url,
    load_dataset,
    min_rows_for_split,
    split_dataset,
)
from sweeper.errors import SweepError

SHARED_INSURANCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "insurance.csv"
DATA_FORMS = "data accepts a CSV path, an http(s) URL or 'insurance'"
CSV_FORM = "data accepts a comma-separated UTF-8 text file with a header row"


@pytest.fixture(scope="module")
def insurance_bytes() -> bytes:
    if not SHARED_INSURANCE.is_file():
        pytest.skip(f"no local copy of insurance.csv at {SHARED_INSURANCE}")
    return SHARED_INSURANCE.read_bytes()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No copy, a fresh cache, no proxy, and a default URL nobody listens on."""
    cache = tmp_path / "cache"
    monkeypatch.delenv(data.INSURANCE_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_ENV, str(cache))
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    monkeypatch.setattr(data, "INSURANCE_URL", f"http://127.0.0.1:{_closed_port()}/insurance.csv")
    return cache


# --------------------------------------------------------------------------------------------
# A local HTTP server
# --------------------------------------------------------------------------------------------


@dataclass
class Server:
    base: str
    routes: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(base="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            state.requests.append(self.path)
            body = state.routes.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # keep pytest output clean

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    # A short poll interval keeps shutdown() (which waits for one poll) from costing 0.5 s a test.
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------------------------
# The insurance dataset
# --------------------------------------------------------------------------------------------


def _check_insurance(dataset: Dataset) -> None:
    assert dataset.name == "insurance"
    assert dataset.target == "charges"
    assert dataset.sha256 == INSURANCE_SHA256
    assert dataset.frame.shape == (1338, 7)
    assert list(dataset.frame.columns) == [
        "age", "sex", "bmi", "children", "smoker", "region", "charges",
    ]
    assert dataset.numeric_columns == ["age", "bmi", "children"]
    assert dataset.categorical_columns == ["sex", "smoker", "region"]
    assert list(dataset.features.columns) == ["age", "sex", "bmi", "children", "smoker", "region"]
    assert dataset.labels.dtype == np.float64
    assert dataset.labels.name == "charges"
    assert not dataset.frame.isna().any().any()


def test_insurance_from_env_copy(
    monkeypatch: pytest.MonkeyPatch, isolated: Path, insurance_bytes: bytes
) -> None:
    monkeypatch.setenv(data.INSURANCE_ENV, str(SHARED_INSURANCE))
    dataset = load_dataset("insurance", "charges")
    _check_insurance(dataset)
    assert dataset.source == str(SHARED_INSURANCE.resolve())
    assert not isolated.exists(), "a local copy must not populate the cache"


def test_insurance_download_then_cache_hit(
    server: Server, monkeypatch: pytest.MonkeyPatch, isolated: Path, insurance_bytes: bytes
) -> None:
    server.routes["/insurance.csv"] = insurance_bytes
    monkeypatch.setattr(data, "INSURANCE_URL", server.url("/insurance.csv"))

    first = load_dataset("insurance", "charges")
    _check_insurance(first)
    assert first.source == str((isolated / "insurance.csv").resolve())
    assert sorted(p.name for p in isolated.iterdir()) == ["insurance.csv"]
    assert server.requests == ["/insurance.csv"]

    _check_insurance(load_dataset("insurance", "charges"))
    assert server.requests == ["/insurance.csv"], "a cache hit must not touch the network"


def test_fetch_insurance_url_argument(
    server: Server, isolated: Path, insurance_bytes: bytes
) -> None:
    server.routes["/mirror/insurance.csv"] = insurance_bytes
    path = fetch_insurance(url=server.url("/mirror/insurance.csv"))
    assert path == (isolated / "insurance.csv").resolve()
    assert path.read_bytes() == insurance_bytes


def test_insurance_checksum_mismatch_leaves_nothing_cached(
    server: Server, monkeypatch: pytest.MonkeyPatch, isolated: Path, insurance_bytes: bytes
) -> None:
    altered = insurance_bytes.replace(b"southwest", b"SOUTHWEST", 1)
    server.routes["/insurance.csv"] = altered
    url = server.url("/insurance.csv")
    monkeypatch.setattr(data, "INSURANCE_URL", url)
    actual = hashlib.sha256(altered).hexdigest()
    cached = isolated / "insurance.csv"

    with pytest.raises(SweepError) as info:
        fetch_insurance()
    assert str(info.value) == (
        f"the insurance dataset downloaded from {url} has sha256 {actual}, expected "
        f"{INSURANCE_SHA256}; put a copy at {cached} or set "
        f"SWEEP_INSURANCE_CSV=/path/to/insurance.csv"
    )
    assert list(isolated.iterdir()) == [], "neither the file nor its temp file may remain"


def test_corrupt_cache_is_downloaded_again(
    server: Server, monkeypatch: pytest.MonkeyPatch, isolated: Path, insurance_bytes: bytes
) -> None:
    isolated.mkdir(parents=True)
    (isolated / "insurance.csv").write_bytes(insurance_bytes[:1000])  # a truncated download
    server.routes["/insurance.csv"] = insurance_bytes
    monkeypatch.setattr(data, "INSURANCE_URL", server.url("/insurance.csv"))

    path = fetch_insurance()
    assert path.read_bytes() == insurance_bytes
    assert server.requests == ["/insurance.csv"]
    assert sorted(p.name for p in isolated.iterdir()) == ["insurance.csv"]


def test_offline_without_copy_says_where_to_put_it(isolated: Path) -> None:
    url = data.INSURANCE_URL  # the autouse fixture points it at a closed port
    with pytest.raises(SweepError) as info:
        load_dataset("insurance", "charges")
    message = str(info.value)
    assert message == (
        f"cannot download the insurance dataset from {url} (Connection refused); put a copy at "
        f"{isolated / 'insurance.csv'} or set SWEEP_INSURANCE_CSV=/path/to/insurance.csv"
    )
    assert "\n" not in message
    assert [p.name for p in isolated.iterdir()] == []


def test_download_timeout(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    # A listener that never accepts: the connection is queued, the response never comes.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/insurance.csv"
        monkeypatch.setattr(data, "INSURANCE_URL", url)
        with pytest.raises(SweepError) as info:
            fetch_insurance(timeout=0.2)
    assert str(info.value) == (
        f"cannot download the insurance dataset from {url} (no response within 0.2s); put a "
        f"copy at {isolated / 'insurance.csv'} or set SWEEP_INSURANCE_CSV=/path/to/insurance.csv"
    )


def test_env_copy_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "insurance.csv"
    monkeypatch.setenv(data.INSURANCE_ENV, str(missing))
    with pytest.raises(SweepError) as info:
        load_dataset("insurance", "charges")
    assert str(info.value) == (
        f"SWEEP_INSURANCE_CSV={missing} does not exist or is not a file; point it at a copy of "
        f"insurance.csv or unset it to download the dataset"
    )


def test_env_copy_wrong_checksum(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    wrong = tmp_path / "insurance.csv"
    wrong.write_bytes(b"age,charges\n1,2\n")
    monkeypatch.setenv(data.INSURANCE_ENV, str(wrong))
    actual = hashlib.sha256(wrong.read_bytes()).hexdigest()
    with pytest.raises(SweepError) as info:
        fetch_insurance()
    assert str(info.value) == (
        f"SWEEP_INSURANCE_CSV={wrong} has sha256 {actual}, expected {INSURANCE_SHA256}; "
        f"point it at an unmodified copy of insurance.csv or unset it to download one"
    )


# --------------------------------------------------------------------------------------------
# Any URL
# --------------------------------------------------------------------------------------------


def test_load_from_url_and_cache_hit(server: Server, isolated: Path) -> None:
    body = b"x,y\n1,2.5\n2,3.5\n3,1.0\n"
    server.routes["/x.csv"] = body
    url = server.url("/x.csv")

    dataset = load_dataset(url, "y")
    assert dataset.name == "x"
    assert dataset.source == url
    assert dataset.sha256 == hashlib.sha256(body).hexdigest()
    assert dataset.frame.shape == (3, 2)
    assert server.requests == ["/x.csv"]

    again = load_dataset(url, "y")
    assert again.sha256 == dataset.sha256
    assert server.requests == ["/x.csv"], "a cache hit must not touch the network"
    (cached,) = isolated.iterdir()
    assert cached.name.endswith("-x.csv")
    assert fetch_url(url) == cached.resolve()


def test_urls_with_same_basename_do_not_collide(server: Server) -> None:
    server.routes["/a/data.csv"] = b"x,y\n1,1\n2,2\n"
    server.routes["/b/data.csv"] = b"x,y\n1,5\n2,6\n3,7\n"
    first = fetch_url(server.url("/a/data.csv"))
    second = fetch_url(server.url("/b/data.csv"))
    assert first != second
    assert first.read_bytes() != second.read_bytes()


def test_url_http_error(server: Server, isolated: Path) -> None:
    url = server.url("/missing.csv")
    with pytest.raises(SweepError) as info:
        load_dataset(url, "y")
    assert str(info.value) == (
        f"cannot download {url} (HTTP 404 Not Found); check the URL and the network, or download "
        f"the file yourself and pass its path as data"
    )
    assert list(isolated.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Bad input: one exact message per problem
# --------------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"

BAD_INPUTS: list[tuple[str, bytes | None, str, str]] = [
    # (id, file content or None for no file, target, expected message with {path})
    ("missing-file", None, "y", "data file not found: {path}; " + DATA_FORMS),
    (
        "empty",
        b"",
        "y",
        "data file {path} is empty; data needs a CSV with a header row and at least one row",
    ),
    (
        "blank-lines-only",
        b"\n\n  \n",
        "y",
        "data file {path} is empty; data needs a CSV with a header row and at least one row",
    ),
    (
        "header-only",
        b"a,b,y\n",
        "y",
        "data file {path} has a header but no rows; add rows or point data at another CSV",
    ),
    (
        "png",
        PNG,
        "y",
        "data file {path} is not a CSV (it contains NUL bytes: binary data or UTF-16 text); "
        + CSV_FORM,
    ),
    (
        "random-binary",
        random.Random(0).randbytes(2048),
        "y",
        "data file {path} is not a CSV (it contains NUL bytes: binary data or UTF-16 text); "
        + CSV_FORM,
    ),
    (
        "not-utf8",
        "a,y\nZürich,1\nGenève,2\n".encode("latin-1"),
        "y",
        "data file {path} is not a CSV (it is not UTF-8 text); " + CSV_FORM,
    ),
    (
        "ragged-rows",
        b"a,y\n1,2\n3,4,5,6\n",
        "y",
        "data file {path} is not a CSV (Expected 2 fields in line 3, saw 4); " + CSV_FORM,
    ),
    (
        "prose",
        b"Dear reader\nthis is not a table\nat all\n",
        "y",
        "data file {path} is not a CSV (it has a single column; is it comma-separated?); "
        + CSV_FORM,
    ),
    (
        "semicolons",
        b"a;b;y\n1;2;3\n4;5;6\n",
        "y",
        "data file {path} is not a CSV (it has a single column; is it comma-separated?); "
        + CSV_FORM,
    ),
    (
        "target-missing",
        b"age,bmi,cost\n1,2,3\n4,5,6\n",
        "charges",
        "target column 'charges' not in {path}; its columns are 'age', 'bmi', 'cost'; "
        "set target to one of them",
    ),
    (
        "target-not-numeric",
        b"a,y\n1,2.5\n2,abc\n3,4\n",
        "y",
        "target column 'y' in {path} is not numeric (e.g. 'abc'); "
        "the target must be a number in every row",
    ),
    (
        "target-boolean",
        b"a,y\n1,True\n2,False\n3,True\n",
        "y",
        "target column 'y' in {path} is not numeric (e.g. 'True'); "
        "the target must be a number in every row",
    ),
    (
        "target-missing-values",
        b"a,y\n1,2\n2,\n3,\n4,5\n",
        "y",
        "target column 'y' in {path}: 2 rows have no value; fill them in or drop those rows",
    ),
    (
        "target-one-missing-value",
        b"a,y\n1,2\n2,\n4,5\n",
        "y",
        "target column 'y' in {path}: 1 row has no value; fill them in or drop those rows",
    ),
    (
        "target-constant",
        b"a,y\n1,5\n2,5\n3,5\n",
        "y",
        "target column 'y' in {path} is constant (every row is 5.0); there is nothing to learn, "
        "pick another target",
    ),
    (
        "no-features",
        b"y\n1\n2\n3\n",
        "y",
        "data file {path} has no feature columns, only the target 'y'; "
        "add feature columns or pick another target",
    ),
]


@pytest.mark.parametrize(
    ("content", "target", "expected"),
    [row[1:] for row in BAD_INPUTS],
    ids=[row[0] for row in BAD_INPUTS],
)
def test_bad_input(tmp_path: Path, content: bytes | None, target: str, expected: str) -> None:
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SweepError) as info:
        load_dataset(str(path), target)
    message = str(info.value)
    assert message == expected.format(path=path)
    assert "\n" not in message
    # No chained pandas/OS exception: the one line is the whole story.
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(SweepError) as info:
        load_dataset(str(tmp_path), "y")
    assert str(info.value) == f"data path {tmp_path} is not a file; {DATA_FORMS}"


def test_many_columns_are_listed_briefly(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    names = [f"c{i}" for i in range(25)]
    path.write_text(",".join(names) + "\n" + ",".join("1" * 25) + "\n")
    with pytest.raises(SweepError) as info:
        load_dataset(str(path), "y")
    listed = ", ".join(repr(n) for n in names[:20])
    assert str(info.value) == (
        f"target column 'y' not in {path}; its columns are {listed} and 5 more; "
        f"set target to one of them"
    )


def test_feature_nans_are_kept_and_int_target_is_float(tmp_path: Path) -> None:
    path = tmp_path / "holes.csv"
    path.write_text("a,b,flag,y\n1,x,True,10\n,y,False,20\n3,,True,30\n4,x,,40\n")
    dataset = load_dataset(str(path), "y")
    assert dataset.name == "holes"
    assert dataset.source == str(path.resolve())
    assert dataset.frame["y"].dtype == np.int64  # as read
    assert dataset.labels.dtype == np.float64
    assert dataset.labels.tolist() == [10.0, 20.0, 30.0, 40.0]
    assert dataset.features.isna().sum().to_dict() == {"a": 1, "b": 1, "flag": 1}
    assert dataset.numeric_columns == ["a"]
    assert dataset.categorical_columns == ["b", "flag"]  # a bool column with a hole is object


def test_relative_path_and_bom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbfa,y\n1,2\n2,3\n")
    monkeypatch.chdir(tmp_path)
    dataset = load_dataset("excel.csv", "y")
    assert list(dataset.frame.columns) == ["a", "y"]
    assert dataset.source == str((tmp_path / "excel.csv").resolve())


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------


def _numbered(tmp_path: Path, n_rows: int) -> Dataset:
    """A dataset whose ``id`` feature names each row, so rows can be traced through a split."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": np.arange(n_rows),
            "kind": rng.choice(["a", "b"], n_rows),
            "y": rng.normal(size=n_rows),
        }
    )
    path = tmp_path / f"numbered{n_rows}.csv"
    frame.to_csv(path, index=False)
    return load_dataset(str(path), "y")


@pytest.mark.parametrize(
    ("n_rows", "test_size", "cv_folds", "n_train", "n_test"),
    [(100, 0.2, 5, 80, 20), (101, 0.2, 5, 80, 21), (1338, 0.2, 5, 1070, 268), (13, 0.2, 5, 10, 3)],
)
def test_split_sizes_and_folds_partition_train(
    tmp_path: Path, n_rows: int, test_size: float, cv_folds: int, n_train: int, n_test: int
) -> None:
    dataset = _numbered(tmp_path, n_rows)
    split = split_dataset(dataset, test_size=test_size, seed=7, cv_folds=cv_folds)
    assert (len(split.X_train), len(split.y_train)) == (n_train, n_train)
    assert (len(split.X_test), len(split.y_test)) == (n_test, n_test)
    assert list(split.X_train.columns) == ["id", "kind"]
    assert split.X_train.index.tolist() == list(range(n_train))
    assert split.X_test.index.tolist() == list(range(n_test))
    assert split.y_train.dtype == np.float64

    train_ids, test_ids = set(split.X_train["id"]), set(split.X_test["id"])
    assert not train_ids & test_ids, "test rows must be held out of tuning"
    assert train_ids | test_ids == set(range(n_rows))

    assert len(split.folds) == cv_folds
    valid = np.concatenate([va for _, va in split.folds])
    assert sorted(valid.tolist()) == list(range(n_train)), "validation folds partition X_train"
    for train_idx, valid_idx in split.folds:
        assert len(valid_idx) >= 2
        assert sorted(np.concatenate([train_idx, valid_idx]).tolist()) == list(range(n_train))
        assert not train_idx.flags.writeable


def test_split_is_deterministic_per_seed(tmp_path: Path) -> None:
    dataset = _numbered(tmp_path, 60)
    a = split_dataset(dataset, test_size=0.25, seed=3, cv_folds=3)
    b = split_dataset(dataset, test_size=0.25, seed=3, cv_folds=3)
    c = split_dataset(dataset, test_size=0.25, seed=4, cv_folds=3)
    pd.testing.assert_frame_equal(a.X_train, b.X_train)
    pd.testing.assert_series_equal(a.y_test, b.y_test)
    for (tr_a, va_a), (tr_b, va_b) in zip(a.folds, b.folds, strict=True):
        np.testing.assert_array_equal(tr_a, tr_b)
        np.testing.assert_array_equal(va_a, va_b)
    assert set(a.X_test["id"]) != set(c.X_test["id"])
    assert not all(
        np.array_equal(va_a, va_c) for (_, va_a), (_, va_c) in zip(a.folds, c.folds, strict=True)
    )


def test_split_of_insurance(monkeypatch: pytest.MonkeyPatch, insurance_bytes: bytes) -> None:
    monkeypatch.setenv(data.INSURANCE_ENV, str(SHARED_INSURANCE))
    split = split_dataset(load_dataset("insurance", "charges"), test_size=0.2, seed=42, cv_folds=5)
    assert split.X_train.shape == (1070, 6)
    assert split.X_test.shape == (268, 6)
    assert [len(va) for _, va in split.folds] == [214] * 5


@pytest.mark.parametrize(
    ("n_rows", "test_size", "cv_folds", "needed"),
    [
        (12, 0.2, 5, 13),  # 13 rows -> 3 test + 10 train = 2 per fold
        (5, 0.2, 2, 6),  # 6 rows -> 2 test + 4 train
        (30, 0.01, 2, 101),  # the test part needs ceil(0.01 * n) >= 2
        (20, 0.9, 2, 40),  # 40 rows -> 36 test + 4 train
    ],
)
def test_too_few_rows(
    tmp_path: Path, n_rows: int, test_size: float, cv_folds: int, needed: int
) -> None:
    assert min_rows_for_split(test_size, cv_folds) == needed
    check_split_feasible(needed, test_size, cv_folds)  # the bound is tight: this passes ...
    with pytest.raises(SweepError):
        check_split_feasible(needed - 1, test_size, cv_folds)  # ... and one fewer does not
    with pytest.raises(SweepError) as info:
        split_dataset(_numbered(tmp_path, n_rows), test_size=test_size, seed=0, cv_folds=cv_folds)
    assert str(info.value) == (
        f"too few rows: test_size={test_size} and cv_folds={cv_folds} need at least {needed} rows "
        f"(2 test rows and 2 validation rows per fold), but the data has {n_rows}; "
        f"add rows or lower cv_folds"
    )
    smallest = _numbered(tmp_path, needed)
    split = split_dataset(smallest, test_size=test_size, seed=0, cv_folds=cv_folds)
    assert len(split.X_test) >= 2
    assert min(len(va) for _, va in split.folds) >= 2


@pytest.mark.parametrize(
    ("test_size", "cv_folds", "expected"),
    [
        (0.0, 5, "test_size must be a number between 0 and 1 (exclusive), got 0.0"),
        (1.0, 5, "test_size must be a number between 0 and 1 (exclusive), got 1.0"),
        (True, 5, "test_size must be a number between 0 and 1 (exclusive), got True"),
        (0.2, 1, "cv_folds must be an integer of at least 2, got 1"),
        (0.2, 2.5, "cv_folds must be an integer of at least 2, got 2.5"),
    ],
)
def test_invalid_split_arguments(
    tmp_path: Path, test_size: float, cv_folds: int, expected: str
) -> None:
    with pytest.raises(SweepError) as info:
        split_dataset(_numbered(tmp_path, 50), test_size=test_size, seed=0, cv_folds=cv_folds)
    assert str(info.value) == expected


@pytest.mark.parametrize(
    ("cache_env", "xdg", "home", "expected"),
    [
        ("/c", "/xdg", "/home/u", "/c"),
        (None, "/xdg", "/home/u", "/xdg/mlflow-optuna-sweep"),
        (None, None, "/home/u", "/home/u/.cache/mlflow-optuna-sweep"),
    ],
)
def test_cache_dir_precedence(
    monkeypatch: pytest.MonkeyPatch,
    cache_env: str | None,
    xdg: str | None,
    home: str,
    expected: str,
) -> None:
    for name, value in ((data.CACHE_ENV, cache_env), ("XDG_CACHE_HOME", xdg), ("HOME", home)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert data.cache_dir() == Path(expected)
