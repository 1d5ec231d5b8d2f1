"""The CoFi pipeline: stage loop, resume bookkeeping and ``results.json``.

This file owns ``train(cfg)`` (what ``train.py`` calls) and the :class:`RunContext` the stages
share: the run directory, tokenizer and DataModule, and how trainers, loggers and callbacks of a
stage are built from the config. A stage that finishes writes ``<run_dir>/<stage>/DONE.json``
(its record: metrics, seconds, outputs); a rerun skips it, and an unfinished stage resumes from
``<run_dir>/<stage>/checkpoints/last.ckpt``. What each stage does lives in
``cofi_lightning.stages``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf
from transformers import AutoTokenizer

from cofi_lightning.config_schema import validate_config
from cofi_lightning.data import build_datamodule, get_task
from cofi_lightning.data.loaders import RestoreLoaderState
from cofi_lightning.lit_module import CoFiSystem, DistillSettings
from cofi_lightning.modeling import CoFiBertForQuestionAnswering, CoFiBertForSequenceClassification
from cofi_lightning.optim import OptimConfig

log = logging.getLogger(__name__)

RESULT_KEYS = (
    "task",
    "target_sparsity",
    "sparsity",
    "params",
    "teacher",
    "pruned",
    "main_metric",
    "structure",
    "export_dir",
    "ablation",
    "seed",
    "stage_seconds",
)


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


class RunContext:
    """What every stage of one run shares (config, directories, data, builders).

    Args:
        cfg: The composed, validated config.
        run_dir: The run directory.
        extra_callbacks: ``{stage: [callbacks]}`` added to that stage's trainer (tests use it to
            interrupt a stage).
    """

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        extra_callbacks: dict[str, Sequence[L.Callback]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.task = get_task(cfg.task.name)
        self.extra_callbacks = extra_callbacks or {}
        self.records: dict[str, dict[str, Any]] = {}
        self._tokenizer = None
        self._datamodule = None
        #: ``{stage: StageClock}`` of the stage's trainer; ``{stage: start}`` of this attempt.
        self.clocks: dict[str, StageClock] = {}
        self.started: dict[str, float] = {}

    # --- models and data --------------------------------------------------------------------------

    @property
    def model_class(self) -> type:
        qa = self.task.family == "squad"
        return CoFiBertForQuestionAnswering if qa else CoFiBertForSequenceClassification

    def load_model(self, path: str | Path) -> torch.nn.Module:
        """A CoFi model of the task's class from a vanilla or exported HF directory / hub name."""
        kwargs = {} if self.task.family == "squad" else {"num_labels": self.task.num_labels}
        return self.model_class.from_pretrained(str(path), **kwargs)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = AutoTokenizer.from_pretrained(self.cfg.model.tokenizer, use_fast=True)
        return self._tokenizer

    @property
    def datamodule(self) -> L.LightningDataModule:
        if self._datamodule is None:
            kwargs = OmegaConf.to_container(self.cfg.task.datamodule, resolve=True)
            for key in ("_target_", "_partial_", "task"):
                kwargs.pop(key, None)
            kwargs.setdefault("seed", int(self.cfg.seed))
            self._datamodule = build_datamodule(self.task.name, self.tokenizer, **kwargs)
        return self._datamodule

    def optim(self, lr: float, schedule: str, freeze_embeddings: bool) -> OptimConfig:
        o = self.cfg.optim
        return OptimConfig(
            lr=lr,
            reg_lr=self.cfg.pruning.reg_lr,
            weight_decay=o.weight_decay,
            schedule=schedule,
            warmup_ratio=o.warmup_ratio,
            max_grad_norm=o.max_grad_norm,
            adam_eps=o.adam_eps,
            freeze_embeddings=freeze_embeddings,
        )

    def distill_settings(self) -> DistillSettings:
        d = self.cfg.distill
        return DistillSettings(
            temperature=d.temperature,
            alpha_pred=d.alpha_pred,
            alpha_layer=d.alpha_layer,
            layer_mapping=d.layer_mapping,
        )

    # --- trainers ---------------------------------------------------------------------------------

    def loggers(self, stage: str) -> list:
        out = []
        for node in (self.cfg.get("logger") or {}).values():
            target = node.get("_target_", "")
            if target.endswith("WandbLogger"):
                extra = dict(
                    name=f"{self.cfg.run_name}/{stage}",
                    job_type=stage,
                    save_dir=str(self.run_dir),
                    config=OmegaConf.to_container(self.cfg, resolve=True),
                )
            elif target.endswith("CSVLogger"):
                extra = dict(save_dir=str(self.run_dir / stage), name="csv")
            else:
                extra = {}
            # partial: ``config`` would clash with instantiate's own first argument
            out.append(instantiate(node, _partial_=True)(**extra))
        return out

    def trainer(
        self,
        stage: str,
        *,
        max_epochs: int,
        max_steps: int = -1,
        eval_every_steps: int | None = None,
        callbacks: Sequence[L.Callback] = (),
        checkpoint_every_steps: int | None = None,
    ) -> L.Trainer:
        """A trainer for ``stage`` with its resume checkpoint, loggers and callbacks."""
        loggers = self.loggers(stage)
        every = checkpoint_every_steps or self.cfg.pruning.checkpoint_every_steps
        clock = self.clocks[stage] = StageClock(self.started.get(stage, time.perf_counter()))
        cbs: list[L.Callback] = [
            clock,
            RestoreLoaderState(),
            ModelCheckpoint(
                dirpath=self.run_dir / stage / "checkpoints",
                save_last=True,
                save_top_k=0,
                every_n_train_steps=every,
                save_on_train_epoch_end=True,
            ),
            *callbacks,
            *self.extra_callbacks.get(stage, ()),
        ]
        for node in (self.cfg.get("callbacks") or {}).values():
            if isinstance(node, DictConfig) and "_target_" in node:
                cb = instantiate(node)
                no_bar = isinstance(cb, ProgressBar) and not self.cfg.trainer.get(
                    "enable_progress_bar", True
                )
                if not (isinstance(cb, LearningRateMonitor) and not loggers) and not no_bar:
                    cbs.append(cb)
        kwargs: dict[str, Any] = dict(
            max_epochs=max_epochs,
            max_steps=max_steps,
            default_root_dir=str(self.run_dir / stage),
            logger=loggers or False,
            callbacks=cbs,
        )
        if eval_every_steps:
            accumulate = self.cfg.trainer.get("accumulate_grad_batches", 1) or 1
            kwargs.update(
                val_check_interval=eval_every_steps * accumulate, check_val_every_n_epoch=None
            )
        return instantiate(self.cfg.trainer, **kwargs)

    @staticmethod
    def close_loggers(loggers: Sequence) -> None:
        """End the stage's W&B run, so the next stage's logger starts its own run."""
        for lg in loggers:
            lg.finalize("success")
            if isinstance(lg, WandbLogger) and lg._experiment is not None:
                lg.experiment.finish()

    def resume_path(self, stage: str) -> str | None:
        last = self.run_dir / stage / "checkpoints" / "last.ckpt"
        if last.is_file():
            rank_zero_info(f"[{stage}] resuming from {last}")
            return str(last)
        return None

    def evaluate(
        self, model: torch.nn.Module, trainer: L.Trainer | None = None
    ) -> dict[str, float]:
        """Validation metrics of an unmasked model as ``{metric: percent}`` (``val/`` dropped)."""
        system = CoFiSystem(model, task=self.task.name, optim=self.optim(0.0, "constant", False))
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


