"""Sweeps on a real SLURM scheduler (``make test-slurm``): what submitit's local executor never
does. A job array with ``array_parallelism``; a time limit that falls mid-prune (``--signal=USR2``
before it, submitit's checkpoint and requeue); preemption (``scontrol requeue``: SIGTERM, then the
job starts again); DDP ranks launched by ``srun``; a failing job in the middle of an array. The
cluster has no accounting (``sacct`` answers nothing), as some real ones.

Every job is the tiny pipeline of ``tests/training`` (seconds); the requeue tests prune longer, so
that the signal lands inside the prune stage, and compare the export byte for byte with an
uninterrupted run of the same config.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from sweeps import ENV, REPO, Sweep, elapsed_minutes, job_state, restarts, slurm, wait_until

pytestmark = pytest.mark.slurm

#: A prune stage of about a minute (300 steps, a checkpoint every 5): long enough for a signal
#: to land in it.
LONG_PRUNE = (
    "pruning.epochs=50",
    "pruning.checkpoint_every_steps=5",
    "pruning.eval_every_steps=30",
)


def report(sweep_dir) -> str:
    """Run the report over a sweep; return its ``report.md``."""
    done = subprocess.run(
        [sys.executable, "-m", "cofi_lightning.tools.report", str(sweep_dir)],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return (sweep_dir / "report" / "report.md").read_text()


def export_bytes(run_dir) -> bytes:
    return (run_dir / "pruned_model" / "model.safetensors").read_bytes()


def in_prune(sweep: Sweep, run_dir) -> str | None:
    """The job id once the job has written a prune checkpoint (it is mid-prune), else None."""
    jobs = sweep.jobs()
    if jobs and (run_dir / "prune" / "checkpoints" / "last.ckpt").is_file():
        return jobs[0]
    return None


#: How often slurmctld checks time limits and sends their warning signals (fixed in SLURM).
SLURM_TIME_LIMIT_PASS_S = 30


@pytest.fixture(scope="module")
def requeued(pipeline, tmp_path_factory) -> dict:
    """The long-prune config three times at once: uninterrupted outside SLURM (the reference),
    preempted mid-prune (``scontrol requeue``), and past its time limit mid-prune: its limit is
    cut to end within three minutes, so SLURM sends USR2 at its next pass (``signal_delay_s``
    before the limit) and submitit requeues the job; it gets its 10 minutes back while it waits
    in the queue, so the second attempt runs to the end. Returns the run directories, the two
    sweeps and their jobs."""
    root = tmp_path_factory.mktemp("requeue")
    runs = {name: root / name for name in ("reference", "preempted", "timed_out")}
    cmd = [sys.executable, "train.py", *pipeline, *LONG_PRUNE, f"run_dir={runs['reference']}"]
    reference = subprocess.Popen(
        cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    sweeps = {
        name: Sweep(root / f"{name}_sweep", *pipeline, *LONG_PRUNE, f"run_dir={runs[name]}", *extra)
        for name, extra in (
            ("preempted", ()),
            ("timed_out", ("hydra.launcher.signal_delay_s=450",)),
        )
    }
    preempted = wait_until(lambda: in_prune(sweeps["preempted"], runs["preempted"]), "prune")
    slurm("scontrol", "requeue", preempted)  # what preemption does: SIGTERM, back to the queue
    timed_out = wait_until(lambda: in_prune(sweeps["timed_out"], runs["timed_out"]), "prune")
    # Frozen mid-prune until SLURM's time-limit pass (every 30 s) finds the limit near: the USR2
    # reaches the process in the prune stage however fast this machine prunes (SLURM wakes a
    # stopped job to signal it; the test wakes it after one pass if SLURM did not).
    slurm("scancel", "--signal=STOP", timed_out)
    limit = int(elapsed_minutes(timed_out)) + 3
    slurm("scontrol", "update", f"JobId={timed_out}", f"TimeLimit={limit}")
    wake = time.monotonic() + SLURM_TIME_LIMIT_PASS_S + 10

    def requeued_once() -> bool:
        if time.monotonic() > wake:
            slurm("scancel", "--signal=CONT", timed_out)
        return restarts(timed_out) > 0

    wait_until(requeued_once, "submitit to requeue the job", 120)
    slurm("scontrol", "update", f"JobId={timed_out}", "TimeLimit=10")  # the next attempt's limit
    for sweep in sweeps.values():
        assert sweep.wait() == 0, sweep.tail()
    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err.decode()[-3000:]
    return {
        "runs": runs,
        "sweeps": sweeps,
        "jobs": {"preempted": preempted, "timed_out": timed_out},
    }


def test_tasks_per_node_must_match_devices_before_anything_is_queued(pipeline, tmp_path):
    queued = slurm("squeue", "-h", "-o", "%i")
    sweep = Sweep(tmp_path / "sweep", *pipeline, "trainer=ddp", "hydra.launcher.tasks_per_node=1")
    assert sweep.wait(timeout=120) == 1
    lines = [ln for ln in sweep.output.read_text().splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert "hydra.launcher.tasks_per_node=1 (x nodes=1) but trainer.devices=2" in lines[0]
    assert not sweep.dir.exists()  # no job folder, no run directory
    assert slurm("squeue", "-h", "-o", "%i") == queued


def test_array_of_two_jobs_and_its_report(pipeline, tmp_path):
    sweep = Sweep(
        tmp_path / "sweep", *pipeline, "pruning.target_sparsity=0.2,0.3",
        "hydra.launcher.array_parallelism=2",
    )  # fmt: skip
    assert sweep.wait() == 0, sweep.tail()
    (script,) = sweep.dir.glob(".submitit/*/*_submission.sh")
    assert "#SBATCH --array=0-1%2" in script.read_text()  # one array, both tasks at once
    assert len(sweep.jobs()) == 2
    results = sorted(sweep.dir.glob("*/results.json"))
    assert [json.loads(p.read_text())["target_sparsity"] for p in results] == [0.2, 0.3]
    text = report(sweep.dir)
    assert "| sst2 | full | 20 |" in text and "| sst2 | full | 30 |" in text
    assert "0 missing or failed jobs" in text


def test_failed_job_in_an_array_is_reported_with_its_slurm_log(pipeline, shared_dir, tmp_path):
    """rte's training labels are out of range; sst2 and mrpc, before and after it, finish."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    mirror = tmp_path / "data"
    for task in ("sst2", "mrpc", "rte"):
        (mirror / "glue" / task).mkdir(parents=True)
        for split in ("train", "validation"):
            source = shared_dir / "data" / "glue" / task / f"{split}.parquet"
            (mirror / "glue" / task / source.name).symlink_to(source)
    bad = mirror / "glue" / "rte" / "train.parquet"
    table = pq.read_table(bad)
    bad.unlink()
    labels = pa.array([5] * table.num_rows, pa.int64())
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", labels), bad)

    sweep = Sweep(
        tmp_path / "sweep", *pipeline, "task=sst2,rte,mrpc", f"task.datamodule.data_dir={mirror}"
    )
    assert sweep.wait() == 1, sweep.tail()  # a failed job fails the sweep, after the others
    finished = sorted(p.parent.name.split("_")[0] for p in sweep.dir.glob("*/results.json"))
    assert finished == ["mrpc", "sst2"]
    rte = sweep.jobs()[1]
    text = report(sweep.dir)
    (row,) = [ln for ln in text.splitlines() if "task=rte" in ln]
    assert "| failed |" in row and "column 'label' has values [5]" in row
    assert f"`{sweep.dir / '.submitit' / rte / f'{rte}_0_log.err'}`" in row
    assert "| sst2 | full | 30 |" in text and "| mrpc | full | 30 |" in text


