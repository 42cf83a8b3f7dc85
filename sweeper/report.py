"""What a person looks at after a sweep: per-family plots, the leaderboard, the champion report.

Everything here writes files (PNGs, CSV, JSON, one self-contained HTML page) for the caller
to log as MLflow artifacts; nothing here talks to MLflow or decides anything about the sweep.
Plots never fail a sweep: a plot that cannot be drawn (too few trials, nothing searched) is
skipped and the others are still written.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import html
import json
import logging
import math
import shutil
import struct
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from sweeper.study import FamilyResult
from sweeper.trial_attrs import ATTR_RMSE_STD

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn, see import_drawing
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FAMILY_PLOTS",
    "LEADERBOARD_COLUMNS",
    "ChampionFigures",
    "champion_figures",
    "champion_page",
    "family_plots",
    "import_drawing",
    "leaderboard_frame",
    "leaderboard_markdown",
]

_logger = logging.getLogger(__name__)

LEADERBOARD_COLUMNS = (
    "family",
    "complete",
    "pruned",
    "failed",
    "best_cv_rmse",
    "cv_rmse_std",
    "seconds",
    "test_rmse",
    "champion",
)

#: Permutation importance repeats: 5 shuffles per column keep the std meaningful and the
#: report a second or two on a few hundred test rows.
_PERMUTATION_REPEATS = 5
_DPI = 110

# --------------------------------------------------------------------------------------------
# Family plots
# --------------------------------------------------------------------------------------------


#: The plots :func:`family_plots` draws of each family's study, in this order.
FAMILY_PLOTS = ("optimization_history.png", "param_importances.png", "parallel_coordinate.png")


def import_drawing() -> None:
    """Import what drawing needs (matplotlib, Optuna's matplotlib plots), as a drawing helper
    does once at its start.

    Not imported with this module: the sweep's processes use it for the leaderboard and the
    champion's page alone, and the drawing is done in helpers (:mod:`sweeper.drawing`);
    matplotlib cost each of them 0.6 s of CPU at start-up on 2 cores, a worker's before its
    first trial.
    """
    from optuna.visualization import matplotlib  # noqa: F401 - its plots; matplotlib itself

    import sweeper.parallel_coordinate  # noqa: F401 - this project's plot


def family_plots(
    study: optuna.Study, out_dir: Path, *, only: Collection[str] | None = None
) -> list[Path]:
    """Draw the study's plots as PNGs in ``out_dir`` and return the paths written (``only``
    these of :data:`FAMILY_PLOTS` when given): Optuna's optimization history and parameter
    importances, and this project's parallel-coordinate plot
    (:mod:`sweeper.parallel_coordinate`, several times cheaper than Optuna's).

    ``optimization_history.png`` needs one complete trial; ``param_importances.png`` needs
    two complete trials and a searched parameter that took more than one value;
    ``parallel_coordinate.png`` needs one complete trial with a searched parameter. A plot
    whose needs are not met, or that fails to draw, is skipped (logged at WARNING for a
    failure), so the list may be shorter than three or empty.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    searched = sorted({name for t in complete for name in t.params})
    varied = [
        name
        for name in searched
        if len({repr(t.params[name]) for t in complete if name in t.params}) > 1
    ]

    from optuna.visualization import matplotlib as optuna_mpl

    from sweeper.parallel_coordinate import parallel_coordinate_figure

    planned: list[tuple[str, bool, Callable[[], Any]]] = [
        (
            "optimization_history.png",
            len(complete) >= 1,
            lambda: optuna_mpl.plot_optimization_history(study, target_name="CV rmse"),
        ),
        (
            "param_importances.png",
            len(complete) >= 2 and bool(varied),
            lambda: optuna_mpl.plot_param_importances(
                study,
                # Seeded: the same study draws the same picture.
                # PED-ANOVA: Optuna's quantile-based evaluator, ~50x faster than fANOVA
                # (0.3 s per 50-trial study) and deterministic.
                evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                params=varied,
                target_name="CV rmse",
            ),
        ),
        (
            "parallel_coordinate.png",
            len(complete) >= 1 and bool(searched),
            lambda: parallel_coordinate_figure(
                complete, searched, target_name="CV rmse", direction=study.direction
            ).axes[0],
        ),
    ]
    written: list[Path] = []
    if only is not None and not set(only) <= set(FAMILY_PLOTS):
        raise ValueError(
            f"family_plots: only must name plots of {FAMILY_PLOTS}, but got {tuple(only)}"
        )
    for name, possible, draw in planned:
        if not possible or (only is not None and name not in only):
            continue
        path = out_dir / name
        try:
            with _pyplot_agg() as plt:
                axes = draw()
                figure, ax = _figure_of(axes)
                try:
                    _prefix_title(ax, study.study_name)
                    figure.savefig(path, dpi=_DPI, bbox_inches="tight")
                finally:
                    plt.close(figure)
        except Exception as error:  # noqa: BLE001 - a missing plot must not fail the sweep
            _logger.warning(
                "skipped %s of study %s: %s: %s", name, study.study_name,
                type(error).__name__, error,
            )
            path.unlink(missing_ok=True)
            continue
        written.append(path)
    return written


@contextlib.contextmanager
def _pyplot_agg() -> Iterator[Any]:
    """pyplot on the Agg backend, with Optuna's ExperimentalWarning silenced.

    Optuna's matplotlib plots create figures through pyplot, so a GUI backend would try to open
    windows (or need a display). Agg is selected only while plotting; a backend that was
    already chosen is restored afterwards. Optuna also switches the global style to
    ``ggplot``; ``rc_context`` puts the caller's rcParams back.
    """
    import matplotlib
    import matplotlib.pyplot as plt

    previous = matplotlib.get_backend(auto_select=False)
    switch = previous is None or previous.lower() != "agg"
    if switch:
        plt.switch_backend("agg")
    try:
        with warnings.catch_warnings(), matplotlib.rc_context():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield plt
    finally:
        # None means nothing was chosen yet (a script): leave Agg, there is nothing to restore.
        if switch and previous is not None:
            plt.switch_backend(previous)


def _prefix_title(ax: Axes, prefix: str) -> None:
    """Put the study name in the plot's title (Optuna titles some plots left-aligned)."""
    titles = [ax.get_title(loc) for loc in ("center", "left", "right")]
    original = next((t for t in titles if t), "")
    for loc in ("center", "left", "right"):
        ax.set_title("", loc=loc)
    ax.set_title(f"{prefix}: {original.lower()}" if original else prefix)


def _figure_of(axes: Any) -> tuple[Figure, Axes]:
    """The figure and main axes of what an Optuna plot function returned."""
    from matplotlib.axes import Axes

    first = axes if isinstance(axes, Axes) else np.ravel(np.asarray(axes, dtype=object))[0]
    figure = first.get_figure()
    if figure is None:
        raise RuntimeError("the plot has no figure")
    return figure, first


# --------------------------------------------------------------------------------------------
# Leaderboard
# --------------------------------------------------------------------------------------------


def leaderboard_frame(
    results: Sequence[FamilyResult],
    champion_family: str | None,
    test_rmse: float | None,
) -> pd.DataFrame:
    """One row per family, best CV RMSE first and failed families (no best trial) last.

    Columns are :data:`LEADERBOARD_COLUMNS`. ``cv_rmse_std`` is the spread over the CV folds
    of the family's best trial; ``test_rmse`` is only on the champion's row (the test split
    is scored once, for the champion). Missing numbers are NaN.
    """
    rows = []
    for result in results:
        std = None if result.best is None else result.best.user_attrs.get(ATTR_RMSE_STD)
        is_champion = result.family == champion_family
        rows.append(
            {
                "family": result.family,
                "complete": result.n_complete,
                "pruned": result.n_pruned,
                "failed": result.n_failed,
                "best_cv_rmse": _float_or_nan(result.rmse),
                "cv_rmse_std": _float_or_nan(std),
                "seconds": float(result.seconds),
                "test_rmse": _float_or_nan(test_rmse if is_champion else None),
                "champion": is_champion,
            }
        )
    frame = pd.DataFrame(rows, columns=list(LEADERBOARD_COLUMNS))
    frame = frame.astype(
        {"complete": "int64", "pruned": "int64", "failed": "int64", "champion": "bool",
         "best_cv_rmse": "float64", "cv_rmse_std": "float64", "seconds": "float64",
         "test_rmse": "float64"}
    )
    # NaN sorts last; ties keep the family-name order select_champion uses.
    frame = frame.sort_values(
        ["best_cv_rmse", "family"], na_position="last", kind="stable"
    ).reset_index(drop=True)
    return frame


def leaderboard_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of a leaderboard (or any small frame).

    Numbers are right-aligned, floats shown with one decimal and thousands separators, NaN as
    an empty cell, ``True`` as ``yes``; ``|`` in text is escaped.
    """
    columns = [str(c) for c in frame.columns]
    numeric = [
        pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        for c in frame.columns
    ]
    header = "| " + " | ".join(_md_escape(c) for c in columns) + " |"
    rule = "| " + " | ".join("---:" if n else ":---" for n in numeric) + " |"
    lines = [header, rule]
    for row in frame.itertuples(index=False):
        cells = [_md_escape(_cell(value)) for value in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _float_or_nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _cell(value: Any) -> str:
    """One leaderboard cell as text (shared by the markdown and HTML tables)."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{float(value):,.1f}"
    return str(value)


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------------------------
# Champion report
# --------------------------------------------------------------------------------------------

#: File name -> (title, what it shows), in the order the report shows them.
_CHAMPION_PLOTS: Mapping[str, tuple[str, str]] = {
    "predicted_vs_actual.png": (
        "Predicted vs actual",
        "Test rows: predicted against actual target; the diagonal is a perfect prediction.",
    ),
    "residuals.png": (
        "Residuals",
        "Test rows: actual minus predicted, against the prediction and as a histogram.",
    ),
    "permutation_importance.png": (
        "Permutation importance",
        "How much the test RMSE grows when one raw input column is shuffled.",
    ),
}


@dataclasses.dataclass(frozen=True)
class ChampionFigures:
    """The champion's own figures, as :func:`champion_figures` wrote them into ``directory``:
    ``predicted_vs_actual.png``, ``residuals.png``, ``permutation_importance.png`` and
    ``permutation_importance.csv``."""

    directory: Path
    importances: pd.DataFrame


def champion_figures(
    model: Any, X_test: pd.DataFrame, y_test: pd.Series, *, family: str, out_dir: Path, seed: int
) -> ChampionFigures:
    """Draw the fitted ``model``'s figures on the held-out test part into ``out_dir``
    (created): the slow part of the report (a second or two), which depends only on the model
    and the test part, so it can be drawn before the sweep's leaderboard is final.

    Permutation importance is on the raw columns of ``X_test``, through the whole fitted
    pipeline, scored by RMSE and seeded with ``seed``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y_true = np.asarray(y_test, dtype=float)
    y_pred = np.asarray(model.predict(X_test), dtype=float)

    _save(lambda: _predicted_vs_actual(y_true, y_pred, family),
          out_dir / "predicted_vs_actual.png")
    _save(lambda: _residuals(y_true, y_pred, family), out_dir / "residuals.png")

    # On the raw columns through the whole pipeline: shuffling "region" shuffles all its
    # one-hot columns together, so the importance is per input a user knows. The compiled
    # pipeline (the served one, the same predictions) predicts 2-4x faster.
    increase = permutation_importance(
        _compiled_predict(model), X_test, y_test, n_repeats=_PERMUTATION_REPEATS, seed=seed
    )
    importances = pd.DataFrame(
        {
            "feature": [str(c) for c in X_test.columns],
            "rmse_increase_mean": increase.mean(axis=1),
            "rmse_increase_std": increase.std(axis=1),
        }
    ).sort_values("rmse_increase_mean", ascending=False, kind="stable")
    importances.to_csv(out_dir / "permutation_importance.csv", index=False)
    _save(lambda: _importance_plot(importances, family), out_dir / "permutation_importance.png")
    return ChampionFigures(out_dir, importances)


def champion_page(
    figures: ChampionFigures,
    *,
    family: str,
    config: Mapping[str, Any],
    cv_rmse: float,
    test_metrics: Mapping[str, float],
    leaderboard: pd.DataFrame,
    out_dir: Path,
    seed: int,
    extra_plots: Sequence[Path] = (),
    title: str | None = None,
) -> Path:
    """Complete the champion's report in ``out_dir`` around ``figures`` (copied in when drawn
    elsewhere) and return the path of ``report.html``. Cheap (no drawing): it is written once
    the leaderboard is final.

    The report's files: :class:`ChampionFigures`' four, ``leaderboard.csv``,
    ``champion_params.json`` and ``report.html``, a single self-contained page (images
    inlined) with the metrics, the leaderboard, the parameters and every plot.

    Args:
        figures: :func:`champion_figures` of the fitted champion on the test part.
        family: The champion's family.
        config: The champion's full configuration (fixed and searched parameters).
        cv_rmse: The champion's best mean CV RMSE.
        test_metrics: Test scores, e.g. ``{"test_rmse": ..., "test_mae": ..., "test_r2": ...}``.
        leaderboard: :func:`leaderboard_frame` of the sweep.
        out_dir: Where to write (created if missing).
        seed: The seed of the permutation importance shuffles (recorded with the parameters).
        extra_plots: More PNGs to embed after the champion's own (e.g. the champion family's
            :func:`family_plots`); missing files are left out.
        title: The page title; by default ``"Sweep champion: <family>"``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if figures.directory.resolve() != out_dir.resolve():
        for name in (*_CHAMPION_PLOTS, "permutation_importance.csv"):
            if (figures.directory / name).is_file():
                shutil.copyfile(figures.directory / name, out_dir / name)
    leaderboard.to_csv(out_dir / "leaderboard.csv", index=False)
    params = {
        "family": family,
        "params": dict(config),
        "cv_rmse": float(cv_rmse),
        "test_metrics": {k: float(v) for k, v in test_metrics.items()},
        "seed": seed,
    }
    (out_dir / "champion_params.json").write_text(
        json.dumps(params, indent=2, sort_keys=False, default=_json_default) + "\n"
    )

    shown = [(out_dir / name, *text) for name, text in _CHAMPION_PLOTS.items()]
    for path in extra_plots:
        path = Path(path)
        if path.is_file():
            label = path.stem.replace("_", " ").capitalize()
            shown.append((path, label, f"{family}: {label.lower()} of the study."))
    page = _html_page(
        title=title or f"Sweep champion: {family}",
        family=family,
        config=config,
        cv_rmse=cv_rmse,
        test_metrics=test_metrics,
        leaderboard=leaderboard,
        importances=figures.importances,
        figures=shown,
    )
    report = out_dir / "report.html"
    report.write_text(page, encoding="utf-8")
    return report


