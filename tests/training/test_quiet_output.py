"""What a person sees: no third-party noise that carries no information for a CoFi run, while real
warnings and our own progress lines stay."""

from __future__ import annotations

import logging

import lightning as L
import pytest
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

import cofi_lightning.run.context  # noqa: F401  (installs the Lightning log filter)
from cofi_lightning.modeling import CoFiBertForSequenceClassification


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_fresh_task_head_is_not_reported_as_missing(minilm_dir):
    """A vanilla checkpoint's new classifier is expected: no transformers load report (a real
    mismatch still raises CheckpointMismatchError, tests/modeling)."""
    from transformers.utils import logging as hf_logging

    records = _Records()
    hf_logger = logging.getLogger("transformers")
    hf_logger.addHandler(records)
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()  # transformers' default: the report would show
    try:
        CoFiBertForSequenceClassification.from_pretrained(str(minilm_dir), num_labels=2)
        assert hf_logging.get_verbosity() == hf_logging.WARNING  # restored after loading
    finally:
        hf_logger.removeHandler(records)
        hf_logging.set_verbosity(before)
    shown = "\n".join(records.lines)
    assert "LOAD REPORT" not in shown and "MISSING" not in shown


def test_lightning_banner_and_tips_dropped_real_messages_kept():
    records = _Records()
    lightning_logger = logging.getLogger("lightning.pytorch")  # where Lightning's messages end
    lightning_logger.addHandler(records)
    try:
        L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
        rank_zero_info("[2/4 prune] starting")
        with pytest.warns(UserWarning, match="a real warning"):
            rank_zero_warn("a real warning")
    finally:
        lightning_logger.removeHandler(records)
    shown = "\n".join(records.lines)
    assert "GPU available" not in shown and "Tip:" not in shown
    assert "[2/4 prune] starting" in shown


def test_checkpoint_saves_do_not_log_the_weights_only_notice(
    make_student, make_trainer, synthetic_dm, tmp_path
):
    """Lightning logs "`weights_only` was not set" at every checkpoint it writes; a run writes
    one after every validation, so the notice would repeat all through a run."""
    from cofi_lightning.config import StageConfig
    from cofi_lightning.run.checkpoints import SaveAfterValidation
    from cofi_lightning.training.lit_module import CoFiSystem

    records = _Records()
    lightning_logger = logging.getLogger("lightning.pytorch")
    lightning_logger.addHandler(records)
    lightning_logger.setLevel(logging.INFO)
    try:
        system = CoFiSystem(make_student(), task="sst2", stage=StageConfig(lr=1e-3))
        save = SaveAfterValidation(tmp_path / "last.ckpt")
        trainer = make_trainer(
            max_steps=2,
            val_check_interval=1,
            callbacks=[save],
            enable_checkpointing=True,
            default_root_dir=tmp_path,
        )
        trainer.fit(system, synthetic_dm)
        trainer.save_checkpoint(tmp_path / "other.ckpt")  # without weights_only, as Lightning
    finally:
        lightning_logger.removeHandler(records)
    assert (tmp_path / "last.ckpt").is_file()
    assert not any("weights_only" in line for line in records.lines)
