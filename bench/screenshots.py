"""Regenerate the README screenshots from a small real sweep.

    .venv/bin/python bench/screenshots.py            # writes docs/ui-runs.png, docs/report.png

``docs/ui-runs.png``: the MLflow UI's runs list sorted by rmse (champion on top), as
``tests/test_ui.py`` checks it. ``docs/report.png``: the champion's ``report.html`` that the sweep logs on its root
run (:func:`sweeper.report.champion_page`), rendered by headless Chromium. Needs the system
Chromium (``apt-get install -y chromium``) and the dev requirements (Playwright); takes about
a minute. The sweep runs in a temporary folder, removed afterwards unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from ui_helpers import (  # noqa: E402
    VIEWPORT,
    chromium,
    mlflow_server,
    open_runs_table,
    run_small_sweep,
    screenshot_report,
)

EXPERIMENT = "readme"
SWEEP_NAME = "readme"
FAMILIES = ("elastic_net", "hist_gradient_boosting", "xgboost")
N_TRIALS = 6


def download_report(workdir: Path, tracking_uri: str) -> Path:
    """The champion report the sweep logged on its root run (``report/report.html``)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (root,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`sweep.role` = 'sweep'"
    )
    local = client.download_artifacts(root.info.run_id, "report", str(workdir))
    return Path(local) / "report.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNGs")
    parser.add_argument("--keep", type=Path, help="run the sweep here and keep it")
    args = parser.parse_args(argv)

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="sweep-screenshots-"))
    workdir = workdir.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    try:
        print(f"sweep {SWEEP_NAME}: {', '.join(FAMILIES)} x {N_TRIALS} trials in {workdir}")
        run_small_sweep(
            workdir, tracking_uri=uri, experiment=EXPERIMENT, sweep_name=SWEEP_NAME,
            families=FAMILIES, n_trials=N_TRIALS,
        )
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        report_html = download_report(workdir, uri)
        from mlflow import MlflowClient

        experiment_id = MlflowClient(uri).get_experiment_by_name(EXPERIMENT).experiment_id
        with mlflow_server(uri, workdir) as url, chromium() as browser:
            page = browser.new_page(viewport=VIEWPORT)
            open_runs_table(page, url, experiment_id)
            page.screenshot(path=str(args.out / "ui-runs.png"))
            page.close()
            screenshot_report(browser, report_html, args.out / "report.png")
        for name in ("ui-runs.png", "report.png"):
            print(f"wrote {args.out / name}")
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
