"""Under SLURM the trainer leaves requeueing to submitit (Lightning's SIGUSR1 handler disarmed)."""

from __future__ import annotations

from lightning.pytorch.plugins.environments import SLURMEnvironment

from cofi_lightning.run.context import cluster_plugins


def test_slurm_jobs_disarm_lightnings_requeue(monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    (env,) = cluster_plugins()
    assert isinstance(env, SLURMEnvironment) and env.auto_requeue is False


def test_no_cluster_plugin_outside_slurm(monkeypatch):
    for key in ("SLURM_NTASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(key, raising=False)
    assert cluster_plugins() == []
