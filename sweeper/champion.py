"""Champion: the family with the lowest CV RMSE, refit, tested once, logged and registered.

The champion is chosen on cross-validation alone and its test metrics are an honest estimate:
the test split is scored only here (:func:`refit`), for the chosen trial once every study has
finished, or ahead of that for the leading family's best trial (:mod:`sweeper.ahead`), whose
scores stay unread unless that trial is the one chosen.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import sklearn
from mlflow import MlflowClient
from mlflow.models import Model, ModelSignature, infer_signature
from mlflow.models.model import MLMODEL_FILE_NAME, ModelInfo
from sklearn.base import BaseEstimator

from sweeper import serving
from sweeper.errors import SweepError
from sweeper.objective import regression_scores
from sweeper.serving import check_rows
from sweeper.study import FamilyResult
from sweeper.tracking import ROLE_FAMILY, TAG_CHAMPION, TAG_NAME, TAG_ROLE

_logger = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"
#: Model version tag: which study trial a version was refit from.
TAG_VERSION_TRIAL = "sweep.trial_key"
MODEL_NAME_IN_RUN = "model"
#: The name :mod:`sweeper.serving` has in a logged model (its ``loader_module``).
SERVED_MODULE = "sweep_serving"
#: The served model's data directory (under the model's ``data/``).
_DATA_DIR = "model_data"

#: What serving any champion needs, whatever its family.
_BASE_REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "skops")
#: uvicorn's event loop and HTTP parser, with the platforms they install on: ``mlflow models
#: serve`` (uvicorn) uses them when installed (0.5-1 ms less per single-row request, measured
#: side by side outside bench/). Required where this environment has them.
_SERVING_REQUIREMENTS = (("httptools", ""), ("uvloop", '; sys_platform != "win32"'))


def select_champion(results: Sequence[FamilyResult]) -> FamilyResult:
    """The family whose best trial has the lowest CV RMSE (ties: the first family by name).

    Raises :class:`SweepError` naming each family's first error when no family has a
    complete trial.
    """
    candidates = [r for r in results if r.best is not None]
    if not candidates:
        reasons = "; ".join(f"{r.family}: {r.first_error or 'no complete trial'}" for r in results)
        raise SweepError(f"every family failed, so there is no champion ({reasons})")
    return min(candidates, key=lambda r: (r.rmse, r.family))


def mark_champion(client: MlflowClient, experiment_id: str, sweep: str, run_id: str) -> None:
    """Tag ``run_id`` as the sweep's champion and untag every other family run of the sweep."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_NAME}` = '{sweep}' and tags.`{TAG_ROLE}` = '{ROLE_FAMILY}'",
        max_results=1000,
    )
    # Set first, then clear the others: a reader in between sees two champions, never none.
    client.set_tag(run_id, TAG_CHAMPION, "true")
    for run in runs:
        if run.info.run_id != run_id and TAG_CHAMPION in run.data.tags:
            client.delete_tag(run.info.run_id, TAG_CHAMPION)


def pip_requirements(model: BaseEstimator) -> list[str]:
    """Pinned requirements of a fitted model: the base stack plus each estimator's library.

    Explicit, so ``log_model`` does not infer them (slow, and it picks up test packages).
    """
    modules = {type(model).__module__.split(".")[0]}
    for value in model.get_params(deep=True).values():
        if isinstance(value, BaseEstimator):
            modules.add(type(value).__module__.split(".")[0])
    names = list(_BASE_REQUIREMENTS)
    for module in sorted(modules):
        for dist in _distributions(module):
            if dist.lower() not in {n.lower() for n in names}:
                names.append(dist)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in names]
    for name, marker in _SERVING_REQUIREMENTS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}{marker}")
        except importlib.metadata.PackageNotFoundError:
            pass  # served without it, a little slower
    return pins


#: Modules whose distribution is named otherwise (the common case is found without scanning
#: every installed distribution, which takes a quarter of a second).
_DISTRIBUTION_OF_MODULE = {"sklearn": "scikit-learn"}


