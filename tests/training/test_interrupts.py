"""SIGTERM (``kill``, ``timeout``, preemption) ends a run as interrupted: exit status 143, one line
naming the stage, no ``DONE.json`` for it, no later stage; rerunning the command resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest

from cofi_lightning.run.interrupts import EXIT_INTERRUPTED, RunInterrupted, SigtermGuard
from cofi_lightning.run.pipeline import train

from runs import tiny_run_overrides

REPO = Path(__file__).resolve().parents[2]


def _start(log: Path, *args: str) -> subprocess.Popen:
    """``python train.py <args>`` offline in a subprocess (as the ``train_cli`` fixture runs it),
    its output into ``log`` (a pipe nobody reads could fill up and stall it)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _terminate_once(
    proc: subprocess.Popen, log: Path, appears: str, root: Path, timeout: float = 300
) -> tuple[int, str]:
    """Send SIGTERM as soon as a file matching ``root.glob(appears)`` exists (a checkpoint: the
    stage is running and has something to resume from); return the exit status and output."""
    deadline = time.monotonic() + timeout
    try:
        while not any(root.glob(appears)):
            if proc.poll() is not None:
                pytest.fail(
                    f"exited {proc.returncode} before {appears}:\n{log.read_text()[-4000:]}"
                )
            assert time.monotonic() < deadline, f"no {appears} after {timeout} s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:  # a failed wait: leave no process behind
            proc.kill()
            proc.wait()
    return proc.returncode, log.read_text()


def _interrupted_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "interrupted by SIGTERM" in line]


@pytest.mark.slow  # a subprocess run of train.py; CI runs the slow tests too
def test_sigterm_mid_stage_exits_143_and_the_same_command_resumes(
    tiny_bert_dir, feature_cache, tmp_path, train_cli
):
    run_dir = tmp_path / "run"
    args = tiny_run_overrides(tiny_bert_dir, run_dir, feature_cache)
    log = tmp_path / "train.out"
    rc, out = _terminate_once(_start(log, *args), log, "prune/checkpoints/last.ckpt", run_dir)
    assert rc == EXIT_INTERRUPTED == 143, out[-4000:]
    (line,) = _interrupted_lines(out)
    assert "in stage prune" in line and "rerun the same command to resume" in line, line
    assert "Traceback" not in out, out[-4000:]
    assert (run_dir / "teacher" / "DONE.json").is_file()
    assert not (run_dir / "prune" / "DONE.json").exists()  # interrupted: not recorded as done
    assert not (run_dir / "finetune").exists()  # and no later stage ran
    assert not (run_dir / "results.json").exists()
    assert (run_dir / "prune" / "checkpoints" / "last.ckpt").is_file()

    again = train_cli(*args)  # the same command resumes the stage and finishes
    assert "[prune] resuming from" in again.stdout + again.stderr
    assert (run_dir / "prune" / "DONE.json").is_file() and (run_dir / "results.json").is_file()


@pytest.mark.slow  # the single-run test covers the same path; this one adds Hydra's multirun
def test_sigterm_ends_a_multirun_without_counting_the_job(sweep_overrides, tmp_path):
    sweep = tmp_path / "sweep"
    log = tmp_path / "train.out"
    proc = _start(log, "-m", *sweep_overrides, f"hydra.sweep.dir={sweep}", "seed=1,2")
    rc, out = _terminate_once(proc, log, "*/teacher/checkpoints/last.ckpt", sweep)
    assert rc == EXIT_INTERRUPTED, out[-4000:]
    (line,) = _interrupted_lines(out)
    assert "in stage teacher" in line, line
    assert "Traceback" not in out, out[-4000:]
    # The sweep stops there: the job is not done and the next one never starts.
    assert len(list(sweep.glob("*/run.json"))) == 1
    assert not list(sweep.glob("*/results.json")) and not list(sweep.glob("*/*/DONE.json"))


class TermAtTrainEnd(L.Callback):
    """Sends this process SIGTERM in ``on_train_end``: the fit has already ended on its own."""

    def on_train_end(self, trainer, module) -> None:
        os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_as_a_fit_ends_is_not_swallowed(compose_train, tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_train([*tiny_overrides(run_dir), "stages=[teacher]"])
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted, match="in stage teacher") as caught:
        train(cfg, extra_callbacks={"teacher": [TermAtTrainEnd()]})
    assert caught.value.stage == "teacher"
    assert not (run_dir / "teacher" / "DONE.json").exists()
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler was put back


def test_sigterm_outside_a_trainer_stops_at_once_and_only_once():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted, match="in stage prune"), SigtermGuard() as guard:
        with guard.stage("prune"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
            pytest.fail("SIGTERM did not interrupt")
    assert guard.received and signal.getsignal(signal.SIGTERM) == before
    with SigtermGuard() as guard:
        guard.received = True  # a second signal while the first one's cleanup runs
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
    with pytest.raises(RunInterrupted, match="between stages"):
        guard.check()
