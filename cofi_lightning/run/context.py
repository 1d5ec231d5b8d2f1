"""What the stages of one run share: the typed config, the run directory, models, data, trainers.

This file owns :class:`RunContext` (tokenizer and DataModule built once; the models of
``model.pretrained``; each stage's trainer, loggers and callbacks from the config) and the seeding
of the global RNGs from where the run is, never from what ran before in the process (a resumed run
has another history; data order and mask noise use generators of their own). It sits below
``cofi_lightning.run.stages`` and ``cofi_lightning.run.pipeline`` and imports neither.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_object, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoTokenizer

from cofi_lightning.config import StageConfig, TrainConfig
from cofi_lightning.core.constraint import load_latency_table
from cofi_lightning.data import get_task
from cofi_lightning.latency import LatencyTable
from cofi_lightning.modeling import Family, family_of
from cofi_lightning.run.checkpoints import (
    AtomicCheckpointIO,
    SaveAfterValidation,
    StepCheckpoint,
)
from cofi_lightning.run.operating_points import operating_points
from cofi_lightning.run.ranks import barrier, is_global_zero
from cofi_lightning.training.lit_module import CoFiSystem


class _DropLightningNoise(logging.Filter):
    """Drop Lightning's device banner, product tips and the "`weights_only` was not set" of every
    checkpoint it writes (Lightning 2.6): no information for a CoFi run."""

    NOISE = ("GPU available:", "TPU available:", "HPU available:", "\U0001f4a1 Tip:")

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.getMessage())
        return not (message.startswith(self.NOISE) or "`weights_only` was not set" in message)


for _name in (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.trainer.connectors.checkpoint_connector",
):
    logging.getLogger(_name).addFilter(_DropLightningNoise())


class StageClock(L.Callback):
    """Carries a stage's elapsed seconds through its checkpoints, so a resumed stage reports the
    time of every attempt up to its last checkpoint (``started``: this attempt's
    ``time.perf_counter()``)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.before = 0.0  # seconds of earlier attempts (from the resumed checkpoint)

    def state_dict(self) -> dict[str, float]:
        return {"seconds": self.before + time.perf_counter() - self.started}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.before = float(state["seconds"])


def derived_seed(*key: object, bits: int = 64) -> int:
    """A seed that is a function of ``key`` only: the first ``bits`` bits of the sha256 of its
    parts joined by ``:`` (64 for ``torch.manual_seed``; 32 for numpy)."""
    text = ":".join(str(part) for part in key)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> (64 - bits)


def seed_stage(seed: int, stage: str) -> None:
    """Seed the global RNGs as ``stage`` (``prune``, ``finetune_0.5``) starts: what it builds
    from them (heads, log-alphas, the distillation's projection) is then the same whether the
    earlier stages ran in this process, in an earlier invocation, or were reused."""
    L.seed_everything(derived_seed(seed, "stage", stage, bits=32), workers=True, verbose=False)