#: Rows per predict call when scoring the shuffled copies of the test part.
_PERMUTATION_BATCH_ROWS = 200_000


def permutation_importance(
    predict: Callable[[pd.DataFrame], Any],
    X: pd.DataFrame,
    y: Any,
    *,
    n_repeats: int,
    seed: int,
) -> np.ndarray:
    """How much the RMSE grows when each column of ``X`` is shuffled: an array of shape
    ``(n_columns, n_repeats)``.

    The same shuffles and numbers as scikit-learn's ``permutation_importance`` with
    ``scoring="neg_root_mean_squared_error"`` and ``random_state=seed``, but the shuffled copies
    are predicted together, in a few calls instead of one per shuffle: a tree ensemble's
    predict costs mostly per call and per tree, not per row (a HistGradientBoosting champion's
    31 predictions took 0.6 s, one).
    """
    if n_repeats < 1:
        raise ValueError(f"permutation_importance: n_repeats must be >= 1, but got {n_repeats}")
    # scikit-learn draws one seed, then shuffles every column with a generator made from it,
    # each repeat shuffling the column as the previous repeat left it.
    column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    frames = [X]
    for column in range(X.shape[1]):
        rng = np.random.RandomState(column_seed)
        permuted = X.copy()
        order = np.arange(len(X))
        for _ in range(n_repeats):
            rng.shuffle(order)
            shuffled = permuted.iloc[order, column]
            shuffled.index = permuted.index
            permuted[permuted.columns[column]] = shuffled
            frames.append(permuted.copy())
    per_call = max(1, _PERMUTATION_BATCH_ROWS // max(1, len(X)))
    predictions = [
        np.asarray(predict(pd.concat(frames[i:i + per_call], ignore_index=True)), dtype=float)
        for i in range(0, len(frames), per_call)
    ]
    errors = np.concatenate(predictions).reshape(len(frames), len(X)) - np.asarray(y, dtype=float)
    rmse = np.sqrt(np.mean(errors**2, axis=1))
    return (rmse[1:] - rmse[0]).reshape(X.shape[1], n_repeats)


def _compiled_predict(model: Any) -> Callable[[pd.DataFrame], Any]:
    """``model``'s compiled predict (:func:`sweeper.serving.compile_pipeline`, the served one)
    when it compiles, else its own."""
    from sweeper.serving import NotCompilable, compile_pipeline

    try:
        return compile_pipeline(model)
    except NotCompilable:
        return model.predict


def _new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
    from matplotlib.figure import Figure

    # A bare Figure (no pyplot): no backend, no global figure registry, nothing to close.
    return Figure(figsize=(width, height), layout="constrained")


def _save(draw: Callable[[], Figure], path: Path) -> None:
    import matplotlib.style  # a submodule: `import matplotlib` alone does not load it

    # Matplotlib's default look whatever the caller's rcParams (or a style Optuna left).
    with matplotlib.style.context("default"):
        draw().savefig(path, dpi=_DPI)


def _predicted_vs_actual(y_true: np.ndarray, y_pred: np.ndarray, family: str) -> Figure:
    figure = _new_figure(6.0, 5.4)
    ax = figure.subplots()
    ax.scatter(y_true, y_pred, s=14, alpha=0.6, edgecolors="none")
    low = float(min(y_true.min(), y_pred.min()))
    high = float(max(y_true.max(), y_pred.max()))
    ax.plot([low, high], [low, high], color="0.3", linewidth=1, linestyle="--", label="perfect")
    ax.set_ylabel("predicted")
    ax.set_title(f"{family}: predicted vs actual", fontsize=11)
    ax.set_xlabel(f"actual (test part, {len(y_true)} rows)")
    ax.legend(loc="upper left")
    return figure


def _residuals(y_true: np.ndarray, y_pred: np.ndarray, family: str) -> Figure:
    from matplotlib.ticker import MaxNLocator

    residual = y_true - y_pred
    figure = _new_figure(10.0, 4.2)
    scatter, histogram = figure.subplots(1, 2, width_ratios=(3, 2))
    scatter.scatter(y_pred, residual, s=14, alpha=0.6, edgecolors="none")
    scatter.axhline(0.0, color="0.3", linewidth=1, linestyle="--")
    scatter.set_xlabel("predicted")
    scatter.set_ylabel("actual - predicted")
    scatter.set_title(f"{family}: residuals on the test part", fontsize=11)
    histogram.hist(residual, bins=30)
    histogram.axvline(0.0, color="0.3", linewidth=1, linestyle="--")
    histogram.xaxis.set_major_locator(MaxNLocator(5))
    histogram.set_xlabel("actual - predicted")
    histogram.set_ylabel("rows")
    histogram.set_title("residual distribution", fontsize=11)
    return figure


def _importance_plot(importances: pd.DataFrame, family: str) -> Figure:
    ordered = importances.iloc[::-1]  # barh draws bottom-up: largest on top
    figure = _new_figure(6.4, 0.45 * len(ordered) + 1.4)
    ax = figure.subplots()
    ax.barh(
        ordered["feature"],
        ordered["rmse_increase_mean"],
        xerr=ordered["rmse_increase_std"],
        color="tab:blue",
        ecolor="0.3",
    )
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    ax.set_xlabel("test RMSE increase when the column is shuffled")
    ax.set_title(f"{family}: permutation importance ({_PERMUTATION_REPEATS} repeats)",
                 fontsize=11)
    return figure


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.meta { color: #59636e; margin-top: 0; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { border: 1px solid #d1d9e0; padding: .3rem .6rem; }
th { background: #f6f8fa; text-align: left; } td.num { text-align: right;
     font-variant-numeric: tabular-nums; }
tr.champion td { background: #dafbe1; font-weight: 600; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr));
         gap: 1.5rem; align-items: start; }
figure { margin: 0; } figure h3 { font-size: 1rem; margin: 0 0 .4rem; }
figure img { max-width: 100%; border: 1px solid #d1d9e0; }
figure.wide { grid-column: 1 / -1; }
figcaption { color: #59636e; font-size: .9rem; }
code { font-size: .85rem; }
"""


def _html_page(
    *,
    title: str,
    family: str,
    config: Mapping[str, Any],
    cv_rmse: float,
    test_metrics: Mapping[str, float],
    leaderboard: pd.DataFrame,
    importances: pd.DataFrame,
    figures: Sequence[tuple[Path, str, str]],
) -> str:
    esc = html.escape
    metrics = {"cv_rmse": float(cv_rmse), **{k: float(v) for k, v in test_metrics.items()}}
    metric_rows = "".join(
        f"<tr><th>{esc(k)}</th><td class=\"num\">{esc(_metric(k, v))}</td></tr>"
        for k, v in metrics.items()
    )
    param_rows = "".join(
        f"<tr><th>{esc(str(k))}</th><td><code>{esc(_param(v))}</code></td></tr>"
        for k, v in sorted(config.items())
    )
    importance_rows = "".join(
        f"<tr><td>{esc(r.feature)}</td><td class=\"num\">{r.rmse_increase_mean:,.1f}</td>"
        f"<td class=\"num\">{r.rmse_increase_std:,.1f}</td></tr>"
        for r in importances.itertuples(index=False)
    )
    figure_blocks = "".join(
        f"<figure id=\"{esc(path.stem)}\"{_wide(path)}><h3>{esc(label)}</h3>"
        f"<img src=\"data:image/png;base64,{_b64(path)}\" alt=\"{esc(label)}\" "
        f"title=\"{esc(label)}\"><figcaption>{esc(caption)}</figcaption></figure>"
        for path, label, caption in figures
    )
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p class="meta">Champion family <strong>{esc(family)}</strong>, chosen on cross-validated RMSE;
the test part was scored once, after the choice. Generated {esc(generated)}.</p>
<h2>Metrics</h2>
<table class="metrics">{metric_rows}</table>
<h2>Leaderboard</h2>
{_leaderboard_html(leaderboard)}
<h2>Champion parameters</h2>
<table class="params">{param_rows}</table>
<h2>Plots</h2>
<div class="plots">{figure_blocks}</div>
<h2>Permutation importance</h2>
<table class="importance"><tr><th>feature</th><th>rmse increase (mean)</th>
<th>rmse increase (std)</th></tr>{importance_rows}</table>
</body>
</html>
"""


def _leaderboard_html(frame: pd.DataFrame) -> str:
    esc = html.escape
    numeric = {
        c for c in frame.columns
        if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    }
    head = "".join(f"<th>{esc(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.to_dict("records"):
        cells = "".join(
            f"<td class=\"num\">{esc(_cell(v))}</td>" if c in numeric else f"<td>{esc(_cell(v))}</td>"
            for c, v in record.items()
        )
        css = " class=\"champion\"" if record.get("champion") else ""
        rows.append(f"<tr{css}>{cells}</tr>")
    return f"<table class=\"leaderboard\"><tr>{head}</tr>{''.join(rows)}</table>"


def _metric(name: str, value: float) -> str:
    # r2 lives in [-inf, 1]: one decimal would hide everything that matters.
    return f"{value:.4f}" if name.endswith("r2") else f"{value:,.1f}"


def _param(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _wide(path: Path) -> str:
    """Span the whole grid row for a wide image (the residuals' two panels)."""
    # A PNG starts with an 8-byte signature and the IHDR chunk: width, height at bytes 16-24.
    header = path.read_bytes()[:24]
    if len(header) < 24 or header[12:16] != b"IHDR":
        return ""
    width, height = struct.unpack(">II", header[16:24])
    return ' class="wide"' if width > 1.6 * height else ""


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")
