"""Hydra multiruns: a two-job sweep through submitit_local and its report (slow), and a failing
job whose reason reaches its own log and the report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cofi_lightning.tools.report import collect_runs

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_submitit_local_sweep_and_report(sweep_overrides, train_cli, tmp_path):
    sweep = tmp_path / "sweep"
    overrides = list(sweep_overrides)
    train_cli(
        "-m",
        "hydra=submitit_local",
        *overrides,
        "pruning.target_sparsity=0.2,0.3",
        f"hydra.sweep.dir={sweep}",
        "hydra.launcher.timeout_min=20",
        "hydra.launcher.cpus_per_task=1",
        timeout=1200,
    )
    results = sorted(sweep.glob("*/results.json"))
    names = [re.sub(r"_[0-9a-f]{8}$", "", p.parent.name) for p in results]
    assert names == ["sst2_s0.2_full_seed57", "sst2_s0.3_full_seed57"]
    targets = [json.loads(p.read_text())["target_sparsity"] for p in results]
    assert targets == [0.2, 0.3]

    report = subprocess.run(
        [sys.executable, "-m", "cofi_lightning.tools.report", str(sweep)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-4000:]
    text = (sweep / "report" / "report.md").read_text()
    assert "| sst2 | full | 20 |" in text and "| sst2 | full | 30 |" in text
    assert (sweep / "report" / "sst2_metric_vs_sparsity.png").is_file()


def test_failed_job_logs_its_error_for_the_report(sweep_overrides, train_cli, tmp_path):
    """A multirun goes on after a failing job; the reason is in that job's train.log at once."""
    sweep = tmp_path / "sweep"
    overrides = list(sweep_overrides)
    proc = train_cli(
        "-m",
        *overrides,
        "pruning.target_sparsity=1.5",
        f"hydra.sweep.dir={sweep}",
        check=False,
        timeout=300,
    )
    assert proc.returncode != 0
    (job,) = sweep.glob("sst2_s1.5_full_seed57_*")
    log = (job / "train.log").read_text()
    assert "pruning.target_sparsity must be in [0, 1), got 1.5" in log
    runs, problems = collect_runs(sweep)
    assert runs == [] and [p.status for p in problems] == ["failed"]
    assert "pruning.target_sparsity must be in [0, 1)" in problems[0].reason
