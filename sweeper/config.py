"""The sweep's parameters: parsed from the command line, validated once, then read-only.

``MLproject`` passes every parameter to ``sweep.py`` as ``--name value``; the same flags work when
``sweep.py`` is run directly. Each invalid value is a :class:`~sweeper.errors.SweepError` that
names the parameter, the rule and the bad value.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

from sweeper.errors import SweepError


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Validated parameters of one sweep (see the README for what each one means)."""

    n_trials: int = 50
    families: str = "all"
    data: str = "insurance"
    target: str = "charges"
    seed: int = 42
    cv_folds: int = 5
    test_size: float = 0.2
    timeout: float = 0.0
    sweep_name: str = ""
    storage: str = ""
    model_name: str = ""
    n_workers: int = 0
    time_budget: float = 0.0
    pruning: str = "margin"
    verbose: int = 1

    def __post_init__(self) -> None:
        _check(self.n_trials >= 1, "n_trials", "must be >= 1", self.n_trials)
        _check(self.n_workers >= 0, "n_workers", "must be >= 0 (0 means one per CPU core)",
               self.n_workers)
        _check(
            math.isfinite(self.time_budget) and self.time_budget >= 0.0,
            "time_budget",
            "must be >= 0 (0 means no budget)",
            self.time_budget,
        )
        _check(self.verbose in (0, 1, 2), "verbose", "must be 0 (quiet), 1 or 2", self.verbose)
        _check(self.pruning in PRUNING, "pruning", f"must be one of {', '.join(PRUNING)}",
               self.pruning)
        _check(self.cv_folds >= 2, "cv_folds", "must be >= 2", self.cv_folds)
        _check(
            math.isfinite(self.test_size) and 0.0 < self.test_size < 1.0,
            "test_size",
            "must be in the open interval (0, 1)",
            self.test_size,
        )
        _check(
            math.isfinite(self.timeout) and self.timeout >= 0.0,
            "timeout",
            "must be >= 0 (0 means no timeout)",
            self.timeout,
        )
        _check(bool(self.data.strip()), "data", "must not be empty", self.data)
        _check(bool(self.target.strip()), "target", "must not be empty", self.target)
        if self.sweep_name and not _SWEEP_NAME.fullmatch(self.sweep_name):
            raise SweepError(
                "sweep_name: must be letters, digits, '.', '_' or '-' (at most 100), "
                f"but got {self.sweep_name!r}"
            )

    @property
    def workers(self) -> int:
        """How many worker processes this command runs (``n_workers``, 0 = one per core)."""
        return self.n_workers or max(1, len(os.sched_getaffinity(0)))

    def as_params(self) -> dict[str, str]:
        """The parameters as MLflow run params (strings)."""
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)}


#: ``pruning`` values (:func:`sweeper.study.make_pruner`): fold-wise margins on the first folds
#: and then Wilcoxon's test, Wilcoxon's test alone, or none.
PRUNING = ("margin", "wilcoxon", "none")

# Study names are ``<sweep_name>.<family>`` and sweep names go into MLflow search filters, so
# keep them to characters that need no quoting anywhere.
_SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _check(ok: bool, name: str, rule: str, value: Any) -> None:
    if not ok:
        raise SweepError(f"{name}: {rule}, but got {value!r}")


def new_sweep_name() -> str:
    """A fresh, sortable, unique sweep name such as ``sweep-20261128-153000-a1b2``."""
    return f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def derive_model_name(dataset_name: str, target: str) -> str:
    """The registered model name for a dataset and target: ``insurance-charges`` by default."""
    raw = f"{dataset_name}-{target}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-") or "sweep-model"


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`SweepError` instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SweepError(f"{message} (see `python sweep.py --help`)")


def _typed(kind: type, name: str) -> Any:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name}: expected {kind.__name__}, but got {text!r}"
            ) from None
        return value

    convert.__name__ = kind.__name__
    return convert


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser; its defaults are :class:`SweepConfig`'s."""
    parser = _Parser(
        prog="sweep.py",
        description="Tune several model families with Optuna; log every trial to MLflow.",
    )
    defaults = SweepConfig()
    helps = {
        "n_trials": "trials per family study",
        "families": "'all' or a comma list of family names",
        "data": "a CSV path, an http(s) URL, or 'insurance'",
        "target": "the numeric column to predict",
        "seed": "seed of the split, the folds, the samplers and the estimators",
        "cv_folds": "cross-validation folds scored by every trial",
        "test_size": "fraction of rows held out of all tuning for the champion's test",
        "timeout": "seconds per family study (0 = none)",
        "sweep_name": "names the studies <sweep_name>.<family>; empty = a new unique name",
        "storage": "Optuna storage URL or journal file path; empty = a local journal file",
        "model_name": "registered model name; empty = derived from the data",
        "n_workers": "worker processes on this machine, one estimator thread each (0 = one per core)",
        "time_budget": "seconds from the sweep's start in which trials start, all families together "
                       "(0 = none); the champion's refit, logging and plots follow",
        "pruning": "stop hopeless trials early, on the CV folds: 'margin' (far worse than the "
                   "best trial on the first folds, then Wilcoxon's test), 'wilcoxon' or 'none'",
        "verbose": "0 = results only, 1 = progress per family, 2 = also one line per trial",
    }
    for field in dataclasses.fields(SweepConfig):
        kind = type(getattr(defaults, field.name))
        parser.add_argument(
            f"--{field.name}",
            type=_typed(kind, field.name) if kind is not str else str,
            default=getattr(defaults, field.name),
            help=f"{helps[field.name]} (default: {getattr(defaults, field.name)!r})",
        )
    return parser


def parse_config(argv: Sequence[str] | None = None) -> SweepConfig:
    """Parse and validate command-line arguments into a :class:`SweepConfig`."""
    namespace = build_parser().parse_args(argv)
    return SweepConfig(**vars(namespace))
