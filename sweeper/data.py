"""Loading, validating and splitting the tabular regression data.

``data`` is one of three things: the name ``insurance`` (the default Medical Cost dataset, read
from ``$SWEEP_INSURANCE_CSV`` or downloaded once into a cache and checksum-verified), a local
CSV path, or an http(s) URL of a CSV (downloaded once into the same cache). Every problem with
the data is a :class:`~sweeper.errors.SweepError` whose one-line message names the problem and
the way out, raised here so that no study starts on data that cannot be tuned on.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, train_test_split

from sweeper.errors import SweepError

__all__ = [
    "CACHE_ENV",
    "INSURANCE_ENV",
    "INSURANCE_NAME",
    "INSURANCE_SHA256",
    "INSURANCE_URL",
    "Dataset",
    "Split",
    "cache_dir",
    "check_split_feasible",
    "fetch_insurance",
    "fetch_url",
    "load_dataset",
    "min_rows_for_split",
    "split_dataset",
]

INSURANCE_NAME = "insurance"
INSURANCE_URL: str = (
    "https://raw.githubusercontent.com/stedy/Machine-Learning-with-R-datasets/master/insurance.csv"
)
INSURANCE_SHA256: str = "505c1cbc2e63d0363bac59501563df2530aadf4cdb9cfee226f4ef32f5468281"
INSURANCE_ENV = "SWEEP_INSURANCE_CSV"
CACHE_ENV = "SWEEP_CACHE_DIR"

_CACHE_SUBDIR = "mlflow-optuna-sweep"
_INSURANCE_FILE = "insurance.csv"
_CHUNK = 1 << 16
_DATA_FORMS = "data accepts a CSV path, an http(s) URL or 'insurance'"
_CSV_FORM = "data accepts a comma-separated UTF-8 text file with a header row"
# Both the held-out test part and every validation fold need two rows: R^2 (and any variance
# based score) is undefined on a single row, so a trial scored on one would be noise or NaN.
_MIN_TEST_ROWS = 2
_MIN_VALID_ROWS = 2
_MAX_LISTED_COLUMNS = 20


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


# eq=False: the generated __eq__ would compare DataFrames, whose truth value is ambiguous.
@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated regression dataset: every row, the target column and where it came from.

    Attributes:
        name: ``"insurance"`` for the default dataset, else the stem of the file or URL basename.
        source: The absolute path or the URL the data was read from.
        frame: All rows, features and target, as pandas read them (feature NaNs preserved).
        target: The name of the target column: numeric, no missing values, not constant.
        sha256: Hex sha256 of the raw bytes.
    """

    name: str
    source: str
    frame: pd.DataFrame
    target: str
    sha256: str

    @property
    def features(self) -> pd.DataFrame:
        """Every column but the target, in file order."""
        return self.frame.drop(columns=[self.target])

    @property
    def labels(self) -> pd.Series:
        """The target as float64 (an integer target is fine, models want floats)."""
        return self.frame[self.target].astype("float64")

    @property
    def numeric_columns(self) -> list[str]:
        """Feature columns with a numeric or boolean dtype, in file order."""
        return [c for c in self.features.columns if _is_numeric(self.frame[c])]

    @property
    def categorical_columns(self) -> list[str]:
        """Every other feature column (object, string or category dtype), in file order."""
        return [c for c in self.features.columns if not _is_numeric(self.frame[c])]


