"""Hard-concrete gate: sampling, P(z > 0), CoFi's deterministic evaluation rule, clamping."""

import math

import pytest
import torch

from cofi_lightning.core.masks import GateConstants, HardConcreteGate


def gate(shape, init=0.0):
    torch.manual_seed(0)
    return HardConcreteGate(shape, init, GateConstants())


def test_sample_range_shape_and_gradient():
    g = gate((3, 5), init=0.5)
    z = g.sample()
    assert z.shape == (3, 5)
    assert z.min() >= 0 and z.max() <= 1
    z.sum().backward()
    assert g.log_alpha.grad is not None and g.log_alpha.grad.abs().sum() > 0


def test_sample_uses_given_noise():
    g = gate((2, 4))
    u = torch.rand(2, 4)
    torch.testing.assert_close(g.sample(u), g.sample(u))
    # u close to 1 with log_alpha 0 gives a gate stretched past 1, clipped to exactly 1
    assert torch.all(g.sample(torch.full((2, 4), 0.999)) == 1)


def test_prob_nonzero_matches_monte_carlo():
    g = gate((1, 7))
    with torch.no_grad():
        g.log_alpha.copy_(torch.linspace(-3, 3, 7))
    samples = torch.stack([g.sample() for _ in range(20000)])
    empirical = (samples > 0).float().mean(0)
    torch.testing.assert_close(empirical, g.prob_nonzero().detach(), atol=0.015, rtol=0)


def test_deterministic_keeps_rounded_expected_count_with_soft_values():
    g = gate((4, 50), init=0.0)  # CoFi's intermediate init: P(z>0) = 0.832 per unit
    z = g.deterministic()
    p = g.prob_nonzero().detach()
    expected_kept = torch.round(p.sum(-1))
    torch.testing.assert_close((z != 0).sum(-1).float(), expected_kept)
    soft = torch.sigmoid(g.log_alpha.detach() / (2 / 3) * 0.8)
    kept = z != 0
    torch.testing.assert_close(z[kept], soft[kept])
    # the zeroed units are the smallest soft scores of their row
    for row in range(4):
        assert soft[row][~kept[row]].max() <= soft[row][kept[row]].min()
    assert abs(kept.float().mean().item() - 0.832) < 0.02


@pytest.mark.parametrize(("log_alpha", "kept"), [(-1.55, True), (-1.65, False), (4.6, True)])
def test_layer_gate_dropped_iff_prob_below_half(log_alpha, kept):
    g = gate((3, 1))
    with torch.no_grad():
        g.log_alpha.fill_(log_alpha)
    assert bool((g.deterministic() != 0).all()) is kept


def test_clamp_to_cofi_range():
    g = gate((2, 2))
    with torch.no_grad():
        g.log_alpha.copy_(torch.tensor([[10.0, -10.0], [1.0, 0.0]]))
    g.clamp_()
    c = math.log(100.0)
    torch.testing.assert_close(g.log_alpha.detach(), torch.tensor([[c, -c], [1.0, 0.0]]))
