"""DataLoaders that resume mid-epoch and evaluate every example exactly once under DDP.

A run killed mid-epoch continues with exactly the batches it had not seen (a plain
``RandomSampler`` would restart the epoch in a new order: some examples twice, some never).
Lightning restores the loader's state only if the training loader is built after the checkpoint is
read, so nothing may build it early (``CoFiSystem.stage_steps`` sizes the schedules from the
dataset instead of ``trainer.estimated_stepping_batches``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler


class EpochShuffleSampler(Sampler[int]):
    """A fresh random permutation of ``range(n)`` per epoch, reproducible from ``(seed, epoch)``
    (Lightning calls :meth:`set_epoch` before each training epoch)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position inside the current epoch survives a checkpoint.

    ``state_dict()`` is ``{"epoch", "batches"}`` (batches handed out by the current iterator);
    after ``load_state_dict`` the next iterator skips that many batches of the same epoch's order.
    Skipped batches are still collated (cheap: features are pre-tokenized) but never returned, so
    the skip works with any sampler, including the ones Lightning wraps for DDP.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches = 0
        self._skip = 0
        self._skip_epoch: int | None = None

    def _epoch(self) -> int | None:
        sampler = getattr(self.sampler, "epoch", None)
        return None if sampler is None else int(sampler)

    def __iter__(self) -> Iterator[Any]:
        skip = self._skip if self._skip_epoch in (None, self._epoch()) else 0
        self._skip, self._skip_epoch = 0, None
        self._batches = 0
        for i, batch in enumerate(super().__iter__()):
            if i < skip:
                continue
            self._batches = i + 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch(), "batches": self._batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._skip = int(state.get("batches", 0))
        self._skip_epoch = state.get("epoch")


def eval_sampler(dataset: Any) -> Sampler[int] | None:
    """Under DDP, a sampler whose shards cover the dataset exactly once (Lightning's default pads
    them with repeated examples, which metrics would count twice); else None (sequential order)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    return UnrepeatedDistributedSampler(dataset, shuffle=False)