def _is_numeric(column: pd.Series) -> bool:
    # is_numeric_dtype counts bool as numeric, which is what the pipelines want (0/1 features).
    return bool(pd.api.types.is_numeric_dtype(column.dtype))


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The download cache: ``$SWEEP_CACHE_DIR``, else ``$XDG_CACHE_HOME`` or ``~/.cache``.

    The directory is not created here; downloads create it when they need it.
    """
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / _CACHE_SUBDIR


def fetch_insurance(*, timeout: float = 30.0, url: str | None = None) -> Path:
    """Return a local, checksum-verified copy of the insurance dataset.

    In order: ``$SWEEP_INSURANCE_CSV`` if set (a wrong checksum there is an error, never
    silently replaced by a download); else the cached copy if its checksum is right; else a
    fresh download into the cache, verified before it is moved into place.

    Args:
        timeout: Seconds to wait on the network before giving up.
        url: Where to download from; defaults to the module's ``INSURANCE_URL`` (read at call
            time, so tests and mirrors can replace it).

    Raises:
        SweepError: The local copy is missing or altered, or the download failed or was altered.
    """
    url = INSURANCE_URL if url is None else url
    local = os.environ.get(INSURANCE_ENV)
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise SweepError(
                f"{INSURANCE_ENV}={local} does not exist or is not a file; point it at a copy of "
                f"insurance.csv or unset it to download the dataset"
            )
        actual = _sha256_file(path)
        if actual != INSURANCE_SHA256:
            raise SweepError(
                f"{INSURANCE_ENV}={local} has sha256 {actual}, expected {INSURANCE_SHA256}; "
                f"point it at an unmodified copy of insurance.csv or unset it to download one"
            )
        return path.resolve()

    directory = cache_dir()
    cached = directory / _INSURANCE_FILE
    # A cached file with the wrong checksum (truncated, edited, another file) is not trusted:
    # it is downloaded again and replaced.
    if cached.is_file() and _sha256_file(cached) == INSURANCE_SHA256:
        return cached.resolve()

    way_out = f"put a copy at {cached} or set {INSURANCE_ENV}=/path/to/insurance.csv"
    _make_cache_dir(directory)
    try:
        _download(url, cached, timeout=timeout, expected_sha256=INSURANCE_SHA256)
    except _DownloadError as exc:
        raise SweepError(
            f"cannot download the insurance dataset from {url} ({exc.reason}); {way_out}"
        ) from None
    except _ChecksumError as exc:
        raise SweepError(
            f"the insurance dataset downloaded from {url} has sha256 {exc.actual}, expected "
            f"{INSURANCE_SHA256}; {way_out}"
        ) from None
    return cached.resolve()


def fetch_url(url: str, *, timeout: float = 30.0) -> Path:
    """Download an http(s) CSV into the cache once and return its local path.

    The cache name is a hash of the full URL plus its basename, so two URLs never share a file
    and the file stays recognisable; a cached file is reused without any network request.

    Raises:
        SweepError: The URL is not http(s) or the download failed.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme.lower() not in ("http", "https") or not parsed.netloc:
        raise SweepError(f"not an http(s) URL: {url}; {_DATA_FORMS}")
    directory = cache_dir()
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    cached = directory / f"{digest}-{_safe_basename(url)}"
    if cached.is_file():
        return cached.resolve()
    _make_cache_dir(directory)
    try:
        _download(url, cached, timeout=timeout, expected_sha256=None)
    except _DownloadError as exc:
        raise SweepError(
            f"cannot download {url} ({exc.reason}); check the URL and the network, or download "
            f"the file yourself and pass its path as data"
        ) from None
    return cached.resolve()


class _DownloadError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _ChecksumError(Exception):
    def __init__(self, actual: str) -> None:
        super().__init__(actual)
        self.actual = actual


