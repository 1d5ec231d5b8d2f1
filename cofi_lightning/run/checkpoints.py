"""Files a stage writes and reads back on resume, made to survive a kill or a full disk.

This file owns how they are written (:func:`write_atomically`: through ``<name>.tmp-<pid>`` beside
the target, renamed over it once complete; Lightning's own writer *copies* from the system
temporary directory, which truncated ``last.ckpt`` on clusters), which resume checkpoint a stage
starts from (:func:`resume_checkpoint`), when it is written (never between a step and its
validation) and how a stage's model directory is saved.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn

from cofi_lightning.run.ranks import is_global_zero

#: ``<name><TMP_INFIX><pid>``: a file being written (see :func:`write_atomically`).
TMP_INFIX = ".tmp-"


def previous_of(path: Path) -> Path:
    """Where :class:`AtomicCheckpointIO` keeps the checkpoint that ``path`` replaced."""
    return path.with_name(path.name + ".prev")


def write_atomically(
    path: str | Path, write: Callable[[Path], Any], keep_previous: bool = False
) -> None:
    """Write ``path`` through a temporary file beside it, renamed over it once complete (a rename
    in one directory is atomic: a kill or a full disk leaves the previous file as it was).

    Args:
        write: Writes the whole content to the path it is given (the temporary file).
        keep_previous: Rename the file being replaced to :func:`previous_of` first, so that one
            of the two holds a complete file at every instant.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}{TMP_INFIX}{os.getpid()}")
    try:
        write(tmp)
        if keep_previous and path.is_file():
            os.replace(path, previous_of(path))
        os.replace(tmp, path)
    except BaseException:  # an interrupt too: no half-written file left behind
        tmp.unlink(missing_ok=True)
        raise


def save_atomically(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)`` through :func:`write_atomically`."""
    write_atomically(path, lambda tmp: torch.save(obj, tmp))


def write_text_atomically(path: str | Path, text: str) -> None:
    """``Path(path).write_text(text)`` through :func:`write_atomically`."""
    write_atomically(path, lambda tmp: tmp.write_text(text))


def remove_temporaries(directory: Path) -> None:
    """Delete the temporary files that a killed writer left under ``directory`` (only while no
    other process writes there: the run directory's lock guarantees it)."""
    if directory.is_dir():
        for stale in directory.rglob(f"*{TMP_INFIX}*"):
            if stale.is_file() and stale.name.rsplit(TMP_INFIX, 1)[1].isdigit():
                stale.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoint IO, written with :func:`write_atomically` and keeping
    the replaced checkpoint as ``<name>.prev`` (local paths: the run directory is one)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        write_atomically(path, lambda tmp: torch.save(checkpoint, tmp), keep_previous=True)


def unreadable(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be loaded, or None when it can (``torch.save``
    writes a zip archive with a CRC-32 per entry: found without unpickling anything)."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"truncated or not a checkpoint: {err}"
    return None if damaged is None else f"damaged entry {damaged}"


def set_aside(path: Path) -> Path:
    """Rename ``path`` to the first free ``<name>.corrupt-<n>`` (kept for inspection)."""
    n = 1
    while (aside := path.with_name(f"{path.name}.corrupt-{n}")).exists():
        n += 1
    os.replace(path, aside)
    return aside


def resume_checkpoint(last: Path, fix: bool = True) -> Path | None:
    """The newest resume checkpoint of a stage that loads: ``last``, else its ``.prev``; None
    when neither does (the stage then starts from its beginning).

    Args:
        fix: Set aside each checkpoint that does not load, with a warning naming it, and delete
            temporaries of killed writers (rank 0; the other ranks only read).
    """
    if fix:
        remove_temporaries(last.parent.parent)
    found, bad = None, []
    for candidate in (last, previous_of(last)):
        if candidate.is_file():
            problem = unreadable(candidate)
            if problem is None:
                found = candidate
                break
            bad.append((candidate, problem))
    if fix:
        then = f"resuming from {found}" if found else "the stage starts from its beginning"
        for candidate, problem in bad:
            aside = set_aside(candidate)
            rank_zero_warn(
                f"checkpoint {candidate} does not load ({problem}); set aside as {aside}; {then}"
            )
    return found


def validates_after_batch(trainer: L.Trainer, batch_idx: int) -> bool:
    """Whether the fit may validate once this training batch ends (Lightning's rule, from the
    trainer's public state). When unsure it says True: a step checkpoint left out costs a few
    replayed steps."""
    if not trainer.enable_validation:
        return False
    every_epochs = trainer.check_val_every_n_epoch
    if every_epochs is not None and (trainer.current_epoch + 1) % every_epochs:
        return False
    if batch_idx + 1 >= trainer.num_training_batches or trainer.should_stop:
        return True
    interval = trainer.val_check_batch
    if interval is None or interval == float("inf"):
        return False  # at the epoch's end only
    index = trainer.fit_loop.total_batch_idx if every_epochs is None else batch_idx
    return (index + 1) % interval == 0


class StepCheckpoint(ModelCheckpoint):
    """Lightning's every-n-steps resume checkpoint, left out at a step that validates.

    Lightning writes a step's checkpoint before that step's validation, and a run resumed from it
    skips the validation: its result (a best-weights or best-structure candidate) would be lost.
    At those steps :class:`SaveAfterValidation` writes the checkpoint instead.
    """

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx) -> None:
        if not validates_after_batch(trainer, batch_idx):
            super().on_train_batch_end(trainer, module, outputs, batch, batch_idx)


class SaveAfterValidation(Checkpoint):
    """Write the resume checkpoint (``<stage>/checkpoints/last.ckpt``) after every validation
    during fit, with that evaluation in the callbacks' state (see :class:`StepCheckpoint`; a
    ``Checkpoint``, so Lightning runs it after the other callbacks' validation hooks)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return  # not trainer.validate()
        trainer.save_checkpoint(self.path, weights_only=False)


def save_model(model: torch.nn.Module, tokenizer: Any, path: Path) -> None:
    """Model + tokenizer in HF format (rank 0), readable by others as the umask allows
    (safetensors writes its file 0600)."""
    if is_global_zero():
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        umask = os.umask(0)
        os.umask(umask)
        for file in path.rglob("*"):
            if file.is_file():
                file.chmod(0o666 & ~umask)
