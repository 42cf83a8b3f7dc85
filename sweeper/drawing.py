"""Drawing the sweep's plots and champion report in helper processes, beside the sweep.

Drawing is slow (matplotlib: 0.3-0.5 s per family, 0.5-1 s for the champion's report) and has
nothing to do with choosing the champion, so it must not sit on the sweep's critical path: a
:class:`Drawer` hands it to helper processes (a process, not a thread: drawing is Python code
that would hold the GIL against the trials and the MLflow logging) running at the lowest CPU
priority, so that they use what the trials leave of the cores. Each family is drawn as soon as
it is complete; whatever is left is drawn while the champion is logged and registered.

The same helpers prepare the leading family's champion ahead of the end of the sweep
(:mod:`sweeper.ahead`). Nothing here talks to the tracking store: the helpers write files, the
caller logs them.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import multiprocessing
import multiprocessing.util
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.processes import die_with_parent

if TYPE_CHECKING:  # matplotlib and pandas: imported in the helpers, not by the sweep for this
    from sweeper.data import Split
    from sweeper.report import ChampionFigures

__all__ = ["Drawer", "Drawn"]

_logger = logging.getLogger(__name__)

#: How long the sweep waits for a drawing at the end before giving up on it (a drawing that
#: hangs; a helper that dies fails its drawing at once).
_WAIT_SECONDS = 300.0


@dataclasses.dataclass(frozen=True)
class Drawn:
    """A family's plots as drawn from its study when it had ``n_trials`` trials."""

    paths: tuple[Path, ...]
    n_trials: int


@dataclasses.dataclass(frozen=True)
class _FamilyDrawing:
    """The jobs drawing one family's plots, one per plot."""

    plots: tuple[str, ...]
    parts: tuple[Future[Drawn], ...]

    def done(self) -> bool:
        return all(part.done() for part in self.parts)