class StepSeed(L.Callback):
    """Seed the global RNGs (dropout) from ``(seed, optimizer step, micro-batch, rank)`` before
    every training batch: a resumed stage draws the same dropout as an uninterrupted one
    (Lightning's checkpoints hold no RNG states)."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: L.Trainer, module, batch, batch_idx: int) -> None:
        micro = batch_idx % trainer.accumulate_grad_batches  # micro-batches of one step differ
        torch.manual_seed(derived_seed(self.seed, trainer.global_step, micro, trainer.global_rank))


def _is_job_tracker(node: dict[str, Any]) -> bool:
    """A logger node whose target logs the whole job (one W&B run), not one stage."""
    return hasattr(get_object(node["_target_"]), "stage_logger")


class RunContext:
    """What every stage of one run shares (config, directories, data, builders).

    Args:
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
        #: Job-level trackers (``{logger name: tracker}``), built on first use on rank 0.
        self._trackers: dict[str, Any] | None = None
        #: ``{stage: StageClock}`` of the stage's trainer; ``{stage: start}`` of this attempt.
        self.clocks: dict[str, StageClock] = {}
        self.started: dict[str, float] = {}

    @cached_property
    def family(self) -> Family:
        """The encoder family of ``model.pretrained`` (from its ``model_type``)."""
        return family_of(AutoConfig.from_pretrained(self.cfg.model.pretrained).model_type)

    @property
    def model_class(self) -> type:
        """The task model of the family (question answering for SQuAD)."""
        return self.family.model_class(self.task.family == "squad")

    def unpruned_config(self):
        """The CoFi config of ``model.pretrained`` (unpruned), of its family's config class."""
        source = AutoConfig.from_pretrained(self.cfg.model.pretrained)
        config_class = self.family.config_class
        if isinstance(source, config_class):
            return source
        return config_class.from_pretrained_config(source)

    def latency_table(self, config) -> LatencyTable:
        """The latency table of ``pruning.constraint=latency``: read, or profiled here when
        missing (then checked here, not at the door)."""
        from cofi_lightning.latency.profile import profile
        from cofi_lightning.latency.timing import device_name

        p = self.cfg.pruning
        path = Path(p.latency_table or self.run_dir / "prune" / "latency_table.json")
        if not path.is_file():
            rank_zero_info(
                f"pruning.latency_table: {path} does not exist; profiling this machine (cpu, fp32, "
                "batch 32 x 128) into it"
            )
            if is_global_zero():
                profile(config).save(path)
            barrier()
        table = load_latency_table(path, config, p.target_speedup, "hidden" in p.units)
        here = device_name(torch.device("cpu"))
        if table.meta.get("device") == "cpu" and table.meta.get("device_name") != here:
            rank_zero_warn(
                f"pruning.latency_table {path} was profiled on {table.meta.get('device_name')}, "
                f"this machine is {here}: the constraint targets the speed of the table's device"
            )
        return table

    def load_model(self, path: str | Path) -> torch.nn.Module:
        """A CoFi model of the task's class from a vanilla or exported HF directory / hub name."""
        kwargs = {} if self.task.family == "squad" else {"num_labels": self.task.num_labels}
        id2label = self.task.id2label()
        if id2label is not None:  # saved with every model: pipelines answer with class names
            kwargs.update(id2label=id2label, label2id={v: k for k, v in id2label.items()})
        return self.model_class.from_pretrained(str(path), **kwargs)

    @cached_property
    def tokenizer(self):
        return AutoTokenizer.from_pretrained(self.cfg.model.tokenizer, use_fast=True)

    @cached_property
    def datamodule(self) -> L.LightningDataModule:
        """The task's DataModule, built from ``task.datamodule`` (its ``_target_``)."""
        node = {**self.cfg.task.datamodule, "_partial_": True}
        return instantiate(node)(tokenizer=self.tokenizer, seed=self.cfg.seed)

    def trackers(self) -> dict[str, Any]:
        """The job-level trackers of ``logger`` (one W&B run for all stages), on rank 0 only."""
        if self._trackers is None:
            self._trackers = {}
            if is_global_zero():
                structured = OmegaConf.structured(self.cfg)  # the run config, for the trackers
                for name, node in self.cfg.logger.items():
                    if node and _is_job_tracker(node):
                        # partial: ``config`` would clash with instantiate's own first argument
                        self._trackers[name] = instantiate(node, _partial_=True)(
                            run_dir=str(self.run_dir),
                            name=self.cfg.run_name,
                            run_id=self.run_id,
                            config=OmegaConf.to_container(structured, resolve=True),
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

    def log_export(self, export_dir: str | Path, label: str) -> None:
        """Log an export directory as a model artifact of each job tracker (rank 0), named from
        the run and aliased by its target ``label`` (``s0.6``, ``x2.0``) and seed."""
        for tracker in self.trackers().values():
            tracker.log_export(export_dir, self.cfg.run_name, label, int(self.cfg.seed))

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
            # a kill or a full disk never truncates last.ckpt
            plugins=[AtomicCheckpointIO(), *cluster_plugins()],
        )
        if eval_every_steps:
            accumulate = self.cfg.trainer.get("accumulate_grad_batches", 1) or 1
            kwargs.update(
                val_check_interval=eval_every_steps * accumulate, check_val_every_n_epoch=None
            )
        return instantiate(self.cfg.trainer, **kwargs)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Validation metrics of an unmasked model as ``{metric: percent}`` (``val/`` dropped)."""
        system = CoFiSystem(model, task=self.task.name, stage=StageConfig(lr=0.0))
        trainer = instantiate(
            self.cfg.trainer,
            logger=False,
            enable_checkpointing=False,
            callbacks=[],
            default_root_dir=str(self.run_dir),
        )
        trainer.validate(system, datamodule=self.datamodule, verbose=False)
        return system.recorded_metrics()


def cluster_plugins() -> list[SLURMEnvironment]:
    """Under a SLURM job, Lightning's SLURM environment with its own requeue disarmed: submitit
    requeues the job and the run resumes from its last checkpoint (Lightning's would save an
    ``hpc_ckpt_<n>.ckpt`` as a second resume path)."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []
