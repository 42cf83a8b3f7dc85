"""Drawing cost of a family's plots: this project's parallel-coordinate plot against Optuna's.

    .venv/bin/python bench/plots.py [--trials 50] [--repeats 3]

For every family, a study of ``--trials`` trials sampled at random from its search space (with
made-up CV values: drawing cost depends on the parameters and trial count, not on the values)
is drawn to PNG the way the sweep draws it (:func:`sweeper.report.family_plots`), and with
Optuna's own ``plot_parallel_coordinate`` saved the same way (``bbox_inches="tight"``, the
same DPI). Prints a markdown table of the median seconds per plot, measured side by side in
one process after a warm-up drawing of each kind.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as optuna_mpl

    from objectives import FAMILIES
    from sweeper import report

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    values = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="bench-plots-") as scratch:
        out = Path(scratch)

        def optunas(study: optuna.Study) -> None:
            ax = optuna_mpl.plot_parallel_coordinate(study, target_name="CV rmse")
            ax.figure.savefig(out / "optuna.png", dpi=report._DPI, bbox_inches="tight")
            plt.close(ax.figure)

        def ours(study: optuna.Study, plot: str) -> None:
            report.family_plots(study, out, only=(plot,))

        rows = []
        for name, family in FAMILIES.items():
            space = family.search_space()
            study = optuna.create_study(study_name=name, sampler=optuna.samplers.RandomSampler(0))
            for _ in range(args.trials):
                trial = study.ask()
                space.suggest(trial)
                study.tell(trial, 4_500.0 + 500.0 * values.random())
            kinds = {
                "Optuna's parallel coordinate": lambda s=study: optunas(s),
                **{plot: (lambda s=study, p=plot: ours(s, p)) for plot in report.FAMILY_PLOTS},
            }
            for draw in kinds.values():  # warm-up: fonts, caches
                draw()
            timings = {}
            for kind, draw in kinds.items():
                seconds = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    draw()
                    seconds.append(time.perf_counter() - start)
                timings[kind] = statistics.median(seconds)
            rows.append((name, len(space.searched), timings))

    kinds = list(rows[0][2])
    print(f"Median seconds per plot, {args.trials} trials, {args.repeats} repeats "
          f"(this project's plots: `sweeper.report.family_plots`).\n")
    print("| family | searched | " + " | ".join(kinds) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in kinds) + " |")
    for name, searched, timings in rows:
        print(f"| {name} | {searched} | " + " | ".join(f"{timings[k]:.3f}" for k in kinds) + " |")


if __name__ == "__main__":
    main()
