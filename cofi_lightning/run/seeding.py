"""The seeding of a run's global RNGs, from where the run is, never from what ran before in the
process (a resumed run has another history): a stage's start from (seed, stage), each training
batch from (seed, step, micro-batch, rank); data order and mask noise use generators of their own.
"""

from __future__ import annotations

import hashlib

import lightning as L
import torch


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
