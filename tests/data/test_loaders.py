"""Training order reproducible per epoch and resumable mid-epoch; evaluation unrepeated."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from cofi_lightning.data.loaders import EpochShuffleSampler, ResumableDataLoader, eval_sampler


def _loader(n: int = 20, seed: int = 3) -> ResumableDataLoader:
    ds = TensorDataset(torch.arange(n))
    return ResumableDataLoader(ds, batch_size=4, sampler=EpochShuffleSampler(n, seed))


def _ids(batches) -> list[list[int]]:
    return [b[0].tolist() for b in batches]


def test_epoch_order_depends_on_seed_and_epoch_only():
    a, b = EpochShuffleSampler(50, seed=1), EpochShuffleSampler(50, seed=1)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    b.set_epoch(1)
    assert list(a) != list(b) and sorted(b) == list(range(50))
    assert list(EpochShuffleSampler(50, seed=2)) != list(a)


def test_resume_mid_epoch_yields_exactly_the_unseen_batches():
    full = _ids(_loader())
    first = _loader()
    it = iter(first)
    seen = [next(it)[0].tolist() for _ in range(2)]
    state = first.state_dict()
    assert state["batches"] == 2

    resumed = _loader()  # a new process: same dataset and seed, state from the checkpoint
    resumed.load_state_dict(state)
    rest = _ids(resumed)
    assert seen + rest == full
    assert sorted(sum(seen + rest, [])) == list(range(20))  # every example once
    assert _ids(resumed) == full  # the skip applies to one iterator only


def test_resume_state_of_another_epoch_is_not_applied():
    loader = _loader()
    loader.sampler.set_epoch(1)
    loader.load_state_dict({"epoch": 0, "batches": 3})  # a stale state: epoch 0 is over
    assert len(_ids(loader)) == len(loader)


def test_eval_sampler_without_process_group_is_sequential():
    ds = TensorDataset(torch.arange(10))
    assert eval_sampler(ds) is None
    order = [b[0].tolist() for b in DataLoader(ds, batch_size=4, sampler=eval_sampler(ds))]
    assert sum(order, []) == list(range(10))
