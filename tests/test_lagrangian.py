"""Tests of the target-sparsity schedule and the min-max Lagrangian penalty (pure tensors)."""

from __future__ import annotations

import pytest
import torch

from cofi_lightning.config import PruningConfig
from cofi_lightning.config.checks import ConfigError
from cofi_lightning.core.lagrangian import (
    LagrangeMultipliers,
    TargetPath,
    multiplier_param_group,
)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(-5, 0.0), (0, 0.0), (50, 0.35), (100, 0.7), (1000, 0.7)],
)
def test_target_linear_ramp(step: int, expected: float) -> None:
    assert TargetPath((0.7,), (100,))(step) == pytest.approx(expected)


def test_target_start_and_no_warmup() -> None:
    assert TargetPath((0.6,), (10,), start=0.2)(5) == pytest.approx(0.4)
    assert TargetPath((0.6,), (10,), start=0.2)(-1) == pytest.approx(0.2)
    assert TargetPath((0.6,), (0,))(0) == pytest.approx(0.6)
    # Before pruning starts (negative step) the target is `start` even without a ramp.
    assert TargetPath((0.6,), (0,))(-3) == pytest.approx(0.0)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_target_rejects_invalid_target(bad: float) -> None:
    with pytest.raises(ValueError, match="target_sparsity"):
        TargetPath((bad,), (10,))
    with pytest.raises(ValueError, match="start_sparsity"):
        TargetPath((0.5,), (10,), start=bad)


def test_target_rejects_negative_warmup() -> None:
    with pytest.raises(ValueError, match=">= 0 steps"):
        TargetPath((0.5,), (-1,))


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
    with pytest.raises(ConfigError, match="pruning.reg_lr"):
        PruningConfig(reg_lr=-0.01)  # the ascent is maximize=True, never a negative lr


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


def test_lambda_2_only_grows_and_the_masks_descend_the_penalty_it_shapes() -> None:
    torch.manual_seed(0)
    log_alpha, multipliers, opt = _toy_system(0.5, lr=0.1)
    previous = 0.0
    for target in torch.rand(50).tolist():
        _step(log_alpha, multipliers, opt, target * 0.99)
        # λ2's gradient (ŝ − t)² is positive whenever ŝ ≠ t, so ascent strictly raises it from 0.
        assert multipliers.lambda_2.item() > previous
        previous = multipliers.lambda_2.item()

    # What the masks feel at the λ the ascent reached: for a fixed t, L_c is a parabola in ŝ with
    # curvature 2 λ2 > 0 and its minimum at ŝ* = t − λ1 / (2 λ2), not at t (λ1 shifts it). One
    # descent step of the log-alpha alone, λ fixed, must lower L_c and move ŝ toward ŝ*.
    lambda_1, lambda_2 = multipliers.lambda_1.item(), multipliers.lambda_2.item()
    masks_only = torch.optim.SGD([log_alpha], lr=0.05)
    for target in (0.1, 0.5, 0.9):
        s_star = target - lambda_1 / (2 * lambda_2)
        s0 = torch.sigmoid(log_alpha).item()
        penalty = multipliers(torch.sigmoid(log_alpha), target)
        masks_only.zero_grad()
        multipliers.zero_grad()
        penalty.backward()
        # ∂L_c/∂log_alpha = (λ1 + 2 λ2 (ŝ − t)) · ŝ (1 − ŝ) = 2 λ2 (ŝ − ŝ*) · ŝ (1 − ŝ)
        expected_grad = 2 * lambda_2 * (s0 - s_star) * s0 * (1 - s0)
        assert log_alpha.grad.item() == pytest.approx(expected_grad, rel=1e-4)
        masks_only.step()
        s1 = torch.sigmoid(log_alpha).item()
        assert abs(s1 - s_star) < abs(s0 - s_star)
        assert multipliers(torch.tensor(s1), target).item() < penalty.item()


def test_reset_windup_zeroes_lambda_1_only_when_it_pushes_the_wrong_way() -> None:
    m = LagrangeMultipliers()
    opt = torch.optim.AdamW([multiplier_param_group(m, 0.1)])
    with torch.no_grad():
        m.lambda_1.fill_(-0.5)  # wound up while ŝ < t: pushes ŝ up
        m.lambda_2.fill_(0.3)
    opt.state[m.lambda_1]["exp_avg"] = torch.tensor(-1.0)
    assert not m.reset_windup_(-0.1, opt)  # ŝ < t: the right way, kept
    assert m.lambda_1.item() == -0.5 and m.lambda_1 in opt.state
    assert m.reset_windup_(0.05, opt)  # ŝ passed t, λ1 still pushes up: reset
    assert m.lambda_1.item() == 0.0 and m.lambda_1 not in opt.state
    assert m.lambda_2.item() == pytest.approx(0.3)  # the quadratic term is untouched


def _simulate(reset: bool, steps: int = 240, ramp: int = 120, target: float = 0.6):
    """Masks and multipliers alone on a 4-layer tiny BERT's shapes, with a task pressure that
    resists pruning; returns ``[(t, ŝ)]`` per step."""
    from transformers import BertConfig

    from cofi_lightning.core.masks import CoFiMasks
    from cofi_lightning.modeling import CoFiBertConfig

    from tiny_bert import tiny_bert_kwargs

    config = CoFiBertConfig.from_bert_config(
        BertConfig(**tiny_bert_kwargs(num_hidden_layers=4, intermediate_size=64)), num_labels=2
    )
    masks, m = CoFiMasks(config), LagrangeMultipliers()
    opt = torch.optim.AdamW(
        [
            {"params": masks.mask_parameters(), "lr": 0.1, "weight_decay": 0.0},
            multiplier_param_group(m, 0.1),
        ]
    )
    g = torch.Generator().manual_seed(0)
    importance = {
        u: torch.rand(gate.log_alpha.shape, generator=g) ** 3 for u, gate in masks.gates.items()
    }
    out, path = [], TargetPath((target,), (ramp,))
    for step in range(steps):
        t = path(step)
        z = masks.sample(masks.noise(g))
        task = sum((importance[u] * (1 - v)).sum() for u, v in z.items()) * 0.02
        s_hat = masks.expected_sparsity()
        if reset:
            m.reset_windup_(float(s_hat.detach()) - t, opt)
        (task + m(s_hat, t)).backward()
        opt.step()
        opt.zero_grad()
        masks.clamp_()
        out.append((t, float(s_hat.detach())))
    return out


def test_the_reset_damps_the_lag_and_the_overshoot() -> None:
    plain, damped = _simulate(reset=False), _simulate(reset=True)  # ramp: steps 0..120

    def lag(run):
        return max(t - s for t, s in run[:120])

    def overshoot(run):  # ŝ ahead of t, from mid-ramp on
        return max(s - t for t, s in run[60:])

    assert overshoot(damped) < 0.5 * overshoot(plain)
    assert lag(damped) < 0.75 * lag(plain)
    assert max(abs(s - t) for t, s in damped[-40:]) < 0.02