# --- the stage loop -------------------------------------------------------------------------------


def run_stage(ctx: RunContext, name: str, fn: Callable[[RunContext], dict[str, Any]]) -> dict:
    """Run one stage unless its ``DONE.json`` exists; write it (rank 0) when the stage ends."""
    done = ctx.run_dir / name / "DONE.json"
    if done.is_file():
        record = json.loads(done.read_text())
        rank_zero_info(f"[{name}] already done ({done}); skipping")
    else:
        rank_zero_info(f"[{name}] starting")
        start = ctx.started[name] = time.perf_counter()
        record = fn(ctx)
        attempt = time.perf_counter() - start
        clock = ctx.clocks.get(name)
        earlier = clock.before if clock is not None else 0.0  # attempts cut short by a crash
        record["seconds"] = round(attempt + earlier, 2)
        record["attempt_seconds"] = round(attempt, 2)
        if _is_global_zero():
            done.parent.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(record, indent=2))
        barrier()
    ctx.records[name] = record
    return record


def barrier() -> None:
    """Wait for every DDP rank (no-op in a single process): rank 0 writes, the others read."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _is_global_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def resolve_run_dir(cfg: DictConfig) -> Path:
    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def train(
    cfg: DictConfig, extra_callbacks: dict[str, Sequence[L.Callback]] | None = None
) -> dict[str, Any]:
    """Run (or resume) the configured stages and return the ``results.json`` content.

    Args:
        cfg: The composed ``conf/train.yaml``.
        extra_callbacks: ``{stage: [callbacks]}`` added to that stage's trainer.
    """
    from cofi_lightning import stages

    run_dir = resolve_run_dir(cfg)
    validate_config(cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True)
    ctx = RunContext(cfg, run_dir, extra_callbacks)
    for name in stages.STAGE_ORDER:
        if name in cfg.stages:
            run_stage(ctx, name, stages.STAGES[name])
        elif (run_dir / name / "DONE.json").is_file():
            ctx.records[name] = json.loads((run_dir / name / "DONE.json").read_text())
    if "export" not in ctx.records:
        return {}
    results = results_from_records(ctx)
    if _is_global_zero():
        (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    rank_zero_info(f"results: {json.dumps(results)}")
    return results


def results_from_records(ctx: RunContext) -> dict[str, Any]:
    """The ``results.json`` dict (keys: :data:`RESULT_KEYS`) from the stages' DONE records."""
    export = ctx.records["export"]
    teacher = ctx.records.get("teacher", {})
    results = {
        "task": ctx.task.name,
        "target_sparsity": float(ctx.cfg.pruning.target_sparsity),
        "sparsity": export["sparsity"],
        "params": export["params"],
        "teacher": teacher.get("metrics", {}),
        "pruned": export["metrics"],
        "main_metric": ctx.task.main_metric_key,
        "structure": export["structure"],
        "export_dir": export["export_dir"],
        "ablation": ctx.cfg.get("ablation_name"),
        "seed": int(ctx.cfg.seed),
        "stage_seconds": {k: r.get("seconds") for k, r in ctx.records.items()},
    }
    assert tuple(results) == RESULT_KEYS
    return results
