"""What the stages of one run share: the typed config, the run directory, data, builders, ranks.

This file owns :class:`RunContext` (tokenizer and DataModule built once; how a stage's trainer,
loggers and callbacks are instantiated from the config), :class:`StageClock`, the seeding of the
global RNGs (:func:`seed_stage`, :class:`StepSeed`) and the rank helpers (:func:`is_global_zero`,
:func:`barrier`). It sits below ``cofi_lightning.run.stages`` and
``cofi_lightning.run.pipeline``, which both import it; it imports neither.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_object, instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import (
    Checkpoint,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
)
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from transformers import AutoTokenizer

from cofi_lightning.config import StageConfig, TrainConfig
from cofi_lightning.data import get_task
from cofi_lightning.modeling import Family, family_of
from cofi_lightning.run.checkpoints import AtomicCheckpointIO, resume_checkpoint
from cofi_lightning.run.operating_points import operating_points
from cofi_lightning.training.lit_module import CoFiSystem


class _DropLightningNoise(logging.Filter):
    """Drop Lightning's device banner and product tips: no information for a CoFi run (the
    accelerator is in the config; real warnings go through ``warnings`` and are kept)."""

    NOISE = ("GPU available:", "TPU available:", "HPU available:", "\U0001f4a1 Tip:")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.NOISE)


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_DropLightningNoise())


class _DropCheckpointNoise(logging.Filter):
    """Lightning 2.6 logs "`weights_only` was not set" at every checkpoint it writes (full
    checkpoints are what resume needs: nothing to act on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`weights_only` was not set" not in str(record.getMessage())


logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector").addFilter(
    _DropCheckpointNoise()
)


def is_global_zero() -> bool:
    """Whether this process is global rank 0 (also before a trainer exists: Lightning reads the
    rank from the launcher's environment)."""
    return getattr(rank_zero_only, "rank", 0) == 0


def barrier() -> None:
    """Wait for every DDP rank (no-op in a single process): rank 0 writes, the others read."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class StageClock(L.Callback):
    """Carries a stage's elapsed seconds through its checkpoints, so a resumed stage reports the
    time of every attempt up to its last checkpoint, not only of the attempt that finished it.

    Args:
        started: ``time.perf_counter()`` when this attempt of the stage started.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.before = 0.0  # seconds of earlier attempts (from the resumed checkpoint)

    def state_dict(self) -> dict[str, float]:
        return {"seconds": self.before + time.perf_counter() - self.started}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.before = float(state["seconds"])


# --- random numbers -------------------------------------------------------------------------------
# Every random number of a run is drawn after the global RNGs were seeded from where the run is,
# never from what ran before in the process (a resumed run, or one whose stages ran in several
# invocations, has another history): a stage's start is seeded from (seed, stage) by
# :func:`seed_stage`, each training batch from (seed, step, micro-batch, rank) by
# :class:`StepSeed`; data order and mask noise use generators of their own, seeded from
# (seed, epoch) and (seed, step).


def derived_seed(*key: object, bits: int = 64) -> int:
    """A seed that is a function of ``key`` only: the first ``bits`` bits of the sha256 of its
    parts joined by ``:``.

    Args:
        key: What the seed stands for, e.g. ``(seed, step, micro-batch, rank)``.
        bits: 64 for ``torch.manual_seed``; 32 for numpy (``seed_everything``).
    """
    text = ":".join(str(part) for part in key)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> (64 - bits)


def seed_stage(seed: int, stage: str) -> None:
    """Seed the global RNGs (torch, numpy, ``random``, dataloader workers) as ``stage`` starts.

    What a stage builds from them (the classifier head, the masks' log-alphas, the layer
    distillation's projection) is then the same whether the earlier stages ran in this process,
    in an earlier invocation (``stages=[teacher]``, a killed run), or were reused.

    Args:
        seed: The run's seed.
        stage: The stage's key (``prune``, ``finetune_0.5``, ...).
    """
    L.seed_everything(derived_seed(seed, "stage", stage, bits=32), workers=True, verbose=False)


