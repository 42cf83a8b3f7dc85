"""The model-family registry.

A family is one module ``objectives/<name>.py`` plus one search space
``search_spaces/<name>.yaml``; adding a family means adding those two files. A family module
exports:

``ESTIMATOR``
    The scikit-learn-compatible regressor class; its ``get_params()`` keys are the parameters a
    search space may fix or search.
``SCALE_NUMERIC``
    Whether numeric features are standardized before the estimator.
``make_estimator(params, *, random_state)``
    Return an unfitted, seeded estimator using one thread unless ``params`` say otherwise.

and may export:

``UNSET_DEFAULTS``
    For parameters the estimator leaves unset (``None`` in ``get_params()``: the library picks
    a value when it fits), the value the library documents, so that a family's first trial,
    its library defaults, is the untuned model (:func:`sweeper.runner.library_defaults`).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from objectives._preprocessing import make_preprocessor
from sweeper.errors import SweepError
from sweeper.search_space import SearchSpace, load_search_space

__all__ = ["FAMILIES", "SEARCH_SPACES_DIR", "Family", "resolve_families"]

SEARCH_SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"
#: Environment variable naming another directory of search-space YAMLs (same file names), to
#: tune different ranges without editing the project.
SEARCH_SPACES_ENV = "SWEEP_SEARCH_SPACES"

# The sweep seeds every estimator itself, so a search space must not set these.
_RESERVED_PARAMS: Mapping[str, str] = MappingProxyType(
    {"random_state": "the sweep seeds every estimator itself"}
)
_REQUIRED_EXPORTS = ("ESTIMATOR", "SCALE_NUMERIC", "make_estimator")


@dataclass(frozen=True)
class Family:
    """One model family: its module and, by name, its search space file."""

    name: str
    module: ModuleType
    # Filled on the first search_space() call; excluded from eq/hash/repr.
    _cache: dict[str, SearchSpace] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def search_space_path(self) -> Path:
        """``<name>.yaml`` in ``$SWEEP_SEARCH_SPACES``, else in the project's search_spaces/."""
        override = os.environ.get(SEARCH_SPACES_ENV)
        return (Path(override) if override else SEARCH_SPACES_DIR) / f"{self.name}.yaml"

    @property
    def estimator_class(self) -> type:
        """The estimator class (the module's ``ESTIMATOR``)."""
        return self.module.ESTIMATOR

    @property
    def scale_numeric(self) -> bool:
        """Whether numeric features are standardized (the module's ``SCALE_NUMERIC``)."""
        return bool(self.module.SCALE_NUMERIC)

    @property
    def unset_defaults(self) -> Mapping[str, Any]:
        """What the library uses for parameters the estimator leaves unset (the module's
        ``UNSET_DEFAULTS``, empty when it has none)."""
        return MappingProxyType(dict(getattr(self.module, "UNSET_DEFAULTS", {})))

    def search_space(self) -> SearchSpace:
        """Load (once) and return this family's validated search space.

        Raises:
            SweepError: The YAML is missing or invalid, or names a parameter the estimator does
                not accept.
        """
        if "space" not in self._cache:
            estimator_class = self.estimator_class
            self._cache["space"] = load_search_space(
                self.search_space_path,
                family=self.name,
                accepted_params=frozenset(estimator_class().get_params().keys()),
                estimator_name=estimator_class.__name__,
                reserved_params=_RESERVED_PARAMS,
            )
        return self._cache["space"]

    def build_preprocessor(
        self, *, numeric: Sequence[str], categorical: Sequence[str]
    ) -> ColumnTransformer:
        """Return this family's unfitted preprocessing (the pipeline's ``preprocess`` step).

        It has no searched parameters, so a cross-validation may fit it once per fold and
        reuse it for every trial (:func:`sweeper.objective.prepare_folds`)."""
        return make_preprocessor(numeric, categorical, scale_numeric=self.scale_numeric)

    def build_estimator(self, params: Mapping[str, Any], *, random_state: int) -> Any:
        """Return this family's unfitted, seeded estimator (the pipeline's ``model`` step)."""
        return self.module.make_estimator(params, random_state=random_state)

    def build_pipeline(
        self,
        params: Mapping[str, Any],
        *,
        numeric: Sequence[str],
        categorical: Sequence[str],
        random_state: int,
    ) -> Pipeline:
        """Return an unfitted ``preprocess -> model`` pipeline for ``params``."""
        return Pipeline(
            [
                ("preprocess", self.build_preprocessor(numeric=numeric, categorical=categorical)),
                ("model", self.build_estimator(params, random_state=random_state)),
            ]
        )


def _discover() -> Mapping[str, Family]:
    families: dict[str, Family] = {}
    names = sorted(
        info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")
    )
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        missing = [export for export in _REQUIRED_EXPORTS if not hasattr(module, export)]
        if missing:
            raise SweepError(
                f"objectives/{name}.py: a family module must define "
                f"{', '.join(_REQUIRED_EXPORTS)}, but {', '.join(missing)} is missing"
            )
        families[name] = Family(name=name, module=module)
    return MappingProxyType(families)


FAMILIES: Mapping[str, Family] = _discover()
"""Family name -> :class:`Family`, sorted by name, discovered from the modules in this package."""


def resolve_families(spec: str) -> list[Family]:
    """Return the families named by ``spec``, in the order given.

    ``spec`` is ``"all"`` (or empty) for every family, else a comma-separated list of names;
    whitespace around names is ignored.

    Raises:
        SweepError: A name is empty, unknown, listed twice, or ``all`` is combined with names.
    """
    if spec.strip() in ("", "all"):
        return list(FAMILIES.values())
    known = ", ".join(FAMILIES)
    names = [item.strip() for item in spec.split(",")]
    resolved: list[Family] = []
    for name in names:
        if not name:
            raise SweepError(
                f"families: empty name in {spec!r}; expected a comma-separated list of "
                f"families, or 'all'; known families: {known}"
            )
        if name == "all":
            raise SweepError(f"families: 'all' cannot be combined with other names in {spec!r}")
        if name not in FAMILIES:
            raise SweepError(f"families: unknown family {name!r}; known families: {known}")
        if any(family.name == name for family in resolved):
            raise SweepError(f"families: {name!r} is listed twice")
        resolved.append(FAMILIES[name])
    return resolved
