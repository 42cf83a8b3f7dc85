"""Command-line entry point of the sweep (``mlflow run . -e sweep`` runs this file).

Usage: ``python sweep.py --n_trials 50 --families all --data insurance ...``; see
``python sweep.py --help`` and the README. A bad input ends with one line on stderr and exit
code 2; an interruption with exit code 130 (Ctrl-C) or 143 (SIGTERM).
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence

from sweeper.config import parse_config
from sweeper.errors import SweepError


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sweep from command-line arguments; return the process exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = parse_config(argv)
        # Imported late so that `--help` and bad arguments answer without loading MLflow.
        from sweeper.runner import run_sweep

        run_sweep(config)
    except SweepError as error:
        print(f"sweep: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interruption:
        # SIGINT (Ctrl-C) -> 130, SIGTERM -> 143, as shells report them.
        signum = getattr(interruption, "signum", signal.SIGINT)
        print("sweep: interrupted; rerun with the same sweep_name to resume", file=sys.stderr)
        return 128 + int(signum)
    return 0


if __name__ == "__main__":
    sys.exit(main())