class StepSeed(L.Callback):
    """Seed the global RNGs (dropout) from ``(seed, optimizer step, micro-batch, rank)`` before
    every training batch.

    Dropout then depends on where training is, not on what ran before: a stage resumed from any
    checkpoint draws the same dropout masks as an uninterrupted run (Lightning's checkpoints do
    not hold RNG states, and rebuilding loaders on resume consumes random numbers an
    uninterrupted run does not). Masks are sampled from their own per-step generator.

    Args:
        seed: The run's seed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: L.Trainer, module, batch, batch_idx: int) -> None:
        micro = batch_idx % trainer.accumulate_grad_batches  # micro-batches of one step differ
        torch.manual_seed(derived_seed(self.seed, trainer.global_step, micro, trainer.global_rank))


def validates_after_batch(trainer: L.Trainer, batch_idx: int) -> bool:
    """Whether the fit may validate once this training batch ends: Lightning's rule (every
    ``check_val_every_n_epoch`` epochs, after every ``val_check_batch`` batches counted in the
    epoch, or across epochs when that is None; at an epoch's last batch) from the trainer's public
    state. When unsure it says True: a step checkpoint left out costs a few replayed steps."""
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

    Lightning writes a step's checkpoint when the step ends, before that step's validation, and a
    run resumed from it skips the validation (the loop counts it as done). A kill during that
    validation would lose its result (a best-weights or best-structure candidate), and the resumed
    run could keep another network. At those steps :class:`SaveAfterValidation` writes the
    checkpoint once the validation is over; a kill during it resumes from the checkpoint before
    and replays the steps and the validation.
    """

    def on_train_batch_end(self, trainer: L.Trainer, module, outputs, batch, batch_idx) -> None:
        if not validates_after_batch(trainer, batch_idx):
            super().on_train_batch_end(trainer, module, outputs, batch, batch_idx)


