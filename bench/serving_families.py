"""Single-row predict of the served model against the fitted pipeline, for every family.

    .venv/bin/python bench/serving_families.py [--repeats 300]

For every family, the largest model its search space allows (the upper bound of every
size parameter: trees, iterations, depth, leaves; the lower bound of every ``min_*``
parameter; the search space's fixed parameters; everything else the library default) is fitted
on insurance, and one row is predicted ``--repeats`` times by the served model
(:class:`sweeper.serving.ServedPipeline`: the compiled pipeline, a tree walk for a tree
ensemble) and by the fitted scikit-learn pipeline, alternating, in one thread. Prints a
markdown table of the medians. No server and no MLflow: what the model itself costs a request.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Parameters that make a model larger as they grow.
SIZE = ("n_estimators", "max_iter", "max_depth", "max_leaf_nodes")


def largest(space: Any) -> dict[str, Any]:
    """The search space's fixed parameters plus its largest model's size parameters."""
    params = dict(space.fixed)
    for name, distribution in space.searched.items():
        if name in SIZE:
            params[name] = distribution.high
        elif name.startswith("min_"):
            params[name] = distribution.low
    return params


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import threadpoolctl

    from objectives import FAMILIES
    from sweeper.data import load_dataset
    from sweeper.serving import ServedPipeline, check_rows

    dataset = load_dataset("insurance", "charges")
    X, y = dataset.features, dataset.labels
    row = X.head(1)
    print("| family | largest model | served model (ms) | fitted pipeline (ms) | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
    with threadpoolctl.threadpool_limits(1):
        for name, family in FAMILIES.items():
            params = largest(family.search_space())
            pipeline = family.build_pipeline(
                params, numeric=dataset.numeric_columns, categorical=dataset.categorical_columns,
                random_state=0,
            ).fit(X, y)
            served = ServedPipeline(pipeline, check_rows(X))
            if served.fast is None:
                raise SystemExit(f"{name}: not served compiled: {served.fallback_reason}")
            fast = slow = 0.0
            for _ in range(3):  # alternating rounds: both see the same machine
                fast += median_ms(partial(served.predict, row), args.repeats // 3) / 3
                slow += median_ms(partial(pipeline.predict, row), args.repeats // 3) / 3
            shown = ", ".join(f"{k}={v}" for k, v in params.items() if k in SIZE or
                              k.startswith("min_"))
            print(f"| {name} | {shown} | {fast:.2f} | {slow:.2f} | {slow / fast:.0f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
