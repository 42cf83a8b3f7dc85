"""The sweep's Optuna storage opens in optuna-dashboard as it is (README: `optuna-dashboard
optuna-sweeps.journal`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import free_port
from objectives import FAMILIES
from sweeper.runner import library_defaults
from sweeper.study import join_family_study, open_storage

pytestmark = pytest.mark.e2e


def test_optuna_dashboard_lists_the_family_studies_and_their_trials(tmp_path: Path) -> None:
    journal = tmp_path / "optuna-sweeps.journal"
    storage = open_storage(str(journal))
    family = FAMILIES["elastic_net"]
    study, _ = join_family_study(
        storage, "dash.elastic_net", seed=0, n_trials=3, first_params=library_defaults(family),
        fingerprint={"n_trials": 3}, create_run=lambda: "run-id",
    )
    study.optimize(lambda trial: trial.suggest_float("alpha", 1e-3, 10.0, log=True), n_trials=3)
    port = free_port()
    dashboard = Path(sys.executable).parent / "optuna-dashboard"
    server = subprocess.Popen(
        [str(dashboard), str(journal), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = requests.get(f"http://127.0.0.1:{port}/api/studies", timeout=2).json()
                break
            except requests.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("optuna-dashboard did not come up")
                time.sleep(0.3)
        (summary,) = studies["study_summaries"]
        assert summary["study_name"] == "dash.elastic_net"
        detail = requests.get(
            f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}", timeout=10
        ).json()
        assert [t["state"] for t in detail["trials"]] == ["Complete"] * 3
    finally:
        server.terminate()
        server.wait(timeout=30)
