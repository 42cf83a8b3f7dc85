"""Fold-wise pruning: stop a trial as soon as the CV folds it has scored show it cannot win.

Every trial scores the same folds (the split and the folds are fixed by the seed), and each fold
is one step of the trial (:class:`sweeper.objective.FamilyObjective` reports the fold's RMSE), so
a running trial can be compared with the family's best trial fold by fold, on equal terms.

Two rules, either of which stops a trial:

- **margin**, on the first folds: after ``k`` folds, the trial's summed RMSE on them is more
  than ``margins[k]`` (a fraction) above the best trial's on the same folds. Configurations that
  are far off show it on the first fold, and a margin needs no statistics to say so; these are
  most of the hopeless trials of a sweep, which Wilcoxon alone keeps for 3 folds of 5.
- **Wilcoxon**: Optuna's :class:`~optuna.pruners.WilcoxonPruner`, a signed-rank test on the
  paired fold differences, for the trials that are close enough to need one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

__all__ = ["FoldPruner", "wilcoxon_pruner"]


def wilcoxon_pruner(*, p_threshold: float, n_startup_steps: int) -> optuna.pruners.WilcoxonPruner:
    """Optuna's :class:`~optuna.pruners.WilcoxonPruner`, without its experimental warning."""
    with warnings.catch_warnings():
        # Experimental in Optuna 5, and exactly what fold-wise pruning needs.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.WilcoxonPruner(
            p_threshold=p_threshold, n_startup_steps=n_startup_steps
        )


class FoldPruner(optuna.pruners.BasePruner):
    """Stop a trial whose folds so far are clearly worse than the best trial's on the same folds.

    Args:
        margins: ``{k: fraction}``: after exactly ``k`` scored folds, stop the trial when its
            summed score on them is worse than the best trial's on the same folds by more than
            ``fraction`` of the best's (``0.03``: 3 % worse). Folds not named have no margin.
            Meant for positive scores such as an RMSE; a step whose score is not a positive
            finite number turns the rule off for that trial.
        p_threshold: Wilcoxon's p-value threshold (see :class:`~optuna.pruners.WilcoxonPruner`).
        n_startup_steps: folds before Wilcoxon may stop a trial.
    """

    def __init__(
        self,
        *,
        margins: Mapping[int, float],
        p_threshold: float,
        n_startup_steps: int,
    ) -> None:
        for k, fraction in margins.items():
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ValueError(
                    f"FoldPruner: margins keys (folds scored) must be ints >= 1, but got {k!r}"
                )
            if (
                isinstance(fraction, bool)
                or not isinstance(fraction, (int, float))
                or not math.isfinite(fraction)
                or fraction <= 0.0
            ):
                raise ValueError(
                    "FoldPruner: margins values (fractions of the best trial's score) must be "
                    f"finite numbers > 0, but got {fraction!r} for {k} folds"
                )
        self._margins = {k: float(f) for k, f in margins.items()}
        self._wilcoxon = wilcoxon_pruner(p_threshold=p_threshold, n_startup_steps=n_startup_steps)

    @property
    def margins(self) -> dict[int, float]:
        return dict(self._margins)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        margin = self._margins.get(len(trial.intermediate_values))
        if margin is not None:
            shortfall = _shortfall(study, trial)
            if shortfall is not None and shortfall > margin:
                return True
        return self._wilcoxon.prune(study, trial)


def _shortfall(study: optuna.Study, trial: FrozenTrial) -> float | None:
    """How much worse ``trial`` is than the study's best trial on the steps both have scored, as
    a fraction of the best's summed score; ``None`` when there is nothing to compare with."""
    try:
        best = study.best_trial
    except ValueError:  # no complete trial yet
        return None
    steps = [s for s in trial.intermediate_values if s in best.intermediate_values]
    if not steps:
        return None
    mine = [trial.intermediate_values[s] for s in steps]
    theirs = [best.intermediate_values[s] for s in steps]
    if not all(math.isfinite(v) and v > 0.0 for v in (*mine, *theirs)):
        return None
    ratio = sum(mine) / sum(theirs)
    return ratio - 1.0 if study.direction == StudyDirection.MINIMIZE else 1.0 / ratio - 1.0
