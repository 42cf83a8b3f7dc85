"""The served champion and bad requests: the real `mlflow models serve` on a tiny real sweep.

A bad request gets a 4xx with a message that says what is wrong, and never breaks the server:
the good request still gets 200 right after each bad one. The status codes and message
snippets pinned here are MLflow's (3.17) scoring server's; the README's "What the served model
accepts" section describes the same behaviour.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import ROOT, serve_model, subprocess_env

pytestmark = pytest.mark.e2e

MODEL_NAME = "insurance-charges"
COLUMNS = ["age", "sex", "bmi", "children", "smoker", "region"]
ROW = [20, "male", 23.3, 2, "yes", "northeast"]
GOOD = {"dataframe_split": {"columns": COLUMNS, "data": [ROW]}}
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Served:
    url: str
    uri: str

    def post(self, body: Any, *, raw: bool = False) -> requests.Response:
        data = body if raw else json.dumps(body)
        return requests.post(f"{self.url}/invocations", data=data, headers=JSON, timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, insurance_csv: Path) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, str(ROOT / "sweep.py"), "--n_trials", "2",
         "--families", "elastic_net,hist_gradient_boosting", "--sweep_name", "serving",
         "--storage", str(tmp / "optuna.journal"), "--model_name", MODEL_NAME],
        cwd=tmp,
        env=subprocess_env(MLFLOW_TRACKING_URI=uri, SWEEP_INSURANCE_CSV=str(insurance_csv),
                           SWEEP_CACHE_DIR=str(tmp / "cache")),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        pytest.fail(f"the sweep failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    with serve_model(f"models:/{MODEL_NAME}@champion", uri, tmp / "serve.log") as url:
        yield Served(url, uri)


def _row(**changes: Any) -> list[Any]:
    return [changes.get(column, value) for column, value in zip(COLUMNS, ROW)]


def _split(columns: list[str], *rows: list[Any]) -> dict[str, Any]:
    return {"dataframe_split": {"columns": columns, "data": list(rows)}}


def _prediction(response: requests.Response) -> float:
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    return float(prediction)


def test_good_request_in_both_dataframe_formats(served: Served) -> None:
    split = _prediction(served.post(GOOD))
    records = _prediction(served.post({"dataframe_records": [dict(zip(COLUMNS, ROW))]}))
    assert records == split
    assert 1000 < split < 70000


BAD_REQUESTS = [
    pytest.param(
        _split(COLUMNS[:4] + COLUMNS[5:], _row()[:4] + _row()[5:]),
        False,
        400,
        ["Model is missing inputs ['smoker']"],
        id="missing-column",
    ),
    pytest.param(
        {"dataframe_records": [{c: v for c, v in zip(COLUMNS, ROW) if c != "bmi"}]},
        False,
        400,
        ["Model is missing inputs ['bmi']"],
        id="missing-key-in-records",
    ),
    pytest.param(
        _split(COLUMNS, _row(age="old")),
        False,
        400,
        ["Failed to convert column age to type 'int64'",
         "invalid literal for int() with base 10: 'old'"],
        id="string-for-long",
    ),
    pytest.param(
        _split(COLUMNS, _row(bmi="fat")),
        False,
        400,
        ["Failed to convert column bmi to type 'float64'", "could not convert string to float"],
        id="string-for-double",
    ),
    pytest.param(
        _split(COLUMNS, _row(age=None)),
        False,
        400,
        ["Failed to convert column age to type 'int64'", "not 'NoneType'"],
        id="null-in-long",
    ),
    pytest.param(
        _split(COLUMNS, _row(), _row(children=None)),
        False,
        400,
        ["Failed to convert column children to type 'int64'",
         "Cannot convert non-finite values (NA or inf) to integer"],
        id="null-in-long-among-rows",
    ),
    pytest.param(
        '{"dataframe_split": {',
        True,
        400,
        ["Ensure that input is a valid JSON formatted string", "JSONDecodeError"],
        id="invalid-json",
    ),
    pytest.param(
        "",
        True,
        400,
        ["Ensure that input is a valid JSON formatted string"],
        id="empty-body",
    ),
    pytest.param(
        {"foo": 1},
        False,
        400,
        ["The input must be a JSON dictionary with exactly one of the input fields",
         "dataframe_split", "dataframe_records"],
        id="unknown-format",
    ),
]


@pytest.mark.parametrize(("body", "raw", "status", "snippets"), BAD_REQUESTS)
def test_bad_request_is_a_readable_4xx_and_the_server_keeps_serving(
    served: Served, body: Any, raw: bool, status: int, snippets: list[str]
) -> None:
    response = served.post(body, raw=raw)
    assert response.status_code == status, response.text
    message = response.json()["message"]
    for snippet in snippets:
        assert snippet in message
    assert served.post(GOOD).status_code == 200


def test_wrong_content_type_is_415(served: Served) -> None:
    response = requests.post(
        f"{served.url}/invocations", data=json.dumps(GOOD),
        headers={"Content-Type": "text/plain"}, timeout=30,
    )
    assert response.status_code == 415
    assert "This predictor only supports the following content types" in response.text
    assert served.post(GOOD).status_code == 200


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"bmi": None}, id="null-double-is-imputed"),
        pytest.param({"sex": None}, id="null-string-sex"),
        pytest.param({"smoker": None}, id="null-string-smoker"),
        pytest.param({"region": None}, id="null-string-region"),
        pytest.param({"region": "mars"}, id="unseen-category"),
        pytest.param({"age": 20.5}, id="float-for-long"),
        pytest.param({"age": "20"}, id="numeric-string-for-long"),
        pytest.param({"bmi": 23}, id="int-for-double"),
    ],
)
def test_accepted_with_200(served: Served, changes: dict[str, Any]) -> None:
    assert _prediction(served.post(_split(COLUMNS, _row(**changes)))) > 0


def test_extra_column_is_ignored(served: Served) -> None:
    extra = served.post(_split([*COLUMNS, "zip"], [*ROW, "12345"]))
    assert _prediction(extra) == _prediction(served.post(GOOD))


def test_float_for_long_is_truncated(served: Served) -> None:
    # MLflow converts 20.9 to the schema's int64 without a word: it is scored as age 20.
    assert _prediction(served.post(_split(COLUMNS, _row(age=20.9)))) == _prediction(
        served.post(GOOD)
    )


def test_null_string_is_scored_the_same_alone_or_in_a_batch(served: Served) -> None:
    # A null string alone in its column reaches the pipeline as None, next to a non-null row
    # as NaN: the categorical pipeline imputes both (objectives/_preprocessing.py).
    alone = _prediction(served.post(_split(COLUMNS, _row(smoker=None))))
    batch = served.post(_split(COLUMNS, _row(smoker=None), _row(smoker="no")))
    assert batch.status_code == 200, batch.text
    assert alone == pytest.approx(batch.json()["predictions"][0])


def test_served_predictions_are_the_fitted_pipelines(served: Served) -> None:
    # The server answers through the compiled fast path (sweeper.serving); the sklearn flavor
    # of the same model is the plain fitted pipeline. They agree on ordinary and edge rows.
    import mlflow
    import pandas as pd

    rows = [
        _row(), _row(age=64, smoker="no"), _row(bmi=None), _row(sex=None, region="mars"),
        _row(smoker=None, region=None), _row(sex="other", bmi=50.1, children=5),
    ]
    served_predictions = served.post(_split(COLUMNS, *rows)).json()["predictions"]
    frame = pd.DataFrame(rows, columns=COLUMNS).astype(
        {"age": "int64", "children": "int64", "bmi": "float64"}
    )
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(served.uri)
    mlflow.set_registry_uri(served.uri)
    try:
        expected = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}@champion").predict(frame)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    assert served_predictions == pytest.approx(list(expected), rel=1e-12)
