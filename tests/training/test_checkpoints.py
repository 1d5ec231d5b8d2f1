"""Checkpoints that a kill or a full disk cannot wedge: written atomically in the run directory,
and on resume one that does not load is set aside (the previous one, or the stage's start, is
used)."""

from __future__ import annotations

import errno
import io
import os
import warnings
import zipfile
from pathlib import Path

import lightning as L
import pytest
import torch

from cofi_lightning.config import StageConfig, load_config
from cofi_lightning.run.checkpoints import previous_of, resume_checkpoint, save_atomically
from cofi_lightning.run.context import RunContext
from cofi_lightning.run.pipeline import train
from cofi_lightning.training.lit_module import CoFiSystem

from runs import Crash


class FirstStep(L.Callback):
    """Records the global step at which training (re)starts."""

    def __init__(self) -> None:
        self.start: int | None = None

    def on_train_start(self, trainer, module) -> None:
        self.start = trainer.global_step


def _truncate(path: Path) -> None:
    """Keep the first half of ``path``'s bytes (a kill or a full disk in the middle of a write)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damaged", ["last", "last and previous"])
def test_a_truncated_checkpoint_is_set_aside_and_the_stage_resumes(
    damaged, compose_train, tiny_overrides, tmp_path
):
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), "stages=[teacher]", "cleanup.checkpoints=false"]
    cfg = compose_train(overrides)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, extra_callbacks={"teacher": [Crash(step=4)]})
    ckpts = run_dir / "teacher" / "checkpoints"
    last, previous = ckpts / "last.ckpt", ckpts / "last.ckpt.prev"
    assert last.is_file() and previous.is_file()
    previous_step = torch.load(previous, weights_only=False)["global_step"]
    assert 0 < previous_step <= torch.load(last, weights_only=False)["global_step"]
    _truncate(last)
    if damaged == "last and previous":
        _truncate(previous)

    first = FirstStep()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg, extra_callbacks={"teacher": [first]})
    said = [str(w.message) for w in caught if "does not load" in str(w.message)]
    if damaged == "last":
        (line,) = said
        assert str(last) in line and "set aside as" in line and "resuming from" in line
        assert first.start == previous_step  # the checkpoint before it
    else:
        assert len(said) == 2 and "starts from its beginning" in said[0]
        assert first.start == 0  # nothing loads: the stage starts again
        assert (ckpts / "last.ckpt.prev.corrupt-1").is_file()
    assert (ckpts / "last.ckpt.corrupt-1").is_file()  # kept for inspection, out of the way
    assert (run_dir / "teacher" / "DONE.json").is_file()


@pytest.fixture
def run_dir_fills_up(monkeypatch):
    """Simulate a run directory on a file system of its own that fills up: a rename into it from
    another directory fails with EXDEV (as from the system temporary directory on a cluster node),
    and a file written into it (by ``torch.save`` or the kernel copy a move falls back to) gets half
    its bytes before ENOSPC."""
    real_save, real_sendfile = torch.save, os.sendfile
    real_rename, real_replace = os.rename, os.replace

    def fill(run_dir: Path) -> None:
        root = run_dir.resolve()

        def inside(path) -> bool:
            return Path(path).resolve().is_relative_to(root)

        def full(path) -> OSError:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        def save(obj, f, *args, **kwargs):
            if not isinstance(f, (str, os.PathLike)) or not inside(f):
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            Path(f).write_bytes(data[: len(data) // 2])
            raise full(f)

        def sendfile(out_fd, in_fd, offset, count):
            target = os.readlink(f"/proc/self/fd/{out_fd}")
            if not inside(target):
                return real_sendfile(out_fd, in_fd, offset, count)
            os.write(out_fd, os.pread(in_fd, os.fstat(in_fd).st_size // 2, 0))
            raise full(target)

        def across(real):
            def rename(src, dst, *args, **kwargs):
                if inside(dst) and not inside(src):
                    raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src))
                return real(src, dst, *args, **kwargs)

            return rename

        monkeypatch.setattr(torch, "save", save)
        monkeypatch.setattr(os, "sendfile", sendfile)
        monkeypatch.setattr(os, "rename", across(real_rename))
        monkeypatch.setattr(os, "replace", across(real_replace))

    return fill


def test_a_checkpoint_write_that_fails_halfway_leaves_the_previous_one_whole(
    compose_train, tiny_overrides, make_student, synthetic_dm, run_dir_fills_up, tmp_path
):
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), "trainer.log_every_n_steps=1"]
    ctx = RunContext(load_config(compose_train(overrides)), run_dir)
    trainer = ctx.trainer("teacher", max_epochs=1, max_steps=1)  # the stages' trainer
    system = CoFiSystem(make_student(), task="sst2", stage=StageConfig(lr=1e-3))
    trainer.fit(system, datamodule=synthetic_dm)
    last = run_dir / "teacher" / "checkpoints" / "last.ckpt"
    good = last.read_bytes()

    run_dir_fills_up(run_dir)
    with pytest.raises(OSError, match="No space left"):
        trainer.save_checkpoint(last)
    assert last.read_bytes() == good  # the previous checkpoint, whole
    assert zipfile.ZipFile(last).testzip() is None
    assert not [p.name for p in last.parent.iterdir() if ".tmp" in p.name]  # nothing left over


def test_resume_checkpoint_checks_every_byte_and_clears_killed_writers(tmp_path):
    last = tmp_path / "prune" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    save_atomically({"global_step": 3, "w": torch.zeros(10_000)}, previous_of(last))
    save_atomically({"global_step": 4, "w": torch.zeros(10_000)}, last)
    data = bytearray(last.read_bytes())
    data[data.index(bytes(1000)) + 500] ^= 0xFF  # one flipped bit in the tensor's bytes
    last.write_bytes(data)
    stale = [last.with_name("last.ckpt.tmp-123"), tmp_path / "prune" / "best_student.pt.tmp-9"]
    for path in stale:
        path.write_bytes(b"half")

    assert resume_checkpoint(last, fix=False) == previous_of(last)  # other ranks: read only
    assert last.is_file() and all(path.is_file() for path in stale)
    with pytest.warns(UserWarning, match="damaged entry") as said:
        assert resume_checkpoint(last) == previous_of(last)
    assert f"set aside as {last}.corrupt-1; resuming from {previous_of(last)}" in str(
        said[0].message
    )
    assert not last.exists() and not any(path.exists() for path in stale)
    assert torch.load(previous_of(last))["global_step"] == 3
