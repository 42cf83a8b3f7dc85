"""The leading family's champion, prepared while the last families still run.

Once the trials are done, what is left of a sweep is the champion's: refit it, score it once
on the test part, save and check the served model, draw its report, log and register it.
Only the last two steps need the final leaderboard and the tracking store. With a core the
trials leave free, the rest is done ahead, in a drawing helper, for the family that leads
when a family completes: when the leader does not change in the families still running (the
common case: the leader is usually settled before the last family), the sweep ends with
logging a model that is ready. When it changes, the new leader is prepared; when the
champion is still not the one prepared, it is prepared at the end as it would have been.

The champion is chosen on cross-validation alone either way: a candidate's test scores stay
in the helper's result until :meth:`Ahead.take` hands them over for the trial that has been
chosen, and a candidate that is not chosen is discarded unseen. The refit is the same
computation as at the end (same configuration, data, seed and one thread), so its model is the
same.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from sweeper.champion import (
    PreparedModel,
    adopt_warm_up,
    prepare_model,
    refit,
    select_champion,
    trial_key,
    warm_up_model_logging,
)
from sweeper.data import Split
from sweeper.report import ChampionFigures, champion_figures
from sweeper.study import FamilyResult
from sweeper.trial_attrs import config_of

__all__ = ["Ahead", "Candidate", "PreparedChampion", "prepare"]

_logger = logging.getLogger(__name__)

#: How long the end of the sweep waits for a preparation that hangs before doing it itself.
_WAIT_SECONDS = 300.0


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A family's best trial, to be refit and prepared as the champion."""

    family: str
    study_name: str
    number: int
    config: dict[str, Any]

    @property
    def key(self) -> str:
        return trial_key(self.study_name, self.number)

    @classmethod
    def of(cls, result: FamilyResult) -> Candidate:
        """The candidate of ``result``'s best trial (which must exist)."""
        if result.best is None:
            raise ValueError(
                f"Candidate.of: family {result.family!r} has no complete trial to prepare"
            )
        return cls(result.family, result.study_name, result.best.number, config_of(result.best))


@dataclasses.dataclass(frozen=True)
class PreparedChampion:
    """A candidate refit on the training part, scored on the test part, saved as the served
    model and drawn: all that :func:`sweeper.champion.log_and_register` and the report need."""

    key: str
    test_metrics: dict[str, float]
    model: PreparedModel
    figures: ChampionFigures


def prepare(
    candidate: Candidate,
    split: Split,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    seed: int,
    out_dir: Path,
) -> PreparedChampion:
    """Refit ``candidate`` on ``split``'s training part, score it on its test part, save and
    check its served model and draw its figures, all under ``out_dir`` (a fresh directory)."""
    from objectives import resolve_families

    (family,) = resolve_families(candidate.family)
    model = family.build_pipeline(
        candidate.config, numeric=numeric, categorical=categorical, random_state=seed
    )
    test_metrics = refit(
        model, X_train=split.X_train, y_train=split.y_train, X_test=split.X_test,
        y_test=split.y_test,
    )
    out_dir = Path(out_dir)
    prepared = prepare_model(model, X_train=split.X_train, directory=out_dir / "model")
    figures = champion_figures(
        model, split.X_test, split.y_test, family=candidate.family, out_dir=out_dir / "figures",
        seed=seed,
    )
    return PreparedChampion(candidate.key, test_metrics, prepared, figures)


class Helpers(Protocol):
    """Where the preparation runs: :class:`sweeper.drawing.Drawer`'s helper processes."""

    @property
    def directory(self) -> Path: ...

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Future[Any] | None: ...


class Ahead:
    """Prepares the champion-to-be in ``helpers`` as the families complete.

    From the start, a helper warms model logging up for this process (see
    :func:`sweeper.champion.warm_up_model_logging`). Call :meth:`consider` with the results of
    the families complete so far, each time one completes; at the end, :meth:`adopt_warm_up`
    before any model is saved here, and :meth:`take` with the chosen champion's trial key.
    """

    def __init__(
        self,
        helpers: Helpers,
        split: Split,
        *,
        numeric: Sequence[str],
        categorical: Sequence[str],
        seed: int,
    ) -> None:
        self.helpers = helpers
        self.split = split
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.seed = seed
        self._pending: dict[str, Future[PreparedChampion]] = {}
        self._submitted = 0
        self._warm_up = helpers.submit(warm_up_model_logging)

    @property
    def keys(self) -> tuple[str, ...]:
        """The trial keys prepared or being prepared, oldest first."""
        return tuple(self._pending)

    def consider(self, complete: Sequence[FamilyResult]) -> Candidate | None:
        """Start preparing the leader of the ``complete`` families (the champion as
        :func:`sweeper.champion.select_champion` would choose it among them) unless it is
        prepared already; a former leader's preparation that has not started is cancelled.
        Returns the leader, or ``None`` when no family has a complete trial yet."""
        scored = [r for r in complete if r.best is not None]
        if not scored:
            return None
        leader = Candidate.of(select_champion(scored))
        if leader.key in self._pending:
            return leader
        for key, pending in list(self._pending.items()):
            if pending.cancel():
                del self._pending[key]
        self._submitted += 1
        out_dir = self.helpers.directory / "ahead" / f"{self._submitted}-{leader.family}"
        pending = self.helpers.submit(
            prepare, leader, self.split, numeric=self.numeric, categorical=self.categorical,
            seed=self.seed, out_dir=out_dir,
        )
        if pending is not None:
            self._pending[leader.key] = pending
        return leader

    def adopt_warm_up(self) -> None:
        """Adopt the helper's warm-up of model logging if it is done (else this process warms
        up as it logs, as it would have)."""
        warm_up = self._warm_up
        if warm_up is not None and warm_up.done() and not warm_up.cancelled() \
                and warm_up.exception() is None:
            adopt_warm_up(warm_up.result())

    def take(self, key: str) -> PreparedChampion | None:
        """The preparation of trial ``key`` (waited for if it is still running), or ``None``
        when it was not prepared or preparing it failed (logged; the caller prepares it)."""
        pending = self._pending.get(key)
        if pending is None:
            return None
        try:
            return pending.result(timeout=_WAIT_SECONDS)
        except Exception as error:  # noqa: BLE001 - the champion is then prepared at the end
            _logger.warning("preparing the champion ahead failed, preparing it now: %s: %s",
                            type(error).__name__, error)
            return None