def _distributions(module: str) -> list[str]:
    name = _DISTRIBUTION_OF_MODULE.get(module, module)
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return list(importlib.metadata.packages_distributions().get(module, []))
    return [name]


class _ServedFlavor:
    """The flavors of the logged champion, for :meth:`mlflow.models.Model.log`.

    ``python_function`` loads :mod:`sweeper.serving` (copied into the model as
    :data:`SERVED_MODULE`) over the skops
    pipeline, so serving takes the compiled fast path; ``sklearn`` points at the same skops
    file, so ``mlflow.sklearn.load_model`` still returns the fitted pipeline.
    """

    __name__ = "python_function"

    def __init__(self, trusted: list[str]) -> None:
        self.trusted = trusted

    def save_model(self, path: str, mlflow_model: Model, **kwargs: Any) -> None:
        # Model.log hands its own options on to the flavor; they are not save_model's.
        kwargs.pop("validate_serving_input", None)
        mlflow.pyfunc.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
        mlflow_model.add_flavor(
            "sklearn",
            pickled_model=f"data/{_DATA_DIR}/{serving.PIPELINE_FILE}",
            sklearn_version=sklearn.__version__,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            code=None,
            skops_trusted_types=self.trusted,
        )
        mlflow_model.save(str(Path(path) / MLMODEL_FILE_NAME))


@dataclasses.dataclass(frozen=True)
class PreparedModel:
    """A fitted champion saved as the served model and checked, ready to be logged: what
    :func:`log_and_register` needs, and nothing that needs the tracking store.

    Preparing is the slow part of logging a model (saving the pipeline, loading it back to
    serve the input example), so the sweep can prepare the leading family's model on a spare
    core while the last families run (:mod:`sweeper.ahead`).
    """

    #: Where the prepared files are: the served model's data and its loader module.
    directory: Path
    #: The types skops must trust to load the pipeline.
    trusted: tuple[str, ...]
    signature: ModelSignature
    requirements: tuple[str, ...]

    @property
    def data_dir(self) -> Path:
        return self.directory / _DATA_DIR

    @property
    def code_path(self) -> Path:
        return self.directory / f"{SERVED_MODULE}.py"


def prepare_model(
    model: BaseEstimator, *, X_train: pd.DataFrame, directory: Path
) -> PreparedModel:
    """Save the fitted pipeline ``model`` in ``directory`` (created) as the served model, and
    check it as MLflow's ``log_model`` would: a complete model saved from these files (with
    the input example, the first rows of ``X_train``) must load and serve its input example.

    A model that cannot serve its example is still prepared, with a warning saying why (as
    ``log_model`` only warns), and logged when it is the champion.
    """
    example = X_train.head(5)
    with warnings.catch_warnings():
        # MLflow's hint that integer columns cannot hold missing values (documented in README).
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, model.predict(example))
    directory = Path(directory)
    trusted = serving.save(model, directory / _DATA_DIR, rows=check_rows(X_train))
    # The loader module alone, under a name of its own: loading the model puts its code
    # directory first on sys.path, and a `sweeper` package there (with nothing but this
    # module) would shadow this project's for every process started afterwards.
    shutil.copy(serving.__file__, directory / f"{SERVED_MODULE}.py")
    prepared = PreparedModel(
        directory, tuple(trusted), signature, tuple(pip_requirements(model))
    )
    _check_serving(prepared, example)
    return prepared


def _check_serving(prepared: PreparedModel, example: pd.DataFrame) -> None:
    """What ``Model.log`` does before it uploads a model: save it locally, load it with its
    flavor, and predict the input example as the scoring server parses it. Done here, where
    the model is prepared, :func:`log_served_model` tells MLflow not to repeat it."""
    from mlflow.models.utils import _validate_serving_input

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model"
        mlflow_model = Model()
        _ServedFlavor(list(prepared.trusted)).save_model(
            str(local), mlflow_model, **_save_arguments(prepared, example)
        )
        serving_input = mlflow_model.get_serving_input(str(local))
        if serving_input is None:
            return
        try:
            _validate_serving_input(model_uri=str(local), serving_input=serving_input)
        except Exception as error:  # noqa: BLE001 - MLflow's log_model only warns, too
            _logger.warning(
                "Failed to validate serving input example: the model saved from these files "
                "could not serve its input example (the first rows of the training data), so "
                "the registered model may not serve such rows either. Got error: %s: %s",
                type(error).__name__, error,
            )


