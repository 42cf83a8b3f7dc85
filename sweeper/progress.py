"""Per-family progress of a sweep: a live bar on a terminal, plain lines anywhere else.

A sweep runs for minutes to hours; without feedback it looks hung. On a terminal a ``tqdm``
bar shows trials done, the best RMSE so far, elapsed time and ETA. When the output is a file
or a CI log (not a TTY), carriage returns and ANSI codes would garble it, so the same
information comes as one plain line every few trials instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

import optuna

__all__ = ["FamilyProgress", "format_duration"]


def format_duration(seconds: float) -> str:
    """A duration as a person reads it: ``12.3 s``, ``4 min 05 s``, ``1 h 02 min``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


class FamilyProgress:
    """Progress of one family's study.

    Use as a context manager (or call :meth:`close`); call :meth:`update` after each finished
    trial, e.g. from the study's ``callbacks``. The elapsed time and ETA count from when the
    object is made, or from :meth:`start` where that is called: a sweep joins every family at
    once and then runs them one after another, and a family's time must not include the
    families before it.

    Args:
        family: The family name, the line's (or bar's) label.
        total: Trials the study should reach (``n_trials``).
        out: Where to write; by default the standard error of the moment the bar is made (not
            of import time: a notebook or a test may have replaced it since), so stdout keeps
            the leaderboard.
        interactive: Draw a live bar (``True``) or plain lines (``False``); ``None`` draws a
            bar when ``out`` is a TTY.
        quiet: Write nothing at all.
        every: In plain-line mode, write a line each time ``done`` reaches a multiple of
            ``every``, and always at the last trial.
        initial: Trials already done when the sweep resumes; the ETA uses only the trials
            this process runs.
        clock: Monotonic seconds; tests pass a fake one.
    """

    def __init__(
        self,
        family: str,
        total: int,
        *,
        out: TextIO | None = None,
        interactive: bool | None = None,
        quiet: bool = False,
        every: int = 5,
        initial: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.family = family
        self.total = total
        self.quiet = quiet
        self.every = every
        self._out = out if out is not None else sys.stderr
        self._clock = clock
        self._started = clock()
        self._restarted = False
        self._initial = initial
        self._done = initial
        self._best: float | None = None
        self._failed = 0
        self._closed = False
        # `done` when the last plain line was written (or when the display started).
        self._line_mark = initial
        if interactive is None:
            interactive = _isatty(self._out)
        self.interactive = interactive and not quiet
        self._bar: Any = None

    def __enter__(self) -> FamilyProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Restart the clock: this process is about to run the family's first trial. Later
        calls do nothing."""
        if self._restarted:
            return
        self._restarted = True
        self._started = self._clock()
        self._show_bar()

    def _show_bar(self) -> None:
        """On a terminal, the bar, made at the first need of it: tqdm's own clock starts with
        it, so it is made when the family starts, not when the sweep joins it."""
        if self.interactive and self._bar is None:
            # Imported here: plain-line and quiet modes never need tqdm.
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total,
                initial=self._initial,
                desc=self.family,
                unit="trial",
                file=self._out,
                dynamic_ncols=True,
                leave=True,
            )

    @property
    def done(self) -> int:
        """Trials done, as last reported to :meth:`update`."""
        return self._done

    @property
    def best(self) -> float | None:
        """The best RMSE so far, as last reported to :meth:`update`."""
        return self._best

    def update(self, trial: optuna.trial.FrozenTrial, *, done: int, best: float | None) -> None:
        """Report one finished trial.

        Args:
            trial: The trial that just finished (its state counts failures).
            done: Trials done in the study now, counting those of other workers and of
                earlier runs of a resumed sweep, so several workers show the same count.
            best: The study's best RMSE so far, or ``None`` while no trial completed.
        """
        if self._closed:
            raise RuntimeError(f"progress of {self.family!r} is closed")
        if trial.state == optuna.trial.TrialState.FAIL:
            self._failed += 1
        # Another worker's trials can make `done` jump; it never goes back.
        previous = self._done
        self._done = max(self._done, done)
        self._best = best
        if self.quiet:
            return
        self._show_bar()
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(self._done - previous)
            return
        if self._done == self._line_mark:
            return  # nothing new to say (e.g. a trial that does not count toward the total)
        # Crossing a multiple of `every`, not landing on one: parallel workers make `done` skip.
        crossed = self._done // self.every > self._line_mark // self.every
        if crossed or self._done >= self.total:
            self._write_line()

    def close(self, *, done: int | None = None, best: float | None = None) -> None:
        """Finish the display: the bar stays on screen; in plain-line mode the last state is
        written unless it already was (a sweep stopped by its timeout ends early).

        Args:
            done: The study's trials done at the end, when known: the last ones may be other
                workers', finished after this worker's last :meth:`update`.
            best: The study's best RMSE at the end (with ``done``).
        """
        if self._closed:
            return
        self._closed = True
        previous = self._done
        if done is not None:
            self._done = max(self._done, done)
            self._best = best if best is not None else self._best
        if self.quiet:
            return
        if self._done != self._initial:
            self._show_bar()  # this process ran none of them: other workers did
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(self._done - previous)
            self._bar.close()
        elif self._done != self._line_mark:
            self._write_line()

    def line(self) -> str:
        """The plain progress line for the current state, e.g.
        ``xgboost: 10/50 trials, best rmse 4,512.3, 12.3 s elapsed, eta 49.2 s``."""
        elapsed = self._clock() - self._started
        parts = [
            f"{self.family}: {self._done}/{self.total} trials",
            f"best rmse {_rmse(self._best)}",
        ]
        if self._failed:
            parts.append(f"{self._failed} failed")
        parts.append(f"{format_duration(elapsed)} elapsed")
        eta = self._eta(elapsed)
        if eta is not None:
            parts.append(f"eta {format_duration(eta)}")
        return ", ".join(parts)

    def _eta(self, elapsed: float) -> float | None:
        ran = self._done - self._initial
        remaining = self.total - self._done
        if ran <= 0 or remaining <= 0:
            return None
        return elapsed / ran * remaining

    def _postfix(self) -> str:
        postfix = f"best rmse {_rmse(self._best)}"
        return f"{postfix}, {self._failed} failed" if self._failed else postfix

    def _write_line(self) -> None:
        self._line_mark = self._done
        self._out.write(self.line() + "\n")
        self._out.flush()


def _rmse(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _isatty(out: TextIO) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
