"""Model logging's warm-up (:func:`sweeper.champion.warm_up_model_logging`): a head start that
must never fail a sweep, built here or in a helper process and adopted here; and the logged
model's pinned requirements."""

from __future__ import annotations

import logging
from importlib.metadata import version

import pytest
from mlflow.utils import requirements_utils

from objectives import FAMILIES, Family
from sweeper.champion import adopt_warm_up, pip_requirements, warm_up_model_logging


def test_warm_up_builds_mlflows_package_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    built = warm_up_model_logging()
    # What the first requirements check of a model's logging would otherwise build.
    assert "sklearn" in requirements_utils._MODULES_TO_PACKAGES
    assert "scikit-learn" in requirements_utils._MODULES_TO_PACKAGES["sklearn"]
    assert built == requirements_utils._MODULES_TO_PACKAGES


def test_a_map_built_in_a_helper_process_is_the_one_built_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        theirs = pool.apply(warm_up_model_logging)
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    adopt_warm_up(theirs)
    assert requirements_utils._MODULES_TO_PACKAGES is theirs
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    assert warm_up_model_logging() == theirs


def test_a_map_this_process_has_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    own = {"numpy": ["numpy"]}
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", own)
    adopt_warm_up({"sklearn": ["scikit-learn"]})
    adopt_warm_up(None)
    assert requirements_utils._MODULES_TO_PACKAGES is own


def test_a_failing_warm_up_is_only_a_debug_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise OSError("unreadable site-packages")

    monkeypatch.setattr(requirements_utils, "_init_modules_to_packages_map", broken)
    with caplog.at_level(logging.DEBUG, logger="sweeper.champion"):
        assert warm_up_model_logging() is None
    assert caplog.messages == [
        "could not warm up model logging: OSError: unreadable site-packages"]


def test_without_mlflows_package_map_the_warm_up_does_nothing(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(requirements_utils, "_init_modules_to_packages_map")
    assert warm_up_model_logging() is None



@pytest.mark.parametrize("family", list(FAMILIES.values()), ids=list(FAMILIES))
def test_pip_requirements_pin_the_stack_the_familys_library_and_uvicorns_speedups(
    family: Family,
) -> None:
    pipeline = family.build_pipeline({}, numeric=["age"], categorical=["sex"], random_state=0)
    stack = ["mlflow", "scikit-learn", "pandas", "numpy", "scipy", "skops"]
    # A family's estimator from another library than scikit-learn adds that library.
    library = type(pipeline.steps[-1][1]).__module__.split(".")[0]
    extra = [] if library == "sklearn" else [library]
    assert pip_requirements(pipeline) == [
        *(f"{name}=={version(name)}" for name in stack + extra),
        f"httptools=={version('httptools')}",
        f'uvloop=={version("uvloop")}; sys_platform != "win32"',
    ]
