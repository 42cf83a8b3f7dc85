"""Command-line entry point of the sweep (``mlflow run . -e sweep`` runs this file).

Usage: ``python sweep.py --n_trials 50 --families all --data insurance ...``; see
``python sweep.py --help`` and the README. A bad input ends with one line on stderr and exit
code 2; an interruption with exit code 130 (Ctrl-C) or 143 (SIGTERM).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence

from sweeper.config import parse_config
from sweeper.errors import SweepError
from sweeper.prestart import SPAWNED_ENV, WAIT_FLAG, Prestarted, for_command, wait_for_work


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sweep from command-line arguments; return the process exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        if args == [WAIT_FLAG]:
            return _work_when_handed()
        champion_only = "--champion" in args
        if champion_only:
            args.remove("--champion")
        config = parse_config(args)
        # The extra workers import MLflow and the estimators while this process does, on the
        # cores that are idle now, instead of while this one runs trials (sweeper.prestart).
        prestarted = Prestarted() if champion_only else for_command(config)
        try:
            # Imported late so that `--help` and bad arguments answer without loading MLflow.
            from sweeper.champion import import_model_saving
            from sweeper.runner import run_champion, run_sweep

            if SPAWNED_ENV not in os.environ:  # this process registers the champion
                import_model_saving()

            if champion_only:
                run_champion(config.sweep_name, config.storage, data=_explicit_data(args))
            else:
                run_sweep(config, prestarted=prestarted)
        finally:
            prestarted.close()
    except SweepError as error:
        print(f"sweep: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        outage = tracking_outage(error)
        if outage is None:
            raise
        print(f"sweep: error: {outage}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as interruption:
        # SIGINT (Ctrl-C) -> 130, SIGTERM -> 143, as shells report them.
        signum = getattr(interruption, "signum", signal.SIGINT)
        print("sweep: interrupted; rerun with the same sweep_name to resume", file=sys.stderr)
        return 128 + int(signum)
    return 0


def _work_when_handed() -> int:
    """A prestarted worker (:mod:`sweeper.prestart`): import what a worker needs, wait for
    the command to hand it its arguments, then run as the worker it spawns would."""
    try:
        import sweeper.runner  # noqa: F401 - the imports this process was started early for
        from sweeper.tracking import import_tracking_store

        # The command's tracking store is this environment's, whose variables the command
        # hands over again: its code is the rest of what the worker's set-up would import.
        import_tracking_store()
        args = wait_for_work()
    except KeyboardInterrupt:  # Ctrl-C before it had work: nothing to resume or report
        return 130
    if args is None:  # the command ended (or failed) before it needed this worker
        return 0
    return main(args)


def _explicit_data(args: Sequence[str]) -> str:
    """The --data value when given on the command line (the champion entry point otherwise
    reloads the data the sweep recorded)."""
    if "--data" in args:
        index = list(args).index("--data")
        if index + 1 < len(args) and args[index + 1] != "insurance":
            return args[index + 1]
    return ""


def tracking_outage(error: BaseException) -> str | None:
    """A one-line message when ``error`` is the tracking server going away mid-sweep (after
    MLflow's bounded retries), else ``None``."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from requests.exceptions import ConnectionError as RequestsConnectionError

    text = str(error)
    lost = isinstance(error, RequestsConnectionError) or (
        isinstance(error, MlflowException)
        and ("Max retries exceeded" in text or "Failed to establish" in text)
    )
    if not lost:
        return None
    return (
        f"lost the MLflow tracking server at {mlflow.get_tracking_uri()} (still unreachable "
        "after retrying with backoff); restart it, then rerun with the same sweep_name to resume"
    )


if __name__ == "__main__":
    sys.exit(main())