class Drawer:
    """Up to ``processes`` helper processes that draw, started on the first request.

    Args:
        storage: The Optuna storage URL or journal path of the sweep (each helper opens it).
        processes: How many helpers to start.
        spare_core: The machine has a core the trials do not use: the helpers start (import)
            at the lowest priority too. Else they import at normal priority, so that they are
            ready to draw when the trials end.
    """

    def __init__(self, storage: str, *, processes: int = 1, spare_core: bool = False) -> None:
        self.storage = storage
        self.processes = max(1, processes)
        self.spare_core = spare_core
        self._pool: ProcessPoolExecutor | None = None
        self._dir: Path | None = None
        self._families: dict[str, _FamilyDrawing] = {}

    @property
    def directory(self) -> Path:
        """Where the helpers write (made on first use; removed by :meth:`close`, or by the
        helpers if the sweep dies without closing)."""
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="sweep-drawing-"))
        return self._dir

    def start(self) -> ProcessPoolExecutor:
        """Start the helpers now (once; later calls return the same pool): they import
        matplotlib and open the storage in the background, then wait for drawings at the
        lowest CPU priority.

        An executor, not a ``multiprocessing.Pool``: a helper that dies or cannot start (say,
        its imports fail) breaks the executor, so every drawing fails at once and is left out,
        where a pool would start new helpers that fail alike until the sweep gives up waiting.
        """
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_helper,
                initargs=(self.storage, self.spare_core, os.getpid(), str(self.directory)),
            )
            # The executor starts a helper per submission while none is idle: start them all
            # now, so that their imports overlap the trials.
            for _ in range(self.processes):
                self._pool.submit(os.getpid)
        return self._pool

    def family(self, study_name: str) -> None:
        """Start drawing ``study_name``'s plots (its study should be complete; if it changes
        later, :meth:`family_plots` draws it again): one job per plot, so that the helpers
        draw a family's plots side by side (the last family's are waited for at the end)."""
        from sweeper.report import FAMILY_PLOTS

        out_dir = str(self.directory / study_name)
        self._families[study_name] = _FamilyDrawing(FAMILY_PLOTS, tuple(
            self.submit(_draw_family, self.storage, study_name, out_dir, plot)
            for plot in FAMILY_PLOTS
        ))

    def champion(
        self,
        family: str,
        config: Mapping[str, Any],
        split: Split,
        *,
        numeric: Sequence[str],
        categorical: Sequence[str],
        seed: int,
    ) -> Future[ChampionFigures]:
        """Start drawing the champion's report figures
        (:func:`sweeper.report.champion_figures`) in :attr:`directory` ``/figures``: a helper
        fits ``family`` with ``config`` on the split's training part itself, the same fit as
        the caller's (same data, seed and one thread), while the caller fits, saves and logs
        the model. Sooner than sending the helper the fitted model, which for a forest pickles
        to tens of MB."""
        return self.submit(
            _draw_champion, family, dict(config), split, numeric=list(numeric),
            categorical=list(categorical), seed=seed, out_dir=str(self.directory / "figures"),
        )

    def prefetch(self, n_trials: Mapping[str, int]) -> None:
        """Start drawing every family (study name -> its trial count now) whose plots are
        missing or out of date, without waiting: they are drawn while the caller goes on."""
        for name, count in n_trials.items():
            pending = self._families.get(name)
            if pending is None:
                self.family(name)
            elif pending.done():
                drawn = self._drawn(pending, name)
                if drawn is None or drawn.n_trials != count:
                    self.family(name)

    def family_plots(self, study_name: str, n_trials: int) -> tuple[Path, ...]:
        """The plots of ``study_name`` drawn from exactly ``n_trials`` trials: the earlier
        drawing if it is current, else a new one; waited for. Empty if drawing failed."""
        drawn = self._drawn(self._families.get(study_name), study_name)
        if drawn is None or drawn.n_trials != n_trials:
            self.family(study_name)
            drawn = self._drawn(self._families[study_name], study_name)
        return drawn.paths if drawn is not None else ()

    def ready(self, study_name: str) -> Drawn | None:
        """The plots of ``study_name``'s latest drawing if every one of them is drawn now, else
        ``None`` (still drawing, never asked for, or a plot failed: :meth:`family_plots` tells
        why, at the end). Never waits."""
        pending = self._families.get(study_name)
        if pending is None or not pending.done() or any(
            part.cancelled() or part.exception() is not None for part in pending.parts
        ):
            return None
        drawn = self._drawn(pending, study_name)  # every part done and drawn: no wait, no warning
        return drawn if drawn is not None and drawn.n_trials >= 0 else None

    def _drawn(self, pending: _FamilyDrawing | None, study_name: str) -> Drawn | None:
        """A family's plots from its jobs (waited for): ``None`` when every job failed; a
        plot whose job failed is left out (logged). Drawn from different trial counts (the
        study grew between the jobs), it counts as out of date."""
        if pending is None:
            return None
        parts = [
            self._result(part, f"{plot} of {study_name}")
            for plot, part in zip(pending.plots, pending.parts, strict=True)
        ]
        drawn = [part for part in parts if part is not None]
        if not drawn:
            return None
        counts = {part.n_trials for part in drawn}
        return Drawn(
            tuple(path for part in drawn for path in part.paths),
            counts.pop() if len(counts) == 1 else -1,
        )

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a helper (a module-level function: it is pickled by
        name); its result, or the exception it raised, comes back through the future."""
        try:
            return self.start().submit(fn, *args, **kwargs)
        except concurrent.futures.BrokenExecutor as error:
            # The helpers are gone (the first failure was logged with its drawing): this
            # drawing fails the same way, when it is waited for.
            failed: Future[Any] = Future()
            failed.set_exception(error)
            return failed

    def wait(self, pending: Future[Any], what: str) -> Any:
        """The result of ``pending``, or ``None`` (logged, naming ``what``) when drawing it
        failed or took too long."""
        return self._result(pending, what)

    def _result(self, pending: Future[Any] | None, what: str) -> Any:
        if pending is None:
            return None
        try:
            return pending.result(timeout=_WAIT_SECONDS)
        except concurrent.futures.TimeoutError:
            _logger.warning("left out %s: not drawn within %.0f s", what, _WAIT_SECONDS)
        except Exception as error:  # noqa: BLE001 - a missing plot must not fail the sweep
            _logger.warning("left out %s: %s: %s", what, type(error).__name__, error)
        return None

    def close(self) -> None:
        """Stop the helpers (a drawing still running is abandoned) and remove the files."""
        if self._pool is not None:
            _terminate(self._pool)
            self._pool = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop the helpers, also one in the middle of a drawing."""
    terminate_workers = getattr(pool, "terminate_workers", None)
    if terminate_workers is not None:  # Python 3.14+
        terminate_workers()
        return
    # Before 3.14 an executor has no public way to stop a running task: terminate its
    # processes, then shut it down (which reaps them).
    helpers = list(getattr(pool, "_processes", {}).values())
    for helper in helpers:
        helper.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------------------------
