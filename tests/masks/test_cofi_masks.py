"""CoFiMasks: units, parameters, expected / remaining encoder parameter counts."""

import pytest
import torch

from cofi_lightning.config import PruningConfig
from cofi_lightning.config.checks import ConfigError
from cofi_lightning.core.masks import UNIT_NAMES, CoFiMasks, Masks
from cofi_lightning.modeling import CoFiBertConfig

from tiny_bert import tiny_bert_kwargs


@pytest.fixture
def config():
    return CoFiBertConfig(**tiny_bert_kwargs(num_hidden_layers=3))


def randomize(masks: CoFiMasks, low=-2.0, high=3.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for g in masks.gates.values():
            g.log_alpha.copy_(torch.empty_like(g.log_alpha).uniform_(low, high, generator=gen))


def test_only_log_alphas_are_parameters(config):
    masks = CoFiMasks(config)
    names = sorted(n for n, _ in masks.named_parameters())
    assert names == sorted(f"gates.{u}.log_alpha" for u in UNIT_NAMES)
    assert len(masks.mask_parameters()) == 5


def test_shapes_and_units(config):
    z = CoFiMasks(config, units=("head", "mlp")).sample()
    assert isinstance(z, Masks)
    assert z.head.shape == (3, 4) and z.mlp.shape == (3,)
    assert z.hidden is None and z.intermediate is None and z.head_layer is None
    full = CoFiMasks(config).deterministic()
    assert full.hidden.shape == (32,) and full.intermediate.shape == (3, 48)
    assert full.head_layer.shape == (3,)


def test_unknown_unit_and_pruned_config_rejected(config):
    with pytest.raises(ConfigError, match="pruning.units has unknown units"):
        PruningConfig(units=["heads"])  # CoFiMasks trusts the checked config
    ragged = CoFiBertConfig(**tiny_bert_kwargs(num_hidden_layers=2), num_heads=[4, 2])
    with pytest.raises(ValueError, match="num_heads"):
        CoFiMasks(ragged)


def test_cofi_initialisation(config):
    torch.manual_seed(0)  # the means of a few N(mean, 0.01) draws: independent of test order
    masks = CoFiMasks(config)
    assert abs(masks.gates["head"].log_alpha.mean().item() - 10) < 0.01
    assert abs(masks.gates["intermediate"].log_alpha.mean().item()) < 0.01
    custom = CoFiMasks(config, init_log_alpha={"intermediate": 1.5})
    assert abs(custom.gates["intermediate"].log_alpha.mean().item() - 1.5) < 0.01


def test_full_params_counts_the_real_encoder(config):
    from cofi_lightning.modeling import CoFiBertForSequenceClassification

    model = CoFiBertForSequenceClassification(config)
    assert CoFiMasks(config).full_params == model.num_encoder_params()


def test_expected_sparsity_is_differentiable(config):
    masks = CoFiMasks(config)
    randomize(masks)
    s = masks.expected_sparsity()
    assert 0 < s.item() < 1
    s.backward()
    for g in masks.gates.values():
        assert g.log_alpha.grad.abs().sum() > 0


def test_all_open_gates_give_zero_sparsity(config):
    masks = CoFiMasks(config, init_log_alpha={"intermediate": 10.0})
    assert abs(masks.expected_sparsity().item()) < 1e-3


def test_expected_params_is_the_mean_of_sampled_counts(config):
    """E[params] from the formula equals the Monte-Carlo mean of exact counts of sampled masks.

    All samples are drawn at once (the gates broadcast a leading sample dimension of noise) and
    counted at once from their architectures: per layer the kept heads and FFN dims, a sublayer
    alive while any of its units and its layer gate are. The counts are tied to
    :meth:`CoFiMasks.remaining_params` on the first samples. The tolerance is 4 standard errors of
    the mean, which must come out below the 1% the test asked of 3,000 looped samples before.
    """
    masks = CoFiMasks(config)
    randomize(masks, low=-1.0, high=2.0)
    n = 20_000
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        z = {
            u: g.sample(torch.rand((n, *g.log_alpha.shape), generator=gen)) != 0
            for u, g in masks.gates.items()
        }  # [n, *gate shape] booleans: kept or not
    heads = (z["head"] & z["head_layer"]).sum(-1).double()  # [n, L]
    inter = (z["intermediate"] & z["mlp"]).sum(-1).double()  # [n, L]
    hidden = z["hidden"].sum(-1).double()  # [n, 1], broadcast over layers
    d = masks.head_size
    attention = 4 * d * hidden * heads + 3 * d * heads + 3 * hidden * (heads > 0)
    ffn = 2 * hidden * inter + inter + 3 * hidden * (inter > 0)
    counts = (attention + ffn).sum(-1)  # [n] exact encoder parameters of each pruned model
    fields = masks.deterministic()  # the Masks field shapes, e.g. head_layer [L] not [L, 1]
    for i in range(50):
        sample = Masks(**{u: t[i].float().reshape(getattr(fields, u).shape) for u, t in z.items()})
        assert masks.remaining_params(sample) == counts[i].item()

    expected = masks.expected_params().item()
    standard_error = counts.std().item() / n**0.5
    assert 4 * standard_error < 0.01 * expected  # stronger than the former 1% tolerance
    assert abs(counts.mean().item() - expected) < 4 * standard_error


def test_expected_params_without_hidden_matches_independent_sum(config):
    masks = CoFiMasks(config, units=("head", "head_layer", "intermediate", "mlp"))
    randomize(masks)
    p = {u: g.prob_nonzero().detach().double() for u, g in masks.gates.items()}
    h, d, total = 32, 8, 0.0
    for layer in range(3):
        hl, heads = p["head_layer"][layer, 0], p["head"][layer]
        mlp, inter = p["mlp"][layer, 0], p["intermediate"][layer]
        n, m = (hl * heads).sum(), (mlp * inter).sum()
        attn_alive = hl * (1 - torch.prod(1 - heads))
        ffn_alive = mlp * (1 - torch.prod(1 - inter))
        total += 4 * h * n * d + 3 * n * d + 3 * h * attn_alive
        total += 2 * h * m + m + 3 * h * ffn_alive
    assert abs(masks.expected_params().item() - total.item()) < 1e-2 * 1e-3 * total.item()
