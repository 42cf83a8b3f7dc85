"""Model logging's warm-up (:func:`sweeper.champion.warm_up_model_logging`): a head start that
must never fail a sweep."""

from __future__ import annotations

import logging

import pytest
from mlflow.utils import requirements_utils

from sweeper.champion import warm_up_model_logging


def test_warm_up_builds_mlflows_package_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    warm_up_model_logging()
    # What the first requirements check of a model's logging would otherwise build.
    assert "sklearn" in requirements_utils._MODULES_TO_PACKAGES
    assert "scikit-learn" in requirements_utils._MODULES_TO_PACKAGES["sklearn"]


def test_a_failing_warm_up_is_only_a_debug_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise OSError("unreadable site-packages")

    monkeypatch.setattr(requirements_utils, "_init_modules_to_packages_map", broken)
    with caplog.at_level(logging.DEBUG, logger="sweeper.champion"):
        warm_up_model_logging()
    assert caplog.messages == [
        "could not warm up model logging: OSError: unreadable site-packages"]


def test_without_mlflows_package_map_the_warm_up_does_nothing(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(requirements_utils, "_init_modules_to_packages_map")
    warm_up_model_logging()
