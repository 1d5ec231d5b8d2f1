"""A run directory belongs to one config and one process: sweeps over any key get their own
directories, resume needs the same identity, and a second process on a live run stops at once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cofi_lightning.config import config_identity
from cofi_lightning.config.identity import LATER_KEYS, teacher_identity
from cofi_lightning.run.pipeline import train
from cofi_lightning.run.rundir import LOCK_FILE, RunDirError, RunLock


def _weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "pruned_model" / "model.safetensors"))


@pytest.mark.slow  # a subprocess run of train.py; CI runs the slow tests too
def test_sweep_over_a_hyperparameter_gets_one_run_dir_per_value(
    sweep_overrides, train_cli, compose_train, tmp_path
):
    """`-m pruning.lr=a,b`: two directories with different weights; rerunning a job resumes it;
    the same directory with a changed key is refused, naming the key."""
    sweep = tmp_path / "sweep"
    overrides = list(sweep_overrides)
    overrides += ["pruning.epochs=1", "distill.teacher_training.max_steps=3"]
    train_cli("-m", *overrides, "pruning.lr=1e-5,1e-3", f"hydra.sweep.dir={sweep}")
    jobs = sorted(p.parent for p in sweep.glob("*/results.json"))
    assert len(jobs) == 2 and jobs[0].name != jobs[1].name
    a, b = (_weights(j) for j in jobs)
    assert any(not torch.equal(a[k], b[k]) for k in a if k in b and a[k].shape == b[k].shape)
    lrs = {json.loads((j / "run.json").read_text())["identity"]["pruning.lr"] for j in jobs}
    assert lrs == {1e-5, 1e-3}

    job = next(
        j
        for j in jobs
        if json.loads((j / "run.json").read_text())["identity"]["pruning.lr"] == 1e-5
    )
    base = [*overrides, "pruning.lr=1e-5", f"run_dir={job}"]
    stamp = (job / "prune" / "DONE.json").stat().st_mtime_ns
    again = train(compose_train(base))  # the same config: every stage is already done
    assert (job / "prune" / "DONE.json").stat().st_mtime_ns == stamp
    assert again == json.loads((job / "results.json").read_text())

    with pytest.raises(RunDirError, match=r"pruning\.lr: 1e-05 -> 0\.0003") as err:
        train(compose_train([*base, "pruning.lr=3e-4"]))
    assert "run_dir=<another directory>" in str(err.value)
    assert (job / "prune" / "DONE.json").stat().st_mtime_ns == stamp  # nothing was touched


def test_changed_teacher_or_model_is_another_identity(
    compose_train, tiny_overrides, tiny_bert_dropout_dir, tmp_path
):
    run_dir = tmp_path / "run"
    cfg = compose_train([*tiny_overrides(run_dir), "stages=[teacher]"])
    train(cfg)
    teacher = run_dir / "teacher" / "model"
    with pytest.raises(RunDirError, match=rf"distill\.teacher: None -> '{teacher}'"):
        train(compose_train([*tiny_overrides(run_dir), f"distill.teacher={teacher}"]))
    other = tiny_bert_dropout_dir
    with pytest.raises(RunDirError, match=rf"model\.pretrained: .* -> '{other}'"):
        train(compose_train([*tiny_overrides(run_dir), f"model.pretrained={other}"]))


def test_resume_modes(compose_train, tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    teacher_only = [*tiny_overrides(run_dir), "stages=[teacher]"]
    with pytest.raises(RunDirError, match="resume=must but .* holds no run"):
        train(compose_train([*teacher_only, "resume=must"]))
    assert not (run_dir / "run.json").exists()
    train(compose_train(teacher_only))
    with pytest.raises(RunDirError, match="resume=never but .* already holds a run"):
        train(compose_train([*teacher_only, "resume=never"]))
    train(compose_train([*teacher_only, "resume=must"]))  # resumes (nothing left to do)


IDENTITY_KEYS = Path(__file__).with_name("identity_keys.txt")


def test_identity_keys_are_the_recorded_ones(compose_train):
    """A key added to the schema changes every run's hash unless it is declared in LATER_KEYS
    (with the value that reproduces earlier runs); this catches one added without a decision."""
    keys = set(config_identity(compose_train()))
    recorded = set(IDENTITY_KEYS.read_text().split())
    added, removed = sorted(keys - recorded), sorted(recorded - keys)
    assert not added, (
        f"new identity keys {added}: declare each in LATER_KEYS (cofi_lightning/config/"
        "identity.py) with the value that reproduces earlier runs, or, if its default changes "
        f"what earlier configs compute, add it to {IDENTITY_KEYS.name}"
    )
    assert not removed, f"identity keys {removed} are gone: remove them from {IDENTITY_KEYS.name}"
    assert not set(LATER_KEYS) & keys  # at their defaults, the later keys stay out


def test_teacher_identity_is_what_the_teacher_stage_reads(compose_train):
    """Prune, finetune and export keys (and the ablation's label) leave the teacher's identity;
    the teacher's own settings, the data, the optimizer and the seed change it."""
    base = teacher_identity(config_identity(compose_train()))
    later = [
        "pruning.lr=1e-3",
        "pruning.finetune.lr=1e-3",
        "export.round_to=8",
        "distill.alpha_layer=0.5",
        "ablation=no_hidden_mask",
        "model.freeze_embeddings=false",
    ]
    for override in later:
        assert teacher_identity(config_identity(compose_train([override]))) == base, override
    own = [
        "distill.teacher_training.lr=1e-3",
        "seed=1",
        "optim.weight_decay=0.1",
        "task.datamodule.batch_size=8",
        "model.pretrained=other",
    ]
    for override in own:
        assert teacher_identity(config_identity(compose_train([override]))) != base, override


def test_a_teacher_is_found_beside_the_run_only_with_its_identity(tmp_path):
    """Not in this run's own directory, not of another identity, not without its model, not from
    a record that does not parse; the copy replaces what a killed copy left."""
    from cofi_lightning.run.stages import (
        TEACHER_DONE,
        TEACHER_MODEL,
        copy_teacher,
        find_teacher,
    )

    def finished(run: str, identity: dict, model: bool = True, text: str | None = None) -> Path:
        done = tmp_path / run / TEACHER_DONE
        done.parent.mkdir(parents=True)
        if model:
            (tmp_path / run / TEACHER_MODEL).mkdir()
            (tmp_path / run / TEACHER_MODEL / "config.json").write_text("{}")
        done.write_text(text or json.dumps({"metrics": {}, "teacher_identity": identity}))
        return tmp_path / run / TEACHER_MODEL

    mine, other = {"seed": 57, "task.name": "sst2"}, {"seed": 58, "task.name": "sst2"}
    finished("here", mine)
    finished("a_other", other)
    finished("b_no_model", mine, model=False)
    finished("c_torn", mine, text='{"metrics": {')
    assert find_teacher(tmp_path / "here", mine) is None
    src = finished("d_match", mine)
    record = json.loads((tmp_path / "d_match" / TEACHER_DONE).read_text())
    assert find_teacher(tmp_path / "here", mine) == (src.resolve(), record)
    dst = tmp_path / "new" / TEACHER_MODEL
    (dst.parent / "model.tmp-1").mkdir(parents=True)  # a killed copy's leftovers
    copy_teacher(src, dst)
    assert (dst / "config.json").read_text() == "{}" and list(dst.parent.iterdir()) == [dst]


def test_a_run_from_before_a_later_key_resumes(
    compose_train, tiny_overrides, tmp_path, monkeypatch
):
    """A key declared later (here ``pruning.multiplier_reset``, as if it were new): a run whose
    run.json lacks it resumes at the key's old-behaviour value and is refused at another."""
    from cofi_lightning.config import identity

    monkeypatch.setitem(identity.LATER_KEYS, "pruning.multiplier_reset", True)
    run_dir = tmp_path / "run"
    teacher_only = [*tiny_overrides(run_dir), "stages=[teacher]"]
    train(compose_train(teacher_only))
    stored = json.loads((run_dir / "run.json").read_text())
    assert "pruning.multiplier_reset" not in stored["identity"]  # as the code before it wrote
    train(compose_train([*teacher_only, "resume=must"]))  # at that value: the same run
    with pytest.raises(RunDirError, match=r"pruning\.multiplier_reset: '<absent>' -> False"):
        train(compose_train([*teacher_only, "pruning.multiplier_reset=false"]))


def test_second_process_on_a_live_run_dir_fails_at_start(compose_train, tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from cofi_lightning.run.rundir import RunLock;"
            f"RunLock(Path({str(run_dir)!r})).acquire(); print('locked', flush=True);"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.perf_counter()
        with pytest.raises(RunDirError, match=f"in use by pid {holder.pid} on"):
            train(compose_train(tiny_overrides(run_dir)))
        assert time.perf_counter() - started < 5  # at once, before any stage
        assert not (run_dir / "run.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # Its owner is dead now: the lock is taken over, not kept forever.
    with RunLock(run_dir):
        owner = json.loads((run_dir / LOCK_FILE).read_text())
    assert owner["pid"] != holder.pid
    assert not (run_dir / LOCK_FILE).exists()  # released on exit


def test_lock_of_another_host_expires_without_heartbeat(tmp_path):
    path = tmp_path / LOCK_FILE
    path.write_text(json.dumps({"pid": 1, "host": f"not-{socket.gethostname()}"}))
    with pytest.raises(RunDirError, match="in use by pid 1 on not-"):
        RunLock(tmp_path, stale_seconds=60).acquire()
    old = time.time() - 120
    import os

    os.utime(path, (old, old))
    lock = RunLock(tmp_path, stale_seconds=60)
    lock.acquire()
    lock.release()


def test_lock_of_an_earlier_attempt_of_the_same_slurm_job_is_taken_over(tmp_path, monkeypatch):
    """A requeued job may start on another node while its killed attempt's lock is fresh; SLURM
    ended that attempt, so the lock is stale. The same attempt, or another job, keeps it."""
    path = tmp_path / LOCK_FILE
    other = {"pid": 1, "host": f"not-{socket.gethostname()}"}
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    for held_by in ([41, 0], [42, 1]):
        path.write_text(json.dumps({**other, "slurm": [str(held_by[0]), held_by[1]]}))
        with pytest.raises(RunDirError, match="in use by pid 1 on not-"):
            RunLock(tmp_path).acquire()
    path.write_text(json.dumps({**other, "slurm": ["42", 0]}))
    lock = RunLock(tmp_path)
    lock.acquire()
    assert json.loads(path.read_text())["slurm"] == ["42", 1]
    lock.release()


def test_heartbeat_keeps_a_live_lock_fresh(tmp_path):
    lock = RunLock(tmp_path, heartbeat_seconds=0.05)
    lock.acquire()
    try:
        first = (tmp_path / LOCK_FILE).stat().st_mtime
        time.sleep(0.3)
        assert (tmp_path / LOCK_FILE).stat().st_mtime > first
    finally:
        lock.release()