def _download(url: str, dest: Path, *, timeout: float, expected_sha256: str | None) -> None:
    """Stream ``url`` to a temp file next to ``dest``, verify it, then rename it into place.

    The temp file lives in the destination directory so that ``os.replace`` is an atomic rename:
    an interrupted or altered download never leaves a file under the final name.
    """
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                    while chunk := response.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, HTTPException, OSError, ValueError) as exc:
                raise _DownloadError(_reason(exc, timeout)) from None
        actual = digest.hexdigest()
        if expected_sha256 is not None and actual != expected_sha256:
            raise _ChecksumError(actual)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _reason(exc: BaseException, timeout: float) -> str:
    """A short one-line reason for a failed download (no errno numbers, no tracebacks)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        inner = exc.reason
        return _reason(inner, timeout) if isinstance(inner, BaseException) else _one_line(inner)
    if isinstance(exc, TimeoutError):
        return f"no response within {timeout:g}s"
    if isinstance(exc, OSError) and exc.strerror:
        return _one_line(exc.strerror)
    return _one_line(str(exc)) or type(exc).__name__


def _make_cache_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(
            f"cannot create the cache directory {directory} ({_reason(exc, 0)}); "
            f"set {CACHE_ENV} to a writable directory"
        ) from None


def _safe_basename(url: str) -> str:
    base = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    return base or "data.csv"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------


def load_dataset(data: str, target: str, *, timeout: float = 30.0) -> Dataset:
    """Load and validate a regression dataset.

    Args:
        data: ``"insurance"`` (the default dataset), a local CSV path, or an http(s) URL.
        target: The column to predict; it must be numeric, complete and not constant.
        timeout: Seconds to wait on the network when a download is needed.

    Missing values in feature columns are kept: the model pipelines impute them.

    Raises:
        SweepError: The data cannot be found, fetched, parsed, or is unusable for regression.
    """
    if data == INSURANCE_NAME:
        path = fetch_insurance(timeout=timeout)
        name, source = INSURANCE_NAME, str(path)
    elif urllib.parse.urlsplit(data).scheme.lower() in ("http", "https"):
        path = fetch_url(data, timeout=timeout)
        name, source = _stem(_safe_basename(data)), data
    else:
        path = Path(data).expanduser()
        if not path.exists():
            raise SweepError(f"data file not found: {data}; {_DATA_FORMS}")
        if not path.is_file():
            raise SweepError(f"data path {data} is not a file; {_DATA_FORMS}")
        path = path.resolve()
        name, source = path.stem, str(path)

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SweepError(
            f"cannot read data file {source} ({_reason(exc, timeout)}); make it readable or "
            f"point data at another file"
        ) from None
    frame = _parse_csv(raw, source=source, target=target)
    _validate(frame, source=source, target=target)
    return Dataset(
        name=name,
        source=source,
        frame=frame,
        target=target,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _stem(basename: str) -> str:
    return Path(basename).stem or "data"


def _parse_csv(raw: bytes, *, source: str, target: str) -> pd.DataFrame:
    def not_csv(reason: str) -> SweepError:
        return SweepError(f"data file {source} is not a CSV ({reason}); {_CSV_FORM}")

    if not raw.strip():
        raise SweepError(
            f"data file {source} is empty; data needs a CSV with a header row and at least one row"
        )
    # NUL never occurs in UTF-8 text; checking first keeps pandas from guessing at binaries.
    if b"\x00" in raw:
        raise not_csv("it contains NUL bytes: binary data or UTF-16 text")
    try:
        text = raw.decode("utf-8-sig")  # -sig: drop the BOM some spreadsheet exports add
    except UnicodeDecodeError:
        raise not_csv("it is not UTF-8 text") from None
    try:
        frame = pd.read_csv(io.StringIO(text))
    except pd.errors.EmptyDataError:
        raise SweepError(
            f"data file {source} is empty; data needs a CSV with a header row and at least one row"
        ) from None
    except pd.errors.ParserError as exc:
        message = _one_line(exc).removeprefix("Error tokenizing data. C error: ")
        raise not_csv(message) from None
    if len(frame) == 0:
        raise SweepError(
            f"data file {source} has a header but no rows; add rows or point data at another CSV"
        )
    # One column that is not the target almost always means another delimiter (';', tab) or
    # prose; "target not found" with a garbled column name would hide that.
    if frame.shape[1] == 1 and frame.columns[0] != target:
        raise not_csv("it has a single column; is it comma-separated?")
    return frame


def _validate(frame: pd.DataFrame, *, source: str, target: str) -> None:
    columns = [str(c) for c in frame.columns]
    if target not in frame.columns:
        listed = ", ".join(repr(c) for c in columns[:_MAX_LISTED_COLUMNS])
        if len(columns) > _MAX_LISTED_COLUMNS:
            listed += f" and {len(columns) - _MAX_LISTED_COLUMNS} more"
        raise SweepError(
            f"target column {target!r} not in {source}; its columns are {listed}; "
            f"set target to one of them"
        )
    if frame.shape[1] == 1:
        raise SweepError(
            f"data file {source} has no feature columns, only the target {target!r}; "
            f"add feature columns or pick another target"
        )

    column = frame[target]
    # Booleans are numeric to pandas but not a regression target.
    if pd.api.types.is_bool_dtype(column.dtype) or not pd.api.types.is_numeric_dtype(
        column.dtype
    ):
        present = column.dropna()
        if pd.api.types.is_bool_dtype(column.dtype):
            bad = present
        else:
            bad = present[pd.to_numeric(present, errors="coerce").isna()]
        # An all-empty column is read as float, so `present` here is never empty.
        example = str(bad.iloc[0] if len(bad) else present.iloc[0])
        raise SweepError(
            f"target column {target!r} in {source} is not numeric (e.g. {example!r}); "
            f"the target must be a number in every row"
        )
    missing = int(column.isna().sum())
    if missing:
        rows = "row has" if missing == 1 else "rows have"
        raise SweepError(
            f"target column {target!r} in {source}: {missing} {rows} no value; "
            f"fill them in or drop those rows"
        )
    if len(column) >= 2 and column.nunique() == 1:
        raise SweepError(
            f"target column {target!r} in {source} is constant (every row is "
            f"{float(column.iloc[0])!r}); there is nothing to learn, pick another target"
        )


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Split:
    """The held-out test part and the cross-validation folds every trial is scored on.

    Attributes:
        X_train, y_train: The tuning part, index reset to ``0..n-1``.
        X_test, y_test: The held-out part, never seen while tuning; index reset.
        folds: ``(train_idx, valid_idx)`` positional indices into ``X_train`` from a shuffled
            ``KFold`` seeded once, so every trial of every family is scored on the same folds.
            The arrays are read-only.
    """

    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    folds: tuple[tuple[np.ndarray, np.ndarray], ...]


def _split_sizes(n_rows: int, test_size: float) -> tuple[int, int]:
    # Same arithmetic as sklearn's train_test_split for a float test_size.
    n_test = math.ceil(test_size * n_rows)
    return n_rows - n_test, n_test


def _check_split_args(test_size: float, cv_folds: int) -> None:
    if (
        isinstance(test_size, bool)
        or not isinstance(test_size, (int, float))
        or not 0.0 < test_size < 1.0
    ):
        raise SweepError(
            f"test_size must be a number between 0 and 1 (exclusive), got {test_size!r}"
        )
    if isinstance(cv_folds, bool) or not isinstance(cv_folds, (int, np.integer)) or cv_folds < 2:
        raise SweepError(f"cv_folds must be an integer of at least 2, got {cv_folds!r}")


def min_rows_for_split(test_size: float, cv_folds: int) -> int:
    """The fewest rows that leave 2 test rows and 2 validation rows in each of ``cv_folds``."""
    _check_split_args(test_size, cv_folds)
    # The test part needs ceil(t * n) >= 2, i.e. n > 1 / t; start just below both bounds (float
    # rounding) and walk up: n_train and n_test never decrease as n grows.
    n = max(1, _MIN_VALID_ROWS * cv_folds, math.floor(1.0 / test_size)) - 1
    while True:
        n += 1
        n_train, n_test = _split_sizes(n, test_size)
        if n_test >= _MIN_TEST_ROWS and n_train >= _MIN_VALID_ROWS * cv_folds:
            return n


def check_split_feasible(n_rows: int, test_size: float, cv_folds: int) -> None:
    """Raise unless ``n_rows`` leaves 2 test rows and 2 validation rows in each CV fold.

    Raises:
        SweepError: Too few rows, or an invalid ``test_size``/``cv_folds``.
    """
    needed = min_rows_for_split(test_size, cv_folds)
    n_train, n_test = _split_sizes(n_rows, test_size)
    if n_test < _MIN_TEST_ROWS or n_train < _MIN_VALID_ROWS * cv_folds:
        raise SweepError(
            f"too few rows: test_size={test_size} and cv_folds={cv_folds} need at least {needed} "
            f"rows (2 test rows and 2 validation rows per fold), but the data has {n_rows}; "
            f"add rows or lower cv_folds"
        )


def split_dataset(dataset: Dataset, *, test_size: float, seed: int, cv_folds: int) -> Split:
    """Hold out a test part, then fix the CV folds on the rest.

    Both use ``seed``, so the same data, seed and sizes give the same split on every run.

    Raises:
        SweepError: The data is too small for ``test_size`` and ``cv_folds``, or they are invalid.
    """
    check_split_feasible(len(dataset.frame), test_size, cv_folds)
    X_train, X_test, y_train, y_test = train_test_split(
        dataset.features,
        dataset.labels,
        test_size=test_size,
        random_state=seed,
        shuffle=True,
    )
    X_train = X_train.reset_index(drop=True)
    y_train = y_train.reset_index(drop=True)
    kfold = KFold(n_splits=int(cv_folds), shuffle=True, random_state=seed)
    folds = tuple((_frozen(tr), _frozen(va)) for tr, va in kfold.split(X_train))
    return Split(
        X_train=X_train,
        X_test=X_test.reset_index(drop=True),
        y_train=y_train,
        y_test=y_test.reset_index(drop=True),
        folds=folds,
    )


def _frozen(indices: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(indices, dtype=np.intp)
    array.setflags(write=False)
    return array