def _save_arguments(prepared: PreparedModel, example: pd.DataFrame) -> dict[str, Any]:
    """The arguments the served flavor saves a prepared model with, checked or logged."""
    return {
        "loader_module": SERVED_MODULE,
        "data_path": str(prepared.data_dir),
        "code_paths": [str(prepared.code_path)],
        "signature": prepared.signature,
        "input_example": example,
        "pip_requirements": list(prepared.requirements),
    }


def log_served_model(
    prepared: PreparedModel, *, input_example: pd.DataFrame, run_id: str
) -> ModelInfo:
    """Log the prepared model in run ``run_id`` as :data:`MODEL_NAME_IN_RUN`.

    The model carries the skops pipeline, the types skops must trust to load it (exactly
    those it needs), rows to check the compiled fast path against when it loads, the
    ``sweeper.serving`` module it loads with, and pinned requirements.
    """
    with warnings.catch_warnings():
        # The input example repeats MLflow's integer-column hint (see prepare_model).
        warnings.simplefilter("ignore", UserWarning)
        return Model.log(
            artifact_path=None,
            name=MODEL_NAME_IN_RUN,
            run_id=run_id,
            flavor=_ServedFlavor(list(prepared.trusted)),
            # prepare_model served the input example from the same files already.
            validate_serving_input=False,
            **_save_arguments(prepared, input_example),
        )


def import_model_saving() -> None:
    """Import what saving a champion needs beyond the sweep's own imports: skops, which
    :mod:`sweeper.serving` saves with (2.0 s of CPU on 2 cores, most of it skops listing every
    scikit-learn estimator at import).

    For the process that will register the champion (``sweep.py`` calls it before the sweep
    starts): paid beside its prestarted workers' imports, not at the end of the sweep, where
    it would be waited for. Its workers never save a model and skip it, so they start their
    first trials that much sooner. Without this call, saving imports it when first needed.
    """
    importlib.import_module("skops.io")


def warm_up_model_logging() -> dict[str, list[str]] | None:
    """Pay model logging's one-off cost now, off the critical path: on the sweep's background
    logging thread, or in a helper process that hands the result to the sweep's process
    (:func:`adopt_warm_up`), where it costs the trials no share of their GIL.

    Logging a model checks its pinned requirements against the installed packages, and the
    first check in a process maps every installed distribution's files to its modules (0.6 s
    of the 1.1 s a champion's logging took on 2 cores); MLflow keeps that map for the
    process. Returns the map (``None`` without one). A pure speed-up, so it never fails the
    sweep: if this MLflow has no such map, or building it fails, the model's logging does the
    check as it would have.
    """
    from mlflow.utils import requirements_utils

    warm = getattr(requirements_utils, "_init_modules_to_packages_map", None)
    if warm is None:
        return None
    try:
        warm()
    except Exception as error:  # noqa: BLE001 - only a head start; logging redoes it
        _logger.debug("could not warm up model logging: %s: %s", type(error).__name__, error)
        return None
    mapping = getattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    return dict(mapping) if isinstance(mapping, dict) else None


def adopt_warm_up(mapping: dict[str, list[str]] | None) -> None:
    """Give this process the map :func:`warm_up_model_logging` built in another process of the
    same environment (the same installed packages, so the same map), unless it has its own."""
    from mlflow.utils import requirements_utils

    if mapping and getattr(requirements_utils, "_MODULES_TO_PACKAGES", False) is None:
        requirements_utils._MODULES_TO_PACKAGES = mapping


@dataclasses.dataclass(frozen=True)
class ChampionModel:
    """The registered champion."""

    family: str
    run_id: str
    test_rmse: float
    test_mae: float
    test_r2: float
    model_uri: str
    model_name: str
    version: str


