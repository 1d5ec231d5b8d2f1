"""Helpers of the SLURM tests (a plain module: importable from test files and the conftest):
``hydra=submitit_slurm`` sweeps driven in the background and the SLURM commands that watch and
steer their jobs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "scripts" / "slurm" / "cluster.sh"
#: The launcher settings of every sweep here: the cluster's partition, one CPU and 1 GB a task.
SLURM = (
    "hydra=submitit_slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}


def slurm(*args: str) -> str:
    """Run a SLURM command (``squeue``, ``scontrol``) and return its output."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr.strip()}"
    return done.stdout


def wait_until(ready: Callable[[], object], what: str, timeout: float = 300) -> object:
    """Poll ``ready`` every half second until it returns something true; fail naming ``what``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = ready()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"waited {timeout:.0f} s for {what}")


class Sweep:
    """``python train.py -m <SLURM> <args> hydra.sweep.dir=<directory>``, running in the
    background (the driver submits the array and waits for it); its output goes to
    ``<directory>.log``."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.dir = directory
        self.output = directory.with_name(directory.name + ".log")
        cmd = [sys.executable, "train.py", "-m", *SLURM, *args, f"hydra.sweep.dir={directory}"]
        with self.output.open("w") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT
            )

    def wait(self, timeout: float = 360) -> int:
        """The driver's exit status, once every job of the sweep has ended."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"the sweep {self.dir} ran over {timeout} s:\n{self.tail()}")

    def tail(self) -> str:
        return self.output.read_text()[-3000:]

    def jobs(self) -> list[str]:
        """The SLURM ids of the sweep's jobs that started: ``<array>_<index>`` for the tasks of an
        array, the plain id for a sweep of one job (submitit submits no array for it)."""
        folder = self.dir / ".submitit"
        found = {p.parent.name for p in folder.glob("*/*_log.err")} if folder.is_dir() else set()
        return sorted(found, key=lambda job: [int(n) for n in job.split("_")])

    def log(self, job: str, stream: str = "err", task: int = 0) -> str:
        """The SLURM log of one task of a job (its stderr or stdout, every attempt appended)."""
        path = self.dir / ".submitit" / job / f"{job}_{task}_log.{stream}"
        return path.read_text() if path.is_file() else ""


def job_state(job: str) -> str:
    """The state squeue reports for a job (``PENDING``, ``RUNNING``...), "" once it left."""
    return slurm("squeue", "-h", "-j", job, "-o", "%T").strip()


def elapsed_minutes(job: str) -> float:
    """How long a running job has run, from squeue's ``[d-][h:]m:s``."""
    parts = [int(p) for p in re.split("[-:]", slurm("squeue", "-h", "-j", job, "-o", "%M"))]
    seconds = sum(p * f for p, f in zip(reversed(parts), (1, 60, 3600, 86400), strict=False))
    return seconds / 60


def restarts(job: str) -> int:
    """How many times SLURM has requeued a job (``Restarts=`` of ``scontrol show job``)."""
    return int(re.search(r"Restarts=(\d+)", slurm("scontrol", "show", "job", job)).group(1))
