"""Fixtures of the SLURM tests: a one-node cluster on this machine (``scripts/slurm/cluster.sh``,
brought up for the session and down after it unless it was up already) and the tiny pipeline."""

from __future__ import annotations

import subprocess

import pytest

from sweeps import CLUSTER
from tiny_bert import save_tiny_bert
from training.runs import tiny_run_overrides


@pytest.fixture(scope="session", autouse=True)
def cluster():
    """The one-node cluster, up (installed first if need be) for the whole session."""
    was_up = subprocess.run(["bash", CLUSTER, "status"], capture_output=True).returncode == 0
    up = subprocess.run(["bash", CLUSTER, "up"], capture_output=True, text=True, timeout=900)
    assert up.returncode == 0, up.stderr
    yield
    if not was_up:
        subprocess.run(["bash", CLUSTER, "down"], check=True, timeout=120)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, minilm_dir) -> list[str]:
    """The tiny pipeline's overrides (a random hidden-32 BERT, 48 SST-2 sentences), no run_dir."""
    model = save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), minilm_dir)
    cache = tmp_path_factory.mktemp("feature_cache")
    overrides = tiny_run_overrides(model, "unused", cache)
    return [o for o in overrides if not o.startswith("run_dir=")]