def refit(
    model: BaseEstimator,
    *,
    X_train: pd.DataFrame,
    y_train: pd.Series,
    X_test: pd.DataFrame,
    y_test: pd.Series,
) -> dict[str, float]:
    """Fit ``model`` (the champion's unfitted best configuration) on the whole training part
    and score it once on the held-out test part: ``test_rmse``, ``test_mae``, ``test_r2``."""
    model.fit(X_train, y_train)
    test_rmse, test_mae, test_r2 = regression_scores(y_test, model.predict(X_test))
    return {"test_rmse": test_rmse, "test_mae": test_mae, "test_r2": test_r2}


def log_and_register(
    champion: FamilyResult,
    prepared: PreparedModel,
    test_metrics: dict[str, float],
    *,
    X_train: pd.DataFrame,
    model_name: str,
    root_run_id: str,
) -> ChampionModel:
    """Log the ``prepared`` model on the champion's family run with its test metrics and
    register it as a new version of ``model_name`` with the alias ``champion``."""
    client = MlflowClient()
    # On the family run by its id, not by resuming it on the fluent run stack: that took
    # four more requests (the run read twice, set RUNNING, then FINISHED again with a new end
    # time), and a finished family run keeps its own end time. The test metrics come first:
    # logging the model links the run's metrics to it.
    client.log_batch(champion.run_id, metrics=[
        mlflow.entities.Metric(key, value, _now_ms(), 0) for key, value in test_metrics.items()
    ])
    # The served schema is the raw training columns. Integer columns stay integers: MLflow
    # refuses to convert int64 requests to a float64 schema.
    info = log_served_model(prepared, input_example=X_train.head(5), run_id=champion.run_id)
    # Registered with the version tags that find_registered() looks for, in the same call.
    version = mlflow.register_model(
        info.model_uri, model_name, tags={TAG_VERSION_TRIAL: _trial_key(champion)}
    ).version
    client.set_registered_model_alias(model_name, CHAMPION_ALIAS, str(version))
    client.log_batch(
        root_run_id,
        metrics=[
            mlflow.entities.Metric(k, v, _now_ms(), 0) for k, v in test_metrics.items()
        ],
        tags=[
            mlflow.entities.RunTag("sweep.champion_family", champion.family),
            mlflow.entities.RunTag("sweep.champion_run_id", champion.run_id),
            mlflow.entities.RunTag("sweep.model", f"models:/{model_name}/{version}"),
        ],
    )
    return ChampionModel(
        family=champion.family,
        run_id=champion.run_id,
        test_rmse=test_metrics["test_rmse"],
        test_mae=test_metrics["test_mae"],
        test_r2=test_metrics["test_r2"],
        model_uri=info.model_uri,
        model_name=model_name,
        version=str(version),
    )


def trial_key(study_name: str, number: int) -> str:
    """How a study trial is named in a model version's :data:`TAG_VERSION_TRIAL`."""
    return f"{study_name}/{number}"


def _trial_key(champion: FamilyResult) -> str:
    return trial_key(champion.study_name, champion.best.number if champion.best is not None else -1)


def find_registered(
    champion: FamilyResult, model_name: str, root_run_id: str
) -> ChampionModel | None:
    """The version already registered for this champion trial (by an attempt that died before
    it could record it), with the alias moved onto it; ``None`` when there is none."""
    client = MlflowClient()
    key = _trial_key(champion)
    for version in client.search_model_versions(f"run_id = '{champion.run_id}'"):
        if version.name == model_name and version.tags.get(TAG_VERSION_TRIAL) == key:
            client.set_registered_model_alias(model_name, CHAMPION_ALIAS, str(version.version))
            metrics = client.get_run(champion.run_id).data.metrics
            return ChampionModel(
                family=champion.family,
                run_id=champion.run_id,
                test_rmse=metrics["test_rmse"],
                test_mae=metrics["test_mae"],
                test_r2=metrics["test_r2"],
                model_uri=str(version.source),
                model_name=model_name,
                version=str(version.version),
            )
    return None


def _now_ms() -> int:
    return int(time.time() * 1000)


def describe(value: Any) -> str:
    """A number as the leaderboard shows it."""
    return "-" if value is None else f"{value:,.1f}"
