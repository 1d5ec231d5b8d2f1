"""Helpers of the pipeline tests (a plain module: importable from test files and the conftest
alike, whatever ``conftest`` resolves to): a stage kill and the overrides of the tiny pipeline."""

from __future__ import annotations

import lightning as L


class Crash(L.Callback):
    """Raise once the stage reaches ``step`` optimizer steps (a kill in the middle of a stage)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError("simulated crash")


class CrashInValidation(L.Callback):
    """Raise in the first validation batch of a fit (a kill while a stage is evaluating)."""

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, *args) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            raise RuntimeError("simulated crash")


def tiny_run_overrides(model_dir, run_dir, cache_dir) -> list[str]:
    """Overrides that shrink ``experiment=demo`` to seconds on the tiny model."""
    return [
        "experiment=demo",
        f"model.pretrained={model_dir}",
        f"run_dir={run_dir}",
        f"paths.cache_dir={cache_dir}",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "task.datamodule.limit_train_samples=48",
        "task.datamodule.limit_eval_samples=32",
        "task.datamodule.batch_size=8",
        "distill.teacher_training.epochs=1",
        "pruning.target_sparsity=0.3",
        "pruning.epochs=2",
        "pruning.reg_lr=0.5",
        "pruning.pre_pruning_steps=1",
        "pruning.lagrangian_warmup_steps=4",
        "pruning.eval_every_steps=3",
        "pruning.checkpoint_every_steps=1",
        "pruning.sparsity_epsilon=0.05",
        "pruning.finetune.epochs=1",
    ]


#: results.json's run-wide keys and each operating point's (read by the report and the card).
RESULT_KEYS = (
    "task",
    "teacher",
    "main_metric",
    "ablation",
    "method",
    "constraint",
    "fidelity",
    "seed",
    "stage_seconds",
)
POINT_KEYS = (
    "target_sparsity",
    "sparsity",
    "params",
    "pruned",
    "structure",
    "export_dir",
    "latency",
)