class SaveAfterValidation(Checkpoint):
    """Write the resume checkpoint after every validation during fit.

    Lightning checkpoints a step at its end, *before* that step's validation, and a run resumed
    from that checkpoint skips the validation; its result (a best-weights or best-structure
    candidate) would be lost and the resumed run could export another network. Saved after the
    validation, the checkpoint holds the callbacks' state with that evaluation in it (and
    :class:`StepCheckpoint` writes none before it). (A ``Checkpoint``, so Lightning runs it after
    the other callbacks' validation hooks.)

    Args:
        path: The resume checkpoint (``<stage>/checkpoints/last.ckpt``).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return  # not trainer.validate()
        trainer.save_checkpoint(self.path, weights_only=False)


def _is_job_tracker(node: dict[str, Any]) -> bool:
    """A logger node whose target logs the whole job (one W&B run), not one stage."""
    return hasattr(get_object(node["_target_"]), "stage_logger")


class RunContext:
    """What every stage of one run shares (config, directories, data, builders).

    Args:
        cfg: The typed, validated config.
        run_dir: The run directory.
        extra_callbacks: ``{stage: [callbacks]}`` added to that stage's trainer (tests use it to
            interrupt a stage).
        run_id: A stable id of the run (its identity hash), for job-level trackers such as W&B.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        extra_callbacks: dict[str, Sequence[L.Callback]] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_id = run_id or cfg.run_name
        self.task = get_task(cfg.task.name)
        #: One per pruning target (``cofi_lightning.run.operating_points``).
        self.points = operating_points(cfg.pruning.target_list)
        self.extra_callbacks = extra_callbacks or {}
        self.records: dict[str, dict[str, Any]] = {}
        self._tokenizer = None
        self._datamodule = None
        self._family: Family | None = None
        #: Job-level trackers (``{logger name: tracker}``), built on first use on rank 0.
        self._trackers: dict[str, Any] | None = None
        #: ``{stage: StageClock}`` of the stage's trainer; ``{stage: start}`` of this attempt.
        self.clocks: dict[str, StageClock] = {}
        self.started: dict[str, float] = {}

    # --- models and data --------------------------------------------------------------------------

    @property
    def family(self) -> Family:
        """The encoder family of ``model.pretrained`` (from its ``model_type``)."""
        if self._family is None:
            from transformers import AutoConfig

            model_type = AutoConfig.from_pretrained(self.cfg.model.pretrained).model_type
            self._family = family_of(model_type)
        return self._family

    @property
    def model_class(self) -> type:
        """The task model of the family (question answering for SQuAD)."""
        return self.family.model_class(self.task.family == "squad")

    def load_model(self, path: str | Path) -> torch.nn.Module:
        """A CoFi model of the task's class from a vanilla or exported HF directory / hub name."""
        kwargs = {} if self.task.family == "squad" else {"num_labels": self.task.num_labels}
        id2label = self.task.id2label()
        if id2label is not None:  # saved with every model: pipelines answer with class names
            kwargs.update(id2label=id2label, label2id={v: k for k, v in id2label.items()})
        return self.model_class.from_pretrained(str(path), **kwargs)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = AutoTokenizer.from_pretrained(self.cfg.model.tokenizer, use_fast=True)
        return self._tokenizer

    @property
    def datamodule(self) -> L.LightningDataModule:
        """The task's DataModule, built from ``task.datamodule`` (its ``_target_``)."""
        if self._datamodule is None:
            node = {**self.cfg.task.datamodule, "_partial_": True}
            self._datamodule = instantiate(node)(tokenizer=self.tokenizer, seed=self.cfg.seed)
        return self._datamodule

    # --- trainers ---------------------------------------------------------------------------------

    def trackers(self) -> dict[str, Any]:
        """The job-level trackers of ``logger`` (one W&B run for all stages), on rank 0 only."""
        if self._trackers is None:
            self._trackers = {}
            if is_global_zero():
                for name, node in self.cfg.logger.items():
                    if node and _is_job_tracker(node):
                        # partial: ``config`` would clash with instantiate's own first argument
                        self._trackers[name] = instantiate(node, _partial_=True)(
                            run_dir=str(self.run_dir),
                            name=self.cfg.run_name,
                            run_id=self.run_id,
                            config=_config_dict(self.cfg),
                        )
        return self._trackers

    def loggers(self, stage: str) -> list:
        """The Lightning loggers of one stage: a stage view of each job tracker, and the per-stage
        loggers (CSV files under ``<run_dir>/<stage>/<logger name>/``)."""
        out = [tracker.stage_logger(stage) for tracker in self.trackers().values()]
        for name, node in self.cfg.logger.items():
            if node and not _is_job_tracker(node):
                out.append(instantiate(node, save_dir=str(self.run_dir / stage), name=name))
        return out

    def finish_trackers(
        self, results: dict[str, Any] | None, exit_code: int = 0, heatmap: str | None = None
    ) -> None:
        """Put ``results`` (and the exported structure's ``heatmap`` PNG) into each tracker's
        summary and close it (rank 0)."""
        for tracker in (self._trackers or {}).values():
            if results:
                tracker.log_results(results, heatmap=heatmap)
            tracker.finish(exit_code)
        self._trackers = None

    def trainer(
        self,
        stage: str,
        *,
        max_epochs: int,
        max_steps: int = -1,
        eval_every_steps: int | None = None,
        callbacks: Sequence[L.Callback] = (),
    ) -> L.Trainer:
        """A trainer for ``stage`` with its resume checkpoint, loggers and callbacks."""
        loggers = self.loggers(stage)
        clock = self.clocks[stage] = StageClock(self.started.get(stage, time.perf_counter()))
        cbs: list[L.Callback] = [
            clock,
            StepSeed(self.cfg.seed),
            StepCheckpoint(
                dirpath=self.run_dir / stage / "checkpoints",
                save_last=True,
                save_top_k=0,
                every_n_train_steps=self.cfg.pruning.checkpoint_every_steps,
                save_on_train_epoch_end=True,
            ),
            SaveAfterValidation(self.run_dir / stage / "checkpoints" / "last.ckpt"),
            *callbacks,
            *self.extra_callbacks.get(stage, ()),
        ]
        bar = self.cfg.trainer.get("enable_progress_bar", True)
        for node in self.cfg.callbacks.values():
            if isinstance(node, dict) and "_target_" in node:
                cb = instantiate(node)
                skip = (isinstance(cb, LearningRateMonitor) and not loggers) or (
                    isinstance(cb, ProgressBar) and not bar
                )
                if not skip:
                    cbs.append(cb)
        kwargs: dict[str, Any] = dict(
            max_epochs=max_epochs,
            max_steps=max_steps,
            default_root_dir=str(self.run_dir / stage),
            logger=loggers or False,
            callbacks=cbs,
            plugins=[AtomicCheckpointIO()],  # a kill or a full disk never truncates last.ckpt
        )
        if eval_every_steps:
            accumulate = self.cfg.trainer.get("accumulate_grad_batches", 1) or 1
            kwargs.update(
                val_check_interval=eval_every_steps * accumulate, check_val_every_n_epoch=None
            )
        return instantiate(self.cfg.trainer, **kwargs)

    @staticmethod
    def close_loggers(loggers: Sequence) -> None:
        """Flush a stage's loggers (job trackers stay open for the next stage)."""
        for lg in loggers:
            lg.finalize("success")

    def resume_path(self, stage: str) -> str | None:
        """The checkpoint ``stage`` resumes from (``cofi_lightning.run.checkpoints``: the newest
        that loads; one that does not is set aside with a warning), or None to start it afresh."""
        last = self.run_dir / stage / "checkpoints" / "last.ckpt"
        found = resume_checkpoint(last, fix=is_global_zero())
        if found is not None:
            rank_zero_info(f"[{stage}] resuming from {found}")
            return str(found)
        return None

    def evaluate(
        self, model: torch.nn.Module, trainer: L.Trainer | None = None
    ) -> dict[str, float]:
        """Validation metrics of an unmasked model as ``{metric: percent}`` (``val/`` dropped)."""
        system = CoFiSystem(model, task=self.task.name, stage=StageConfig(lr=0.0))
        trainer = trainer or instantiate(
            self.cfg.trainer,
            logger=False,
            enable_checkpointing=False,
            callbacks=[],
            default_root_dir=str(self.run_dir),
        )
        trainer.validate(system, datamodule=self.datamodule, verbose=False)
        return {
            k.removeprefix("val/"): v
            for k, v in system.last_val_metrics.items()
            if k.startswith("val/")
        }


def _config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The typed config as a plain nested dict (for trackers' run config)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
