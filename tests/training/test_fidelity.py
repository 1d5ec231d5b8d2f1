"""The original code's training choices, each an option (``fidelity=original`` composes them):
optimizer restart when pruning starts, the clipping set, the layer loss over all positions."""

from __future__ import annotations

import pytest
import torch

from cofi_lightning.config import (
    DistillConfig,
    OptimConfig,
    PruningConfig,
    config_hash,
    load_config,
)
from cofi_lightning.core.distillation import LayerDistiller
from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.training.lit_module import CoFiSystem
from cofi_lightning.training.optim import (
    WEIGHT_GROUPS,
    build_optimizer,
    build_scheduler,
    group_params,
)
from cofi_lightning.training.parts import Distillation, Pruning


def _system(student, teacher, *, restart=False, optim=None, freeze=False, pre=2):
    stage = PruningConfig(
        lr=1e-3,
        reg_lr=0.1,
        target_sparsity=0.5,
        pre_pruning_steps=pre,
        lagrangian_warmup_steps=2,
        restart_optimizer=restart,
    )
    return CoFiSystem(
        student,
        task="sst2",
        stage=stage,
        optim=optim or OptimConfig(),
        freeze_embeddings=freeze,
        objective=Distillation(
            teacher, DistillConfig(teacher_cache=False), LayerDistiller(teacher.config.hidden_size)
        ),
        pruning=Pruning(CoFiMasks(student.config), stage, seed=3),
    )


def test_the_restarted_schedule_starts_afresh_over_the_remaining_steps():
    p = torch.nn.Parameter(torch.zeros(2))
    optimizer = build_optimizer([("w", p)], OptimConfig(), lr=1.0)
    plain = build_scheduler(optimizer, OptimConfig(), "linear", 10).lr_lambdas[0]
    optimizer = build_optimizer([("w", p)], OptimConfig(), lr=1.0)
    restarted = build_scheduler(optimizer, OptimConfig(), "linear", 10, restart_at=4).lr_lambdas[0]
    assert [restarted(s) for s in range(4)] == [plain(s) for s in range(4)]
    assert [restarted(s) for s in (4, 7, 9)] == pytest.approx([1.0, 0.5, 1 / 6])
    assert plain(7) == pytest.approx(0.3)


@pytest.mark.parametrize("restart", [False, True])
def test_restart_forgets_the_weights_adam_moments_when_masks_switch_on(
    make_student, make_trainer, synthetic_dm, restart
):
    system = _system(make_student(), make_student(seed=1), restart=restart, pre=2)
    make_trainer(max_steps=5).fit(system, synthetic_dm)
    optimizer = system.optimizers(use_pl_optimizer=False)
    weight = group_params(optimizer, WEIGHT_GROUPS)[0]
    log_alpha = group_params(optimizer, ["log_alpha"])[0]
    # 5 steps; a restart at step 2 leaves 3 steps of moments on the weights, none on the masks
    assert int(optimizer.state[weight]["step"]) == (3 if restart else 5)
    assert int(optimizer.state[log_alpha]["step"]) == 3


def _clipped_norm(system, params) -> float:
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))


@pytest.mark.parametrize("clip_over", ["optimized", "model"])
def test_the_clipping_set(make_student, synthetic_dm, clip_over):
    optim = OptimConfig(max_grad_norm=1e-3, clip_over=clip_over)
    system = _system(make_student(), make_student(seed=1), optim=optim, freeze=True, pre=0)
    embedding = system.student.bert.embeddings.word_embeddings.weight
    # Frozen embeddings: their gradients are computed only when the clip norm reads them.
    assert embedding.requires_grad == (clip_over == "model")
    optimizer = build_optimizer(
        system._weights(), optim, lr=1e-3, freeze_embeddings=True, log_alphas=(), multipliers=None
    )
    batch = next(iter(synthetic_dm.train_dataloader()))
    system.log = lambda *a, **k: None
    system.training_step(batch, 0).backward()
    system.configure_gradient_clipping(optimizer)
    optimized = group_params(optimizer, WEIGHT_GROUPS)
    with_grad = [p for _, p in system._weights() if p.grad is not None]
    if clip_over == "model":
        assert embedding.grad is not None and all(p is not embedding for p in optimized)
        assert _clipped_norm(system, with_grad) == pytest.approx(1e-3, rel=1e-4)
        assert _clipped_norm(system, optimized) < 1e-3  # the embeddings took part of the norm
    else:
        assert embedding.grad is None
        assert _clipped_norm(system, optimized) == pytest.approx(1e-3, rel=1e-4)


def test_layer_loss_over_all_positions_counts_padding():
    torch.manual_seed(0)
    distiller = LayerDistiller(8)
    student = [torch.randn(2, 5, 8) for _ in range(2)]
    teacher = [torch.randn(2, 5, 8) for _ in range(2)]
    full = torch.ones(2, 5, dtype=torch.long)
    padded = full.clone()
    padded[1, 3:] = 0

    def loss(mask, tokens):
        return distiller(student, teacher, mask, tokens=tokens)[0]

    torch.testing.assert_close(loss(full, "real"), loss(full, "all"))  # no padding: the same
    torch.testing.assert_close(loss(padded, "all"), loss(full, "real"))  # padding counts
    assert not torch.allclose(loss(padded, "real"), loss(padded, "all"))


def test_fidelity_original_composes_the_original_choices(compose_train):
    ours_cfg, original_cfg = compose_train([]), compose_train(["fidelity=original"])
    ours, original = load_config(ours_cfg), load_config(original_cfg)
    assert (ours.fidelity_name, original.fidelity_name) == ("ours", "original")
    assert ours.distill.layer_loss_tokens == "real" and ours.distill.teacher_cache
    assert original.distill.layer_loss_tokens == "all" and not original.distill.teacher_cache
    assert original.pruning.restart_optimizer and not ours.pruning.restart_optimizer
    assert (original.optim.clip_over, ours.optim.clip_over) == ("model", "optimized")
    assert (original.pruning.select_on, ours.pruning.select_on) == ("expected", "deterministic")
    assert ours.pruning.multiplier_reset and not original.pruning.multiplier_reset
    assert config_hash(original_cfg) != config_hash(ours_cfg)  # another run directory
