"""Tests of the target-sparsity schedule and the min-max Lagrangian penalty (pure tensors)."""

from __future__ import annotations

import pytest
import torch

from cofi_lightning.lagrangian import (
    LagrangeMultipliers,
    LagrangianConfig,
    multiplier_param_group,
    target_sparsity,
)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(-5, 0.0), (0, 0.0), (50, 0.35), (100, 0.7), (1000, 0.7)],
)
def test_target_sparsity_linear_ramp(step: int, expected: float) -> None:
    assert target_sparsity(step, target=0.7, warmup_steps=100) == pytest.approx(expected)


def test_target_sparsity_start_and_no_warmup() -> None:
    assert target_sparsity(5, target=0.6, warmup_steps=10, start=0.2) == pytest.approx(0.4)
    assert target_sparsity(-1, target=0.6, warmup_steps=10, start=0.2) == pytest.approx(0.2)
    assert target_sparsity(0, target=0.6, warmup_steps=0) == pytest.approx(0.6)
    # Before pruning starts (negative step) the target is `start` even without a ramp.
    assert target_sparsity(-3, target=0.6, warmup_steps=0) == pytest.approx(0.0)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_target_sparsity_rejects_invalid_target(bad: float) -> None:
    with pytest.raises(ValueError, match="target_sparsity"):
        target_sparsity(0, target=bad, warmup_steps=10)
    with pytest.raises(ValueError, match="target_sparsity"):
        LagrangianConfig(target_sparsity=bad)


def test_target_sparsity_rejects_negative_warmup() -> None:
    with pytest.raises(ValueError, match="warmup_steps"):
        target_sparsity(0, target=0.5, warmup_steps=-1)


def test_config_target_at_matches_function() -> None:
    cfg = LagrangianConfig(target_sparsity=0.9, warmup_steps=20)
    assert cfg.target_at(10) == pytest.approx(target_sparsity(10, target=0.9, warmup_steps=20))
    with pytest.raises(ValueError, match="reg_lr"):
        LagrangianConfig(target_sparsity=0.5, reg_lr=-0.01)


def test_penalty_formula_and_zero_init() -> None:
    m = LagrangeMultipliers()
    assert m.lambda_1.item() == 0.0 and m.lambda_2.item() == 0.0
    with torch.no_grad():
        m.lambda_1.fill_(-2.0)
        m.lambda_2.fill_(3.0)
    s_hat = torch.tensor(0.4)
    torch.testing.assert_close(m(s_hat, 0.5), torch.tensor(-2.0 * -0.1 + 3.0 * 0.01))
    torch.testing.assert_close(m(s_hat, torch.tensor(0.5)), m(s_hat, 0.5))


def test_param_group_is_ascent_without_decay() -> None:
    m = LagrangeMultipliers()
    group = multiplier_param_group(m, 0.01)
    assert group["maximize"] is True and group["weight_decay"] == 0.0 and group["lr"] == 0.01
    assert {id(p) for p in group["params"]} == {id(m.lambda_1), id(m.lambda_2)}
    with pytest.raises(ValueError, match="reg_lr"):
        multiplier_param_group(m, -0.01)


def _toy_system(s_hat_init: float, lr: float = 0.05):
    """A log-alpha setting ŝ = sigmoid(log_alpha), the multipliers, ONE AdamW with both groups."""
    log_alpha = torch.nn.Parameter(torch.logit(torch.tensor(s_hat_init)))
    multipliers = LagrangeMultipliers()
    opt = torch.optim.AdamW(
        [
            {"params": [log_alpha], "lr": lr, "weight_decay": 0.0},
            multiplier_param_group(multipliers, lr),
        ]
    )
    return log_alpha, multipliers, opt


def _step(log_alpha, multipliers, opt, target: float) -> None:
    opt.zero_grad()
    multipliers(torch.sigmoid(log_alpha), target).backward()
    opt.step()


@pytest.mark.parametrize(("s_hat", "target"), [(0.2, 0.6), (0.8, 0.3)])
def test_one_step_multipliers_ascend_and_masks_descend(s_hat: float, target: float) -> None:
    log_alpha, multipliers, opt = _toy_system(s_hat)
    s0 = torch.sigmoid(log_alpha).detach()

    # Step 1 from λ = 0: the multipliers get gradients (ŝ − t, (ŝ − t)²) and the penalty at the
    # same ŝ grows from 0; the mask sees ∂L_c/∂ŝ = λ1 + 2 λ2 (ŝ − t) = 0 and does not move.
    _step(log_alpha, multipliers, opt, target)
    with torch.no_grad():
        assert multipliers(s0, target).item() > 0.0
        assert torch.sign(multipliers.lambda_1) == torch.sign(s0 - target)
        torch.testing.assert_close(torch.sigmoid(log_alpha), s0)

    # Step 2: the same single optimizer step raises the penalty again (ascent on λ) and moves ŝ
    # toward the target (descent on the log-alpha).
    with torch.no_grad():
        before = multipliers(s0, target).item()
    _step(log_alpha, multipliers, opt, target)
    with torch.no_grad():
        s1 = torch.sigmoid(log_alpha)
        assert multipliers(s0, target).item() > before
        assert abs(s1.item() - target) < abs(s0.item() - target)


@pytest.mark.parametrize(("s_hat", "target"), [(0.1, 0.6), (0.9, 0.3)])
def test_min_max_converges_to_target(s_hat: float, target: float) -> None:
    log_alpha, multipliers, opt = _toy_system(s_hat)
    for _ in range(400):
        _step(log_alpha, multipliers, opt, target)
    assert torch.sigmoid(log_alpha).item() == pytest.approx(target, abs=0.02)


def test_quadratic_term_never_negative() -> None:
    torch.manual_seed(0)
    log_alpha, multipliers, opt = _toy_system(0.5, lr=0.1)
    previous = 0.0
    for target in torch.rand(50).tolist():
        _step(log_alpha, multipliers, opt, target * 0.99)
        # λ2's gradient (ŝ − t)² is never negative, so ascent only ever raises it from its init 0.
        assert multipliers.lambda_2.item() >= previous
        previous = multipliers.lambda_2.item()
        gap = torch.sigmoid(log_alpha).detach() - target
        assert (multipliers.lambda_2.detach() * gap * gap).item() >= 0.0
