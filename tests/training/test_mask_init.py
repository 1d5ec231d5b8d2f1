"""``pruning.mask_init=posttrain``: CoFi's head and FFN-dim gates start from the fine-tuned
teacher's Fisher importance (the structure post-training pruning keeps), deterministically; the
run goes through export; without a fine-tuned teacher it is refused at the door."""

from __future__ import annotations

import json

import pytest
import torch
from test_posttrain import POSTTRAIN, _batches, _model, _params_fits, _refused

from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.core.posttrain import (
    KEPT_LOG_ALPHA,
    PRUNED_LOG_ALPHA,
    posttrain_masks,
    warm_start_,
)
from cofi_lightning.core.posttrain.importance import mask_gradients

MASK_INIT = ["pruning.mask_init=posttrain", *POSTTRAIN[1:]]  # posttrain's calibration settings


def _warm_started(model, batches, target):
    gates = CoFiMasks(model.config)
    kept = posttrain_masks(model, batches, [_params_fits(gates, target)], False, "never")[0]
    warm_start_(gates, kept)
    return gates, kept


@pytest.mark.parametrize("target", [0.3, 0.6])
def test_log_alphas_follow_the_fisher_importance(target):
    """Within each gate (across layers, so within each layer too) a unit of larger Fisher never
    starts with a lower log-alpha; both values are CoFi's own initial ones; the same inputs give
    the same log-alphas."""
    model, batches = _model(), _batches()
    gates, _ = _warm_started(model, batches, target)
    fisher = {u: g.pow(2).sum(0) for u, g in mask_gradients(model, batches).items()}
    for unit, importance in fisher.items():
        log_alpha = gates.gates[unit].log_alpha.detach().reshape(importance.shape)
        assert set(log_alpha.unique().tolist()) == {KEPT_LOG_ALPHA, PRUNED_LOG_ALPHA}
        ordered = log_alpha.flatten()[importance.flatten().argsort(descending=True)]
        assert (ordered[1:] <= ordered[:-1]).all(), unit
    again, _ = _warm_started(model, batches, target)
    for unit in fisher:
        assert torch.equal(again.gates[unit].log_alpha, gates.gates[unit].log_alpha)


def test_the_expected_sparsity_at_step_0_stays_near_the_ramps_start():
    """Pruned units start where CoFi starts every FFN dim (P(z ≠ 0) ≈ 0.83, kept ones ≈ 1), so
    the expected sparsity at step 0 is ~0.17 × the searched structure's: here below the default
    init's."""
    model = _model()
    gates, kept = _warm_started(model, _batches(), 0.3)
    closed = 1 - float(gates.gates["intermediate"].prob_nonzero().detach().min())  # ≈ 0.17
    s_hat = float(gates.expected_sparsity().detach())
    assert s_hat == pytest.approx(closed * gates.sparsity(kept), abs=0.01)
    assert s_hat <= float(CoFiMasks(model.config).expected_sparsity().detach())


def test_pipeline_with_mask_init_posttrain_runs_through_export(
    compose_train, tiny_overrides, tmp_path, monkeypatch
):
    from cofi_lightning.run import stages
    from cofi_lightning.run.pipeline import train

    started = {}

    class Recording(stages.Pruning):
        def __init__(self, masks, *args, **kwargs):
            started.update({u: g.log_alpha.detach().clone() for u, g in masks.gates.items()})
            super().__init__(masks, *args, **kwargs)

    monkeypatch.setattr(stages, "Pruning", Recording)
    run_dir = tmp_path / "run"
    results = train(compose_train([*tiny_overrides(run_dir), *MASK_INIT]))
    for unit in ("head", "intermediate"):  # warm-started: both values, some units pruned
        assert set(started[unit].unique().tolist()) == {KEPT_LOG_ALPHA, PRUNED_LOG_ALPHA}
    assert (started["hidden"] - 10.0).abs().max() < 0.1  # the other gates: CoFi's init
    assert results["method"] == "cofi" and (run_dir / "export" / "DONE.json").is_file()
    meta = json.loads((run_dir / "prune" / "best" / "meta.json").read_text())
    assert results["sparsity"] == pytest.approx(meta["deterministic_sparsity"])


def test_mask_init_posttrain_without_a_fine_tuned_model_is_refused_at_the_door(
    compose_train, tiny_overrides, tmp_path
):
    from cofi_lightning.config import ConfigError

    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), *MASK_INIT, "distill.enabled=false"]
    match = "pruning.mask_init=posttrain needs the fine-tuned teacher, but distill.enabled=false"
    _refused(compose_train, overrides, run_dir, ConfigError, match)
    overrides = [*tiny_overrides(run_dir), *MASK_INIT, "pruning.method=uniform"]
    match = "pruning.mask_init is posttrain, which warm-starts CoFi's gates; pruning.method=uniform"
    _refused(compose_train, overrides, run_dir, ConfigError, match)


def test_mask_init_posttrain_refuses_a_teacher_of_another_shape(
    compose_train, tiny_overrides, minilm_dir, tmp_path
):
    from cofi_lightning.config import ConfigError

    from tiny_bert import save_tiny_bert

    wide = save_tiny_bert(tmp_path / "wide_ffn", minilm_dir, intermediate_size=64)
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), *MASK_INIT, f"distill.teacher={wide}"]
    match = r"pruning.mask_init=posttrain: distill.teacher=.*\(intermediate_size 64 vs 48\)"
    _refused(compose_train, overrides, run_dir, ConfigError, match)
