"""The seeding of a run's global RNGs, from where the run is.

Every random number of a run is drawn after the global RNGs were seeded from where the run is,
never from what ran before in the process (a resumed run, or one whose stages ran in several
invocations, has another history): a stage's start is seeded from (seed, stage) by
:func:`seed_stage`, each training batch from (seed, step, micro-batch, rank) by :class:`StepSeed`;
data order and mask noise use generators of their own, seeded from (seed, epoch) and (seed, step).
"""

from __future__ import annotations

import hashlib

import lightning as L
import torch


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