# In the helper processes
# ----------------------------------------------------------------------------------------------

_storages: dict[str, Any] = {}
#: The signal a helper gets when the sweep that started it dies (see _init_helper).
_SWEEP_DIED = signal.SIGUSR1
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _init_helper(storage: str, spare_core: bool, parent: int, directory: str) -> None:
    # Ctrl-C reaches the whole process group: the sweep decides what happens, not the helper
    # (which would print a traceback). And a helper dies with the sweep, even by SIGKILL: then
    # it removes the drawing directory, which the sweep had no chance to. The sweep's death
    # has a signal of its own, not the SIGTERM that Drawer.close sends: the kernel sends it
    # while the sweep is still exiting (its pid can still be the helper's parent then). When
    # the helper's job queue closes first, it ends through multiprocessing's exit path, where
    # the finalizer sees that the sweep is gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(_SWEEP_DIED, functools.partial(_sweep_died, directory))
    multiprocessing.util.Finalize(None, _remove_if_orphaned, (parent, directory), exitpriority=0)
    die_with_parent(parent, _SWEEP_DIED)
    # One thread per helper, as in the workers. The report predicts with the champion, and a
    # HistGradientBoosting model predicts with an OpenMP thread per core: at the lowest
    # priority beside a busy core, those threads wait for each other and a report took 67 s
    # instead of 2.4 s (measured on 2 cores). The variables cover a runtime loaded later (by
    # unpickling a model), threadpoolctl one loaded by now.
    for variable in _THREAD_VARIABLES:
        os.environ[variable] = "1"
    # Drawing takes only what the trials leave of the cores, until they are done. Beside a
    # core the trials leave free, the imports too: where the scheduler puts a helper on a
    # trial's core, the trial keeps it (in interleaved runs with one worker on 2 cores, the
    # trials spent 1.7-1.9 s off the CPU beside helpers that started at normal priority,
    # 0.4-0.6 s beside niced ones). Beside busy workers the imports run at normal priority:
    # at the lowest a helper would still be importing when the trials end.
    if spare_core:
        os.nice(19)
    import threadpoolctl

    import objectives  # noqa: F401 - the estimators, for the champion's figures
    from sweeper import report

    report.import_drawing()  # matplotlib and Optuna's plotting, imported once
    threadpoolctl.threadpool_limits(1)
    _open(storage)
    if not spare_core:
        os.nice(19)


def _remove_if_orphaned(parent: int, directory: str) -> None:
    """At a helper's exit: remove the drawing directory if the sweep (``parent``) is gone, else
    it is the sweep's to remove (:meth:`Drawer.close`)."""
    if os.getppid() != parent:
        shutil.rmtree(directory, ignore_errors=True)


def _sweep_died(directory: str, signum: int, frame: object) -> None:
    """The helper's signal that the sweep died: remove the drawing directory, then die of
    SIGTERM, as the helper did before it cleaned up."""
    shutil.rmtree(directory, ignore_errors=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _open(storage: str) -> Any:
    if storage not in _storages:
        from sweeper.study import open_storage

        _storages[storage] = open_storage(storage)
    return _storages[storage]


def _draw_family(storage: str, study_name: str, out_dir: str, plot: str) -> Drawn:
    import optuna

    from sweeper import report

    study = optuna.load_study(storage=_open(storage), study_name=study_name)
    n_trials = len(study.get_trials(deepcopy=False))
    target = Path(out_dir)
    # A redraw replaces the earlier file (a plot that is no longer possible must go too).
    (target / plot).unlink(missing_ok=True)
    return Drawn(tuple(report.family_plots(study, target, only=(plot,))), n_trials)


def _draw_champion(
    family: str,
    config: dict[str, Any],
    split: Split,
    *,
    numeric: list[str],
    categorical: list[str],
    seed: int,
    out_dir: str,
) -> ChampionFigures:
    from objectives import resolve_families
    from sweeper import report

    (spec,) = resolve_families(family)
    model = spec.build_pipeline(config, numeric=numeric, categorical=categorical,
                                random_state=seed)
    model.fit(split.X_train, split.y_train)
    return report.champion_figures(
        model, split.X_test, split.y_test, family=family, out_dir=Path(out_dir), seed=seed
    )
