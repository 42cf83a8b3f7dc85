"""Browser helpers shared by ``tests/test_ui.py`` and ``bench/screenshots.py``.

A small real sweep into a throwaway SQLite store, ``mlflow server`` on it, and the system
Chromium driven by Playwright. Test-only code: the sweep itself never imports Playwright.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from conftest import free_port, running_server, subprocess_env

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[1]

#: CI installs Debian's ``chromium`` package; Playwright's own browser download is never used.
CHROMIUM = Path(os.environ.get("SWEEP_CHROMIUM", "/usr/bin/chromium"))
# No sandbox: CI runs as root in a container. The rest keeps Chromium from phoning home.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
VIEWPORT = {"width": 1600, "height": 900}


class BrowserMissing(RuntimeError):
    """The system Chromium (or Playwright) is not installed."""


def child_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """Environment for ``sweep.py`` and ``mlflow server``: :func:`conftest.subprocess_env`
    (this virtualenv first on PATH, no inherited run, experiment or stores), plus ``base``,
    ``extra`` and no MLflow telemetry."""
    return subprocess_env(MLFLOW_DISABLE_TELEMETRY="true", **dict(base or {}), **extra)


def run_small_sweep(
    workdir: Path,
    *,
    tracking_uri: str,
    experiment: str,
    sweep_name: str,
    families: Sequence[str] = ("elastic_net", "xgboost"),
    n_trials: int = 3,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``sweep.py`` in a child process (like ``mlflow run`` does) into ``tracking_uri``.

    Raises:
        RuntimeError: The sweep exited non-zero; the message carries its output.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, str(ROOT / "sweep.py"),
        "--n_trials", str(n_trials),
        "--families", ",".join(families),
        "--sweep_name", sweep_name,
        "--storage", str(workdir / "optuna.journal"),
    ]
    done = subprocess.run(
        command,
        cwd=workdir,  # default artifact root (./mlruns) lands in the temp folder
        env=child_env(env, MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_EXPERIMENT_NAME=experiment),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sweep.py failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


@contextlib.contextmanager
def mlflow_server(
    backend_store_uri: str, workdir: Path, *, startup_timeout: float = 120
) -> Iterator[str]:
    """Run ``mlflow server`` on ``backend_store_uri``; yield its base URL once ``/health``
    answers, and stop it afterwards. Its log is ``workdir/mlflow-server.log``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_store_uri,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    with running_server(
        argv,
        cwd=workdir,
        # The UI only reads runs: the job runner would add ~20 s to the start for nothing.
        env=child_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        log_path=workdir / "mlflow-server.log",
        ready_url=f"{url}/health",
        timeout=startup_timeout,
    ):
        yield url


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """The system Chromium, headless, through Playwright.

    Raises:
        BrowserMissing: Chromium or Playwright is not installed (never downloaded here).
    """
    if not CHROMIUM.exists():
        raise BrowserMissing(
            f"Chromium not found at {CHROMIUM}: install it (`apt-get install -y chromium`, as "
            ".ci/run does) or set SWEEP_CHROMIUM to its path"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BrowserMissing(
            "Playwright is not installed: `pip install -r requirements-dev.txt -c constraints.txt`"
        ) from None
    with sync_playwright() as playwright:
        # A fresh temporary profile per launch: no state leaks between runs.
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def runs_url(base_url: str, experiment_id: str, *, order_by: str = "metrics.`rmse`") -> str:
    """The experiment's "Training runs" tab sorted ascending by ``order_by``.

    MLflow 3 opens an experiment on its overview; the runs table is the ``/runs`` route, and
    the sort lives in the hash route's query (``orderByKey``/``orderByAsc``).
    """
    query = urllib.parse.urlencode({"orderByKey": order_by, "orderByAsc": "true"})
    return f"{base_url}/#/experiments/{experiment_id}/runs?{query}"


def open_runs_table(
    page: Page,
    base_url: str,
    experiment_id: str,
    *,
    columns: Sequence[str] = ("rmse", "champion"),
    timeout_ms: float = 60_000,
) -> None:
    """Open the runs table sorted by rmse and show ``columns`` (metric, param or tag names).

    Metric columns are hidden by default and are not in the URL, so they are picked in the
    "Columns" menu like a user would.
    """
    page.goto(runs_url(base_url, experiment_id))
    columns_button = page.get_by_role("button", name="Columns", exact=True)
    columns_button.wait_for(timeout=timeout_ms)
    # MLflow 3.17 opens its "Assistant" side panel on the first visit; it hides half the table.
    close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close.count():
        close.first.click()
    columns_button.click()
    search = page.get_by_placeholder("Search columns")
    tree = page.get_by_test_id("column-selector-tree")
    for name in columns:
        search.fill(name)
        # The menu is a tree of checkbox nodes (no ARIA checkboxes); match the node's label.
        node = tree.locator('[class*="-tree-treenode"]').filter(
            has_text=re.compile(rf"^\s*{re.escape(name)}\s*$")
        ).first
        box = node.locator('[class*="-tree-checkbox"]').first
        if "tree-checkbox-checked" not in (box.get_attribute("class", timeout=timeout_ms) or ""):
            box.click()
    search.fill("")
    page.keyboard.press("Escape")
    for name in columns:
        page.get_by_role("columnheader", name=name, exact=True).first.wait_for(timeout=timeout_ms)
    # The page polls for new runs, so it never goes network-idle: wait for a run link instead.
    page.locator('[role="row"] a[href*="/runs/"]').first.wait_for(timeout=timeout_ms)


def run_names(page: Page) -> list[str]:
    """The run names of the table's rows, top to bottom."""
    links = page.locator('[role="row"] a[href*="/runs/"]')
    names: list[str] = []
    for text in links.all_inner_texts():
        text = text.strip()
        if text and text not in names:
            names.append(text)
    return names


def header_names(page: Page) -> list[str]:
    """The visible column headers of the runs table."""
    headers = page.get_by_role("columnheader")
    return [h.strip() for h in headers.all_inner_texts() if h.strip()]


def screenshot_report(browser: Browser, report_html: Path, out: Path) -> Path:
    """Render a self-contained HTML report (``file://``) and save a full-page screenshot."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(report_html.resolve().as_uri())
        page.wait_for_load_state("load")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
    finally:
        page.close()
    return out
