"""Resume is bit-exact: a run killed in any stage and resumed exports the same network, weight for
weight, as an uninterrupted run with the same seed."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from cofi_lightning.run.pipeline import train

from runs import Crash, tiny_run_overrides


@pytest.fixture
def tiny_overrides(tiny_bert_dropout_dir, feature_cache):
    """The tiny pipeline on a model with dropout: resume must replay its random numbers."""
    return lambda run_dir: tiny_run_overrides(tiny_bert_dropout_dir, run_dir, feature_cache)


def _overrides(tiny_overrides, run_dir, every: int) -> list[str]:
    out = [o for o in tiny_overrides(run_dir) if not o.startswith("pruning.checkpoint_every")]
    return [*out, f"pruning.checkpoint_every_steps={every}"]


def _assert_same_export(a: dict, b: dict) -> None:
    assert a["structure"] == b["structure"]
    assert a["sparsity"] == b["sparsity"] and a["pruned"] == b["pruned"]
    wa = load_file(f"{a['export_dir']}/model.safetensors")
    wb = load_file(f"{b['export_dir']}/model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=0, msg=key)


def _killed_and_resumed(compose_train, overrides, stage: str, step: int) -> dict:
    cfg = compose_train(overrides)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, extra_callbacks={stage: [Crash(step)]})
    return train(cfg)


@pytest.fixture
def uninterrupted(compose_train, tiny_overrides, tmp_path_factory):
    """``{checkpoint_every_steps: results}`` of uninterrupted runs, computed once per value."""
    done: dict[int, dict] = {}

    def get(every: int) -> dict:
        if every not in done:
            run = tmp_path_factory.mktemp("uninterrupted")
            done[every] = train(compose_train(_overrides(tiny_overrides, run, every)))
        return done[every]

    return get


def test_kill_mid_prune_between_checkpoints_resumes_bit_exact(
    compose_train, tiny_overrides, uninterrupted, tmp_path
):
    """Checkpoints every 2 steps, killed after step 5: steps 5 and its dropout are replayed."""
    resumed = _killed_and_resumed(
        compose_train, _overrides(tiny_overrides, tmp_path / "run", 2), "prune", 5
    )
    _assert_same_export(uninterrupted(2), resumed)


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "step", "every"), [
    ("teacher", 3, 1), ("teacher", 3, 2), ("prune", 4, 1), ("finetune", 3, 1), ("finetune", 3, 2),
])  # fmt: skip
def test_kill_in_every_stage_resumes_bit_exact(
    compose_train, tiny_overrides, uninterrupted, tmp_path, stage, step, every
):
    resumed = _killed_and_resumed(
        compose_train, _overrides(tiny_overrides, tmp_path / "run", every), stage, step
    )
    _assert_same_export(uninterrupted(every), resumed)