def test_preemption_requeue_resumes_to_the_same_export(requeued):
    sweep, job = requeued["sweeps"]["preempted"], requeued["jobs"]["preempted"]
    assert "interrupted by SIGTERM in stage prune" in sweep.log(job, "out")
    assert "[prune] resuming from" in sweep.log(job)
    runs = requeued["runs"]
    assert export_bytes(runs["preempted"]) == export_bytes(runs["reference"])


def test_time_limit_mid_prune_requeues_and_resumes_to_the_same_export(requeued):
    sweep, job = requeued["sweeps"]["timed_out"], requeued["jobs"]["timed_out"]
    log = sweep.log(job)
    assert re.search(r"Caught signal SIGUSR2 on \S+: this job is timed-out", log), log[-3000:]
    # (submitit's own "Requeued job" line may not get out: the SIGTERM of the requeue it asked
    # for ends the process first, with status 143 as a preemption's)
    assert "[prune] resuming from" in log
    runs = requeued["runs"]
    assert export_bytes(runs["timed_out"]) == export_bytes(runs["reference"])


def test_ddp_ranks_launched_by_srun(pipeline, tmp_path):
    """``tasks_per_node=2``: srun starts both ranks, Lightning's SLURMEnvironment joins them."""
    digest = "+callbacks.mask_digest._target_=tests.training.mask_digest.MaskDigest"
    sweep = Sweep(
        tmp_path / "sweep", *pipeline, "trainer=ddp", "hydra.launcher.tasks_per_node=2",
        "logger=wandb_csv", digest,
    )  # fmt: skip
    assert sweep.wait() == 0, sweep.tail()
    (job,) = sweep.jobs()
    (run_dir,) = [p.parent for p in sweep.dir.glob("*/.hydra")]  # one run directory
    assert (run_dir / "results.json").is_file()
    assert not (run_dir / ".lock").exists()
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in sweep.log(job, task=1)
    # rank 0 alone took the lock and ran the run directory; one W&B run
    assert sweep.log(job).count("starting run") == 1 and "starting run" not in sweep.log(
        job, task=1
    )
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    digests = [
        json.loads((run_dir / "prune" / f"mask_digests_rank{r}.json").read_text()) for r in (0, 1)
    ]
    assert digests[0] and digests[0] == digests[1]  # the same masks at every step on both ranks
    wait_until(lambda: job_state(job) == "", "both ranks to exit and the job to end", 120)
