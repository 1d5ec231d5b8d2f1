"""Post-training pruning's parts on a tiny random BERT: the search meets the constraint exactly as
the export counts it, the rearrangement lowers each layer's Fisher cost at the same counts, the
rescaling lowers each layer's error on held-out batches, and the whole is deterministic."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig

from cofi_lightning.core.constraint import LatencyConstraint
from cofi_lightning.core.masks import CoFiMasks, Masks
from cofi_lightning.core.posttrain import posttrain_masks
from cofi_lightning.core.posttrain.importance import mask_gradients
from cofi_lightning.core.posttrain.rearrange import pruned_cost, rearrange
from cofi_lightning.core.posttrain.rescale import rescale
from cofi_lightning.core.posttrain.search import search
from cofi_lightning.latency import structure_latency
from cofi_lightning.modeling import CoFiBertConfig, CoFiBertForSequenceClassification

from tiny_bert import tiny_bert_kwargs


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    kwargs = tiny_bert_kwargs(**{"num_hidden_layers": 3, "intermediate_size": 64, **overrides})
    return CoFiBertForSequenceClassification(
        CoFiBertConfig.from_bert_config(BertConfig(**kwargs), num_labels=2)
    ).eval()


def _batches(n=4, seed=0, size=16, seq=12):
    """Random sequences (some padded) labelled by the parity of their second token."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(5, 99, (size, seq), generator=g)
        mask = torch.ones_like(ids)
        mask[: size // 4, seq // 2 :] = 0
        out.append({"input_ids": ids * mask, "attention_mask": mask, "labels": ids[:, 1] % 2})
    return out


def _params_fits(gates, target):
    return lambda z: gates.sparsity(z) >= target


@pytest.mark.parametrize("target", [0.3, 0.6, 0.9])
def test_the_params_search_meets_the_target_as_the_export_counts_it(target):
    model = _model()
    gates = CoFiMasks(model.config, units=("head", "intermediate"))
    fisher = {u: g.pow(2).sum(0) for u, g in mask_gradients(model, _batches()).items()}
    z = search(fisher, _params_fits(gates, target))
    real = 1 - model.prune(z).num_encoder_params() / model.num_encoder_params()
    assert real == pytest.approx(gates.sparsity(z)) and real >= target
    assert real < target + 0.02  # as many units as the budget allows


def test_a_layer_without_heads_loses_its_attention_and_is_counted_so():
    model = _model()
    gates = CoFiMasks(model.config, units=("head", "intermediate"))
    fisher = {"head": torch.full((3, 4), 100.0), "intermediate": torch.ones(3, 64)}
    fisher["head"][1] = 0.0  # layer 1's heads matter least: the search drops them all first
    z = search(fisher, _params_fits(gates, 0.2))
    assert (z.head[1] == 0).all() and (z.head[[0, 2]] == 1).all()
    compact = model.prune(z)
    assert compact.config.num_heads[1] == 0
    full = model.num_encoder_params()
    assert gates.sparsity(z) == pytest.approx(1 - compact.num_encoder_params() / full)
    assert gates.remaining_params(z) == compact.num_encoder_params()


def test_the_latency_search_meets_the_tables_target():
    from test_preflight import _tiny_table

    model = _model(num_hidden_layers=2, intermediate_size=48)
    table = _tiny_table()
    constraint = LatencyConstraint(table, 2.0)
    gates = CoFiMasks(model.config, units=("head", "intermediate"))
    fisher = {u: g.pow(2).sum(0) for u, g in mask_gradients(model, _batches()).items()}
    z = search(fisher, lambda m: constraint.real(gates, m) >= constraint.target)
    ms = structure_latency(table, gates.structure(z))
    assert ms <= table.full_ms() / 2
    assert ms > table.full_ms() / 2 - 1.0  # within a head's cost (1 ms) of the budget


def test_rearranging_keeps_each_layers_counts_and_lowers_its_fisher_cost():
    g = torch.Generator().manual_seed(0)
    grads = torch.randn(8, 3, 16, generator=g, dtype=torch.float64)
    grads[:, :, :4] += 2.0  # correlated units: independent ranking misjudges their sum
    mask = torch.ones(3, 16)
    order = grads.pow(2).sum(0).argsort(dim=1)
    mask.scatter_(1, order[:, :6], 0.0)  # the diagonal's choice: the 6 smallest
    out = rearrange(mask, grads)
    assert torch.equal(out.sum(1), mask.sum(1))
    before, after = pruned_cost(mask, grads), pruned_cost(out, grads)
    assert (after <= before + 1e-12).all() and (after < before).any()


def _layer_errors(model, masks, batches):
    """Per layer: the squared error of the masked model's output against the unmasked one's."""
    errors = torch.zeros(model.config.num_hidden_layers, dtype=torch.float64)
    with torch.no_grad():
        for b in batches:
            full = model(**b, output_hidden_states=True).hidden_states
            pruned = model(**b, masks=masks, output_hidden_states=True).hidden_states
            real, layers = b["attention_mask"].bool(), len(errors)
            for i, (f, p) in enumerate(zip(full[-layers:], pruned[-layers:], strict=True)):
                errors[i] += (f - p)[real].double().pow(2).sum()
    return errors


def test_rescaling_lowers_every_layers_error_on_held_out_batches():
    model = _model()
    gates = CoFiMasks(model.config, units=("head", "intermediate"))
    calibration, held_out = _batches(6, seed=0), _batches(2, seed=1)
    fisher = {u: g.pow(2).sum(0) for u, g in mask_gradients(model, calibration).items()}
    z = search(fisher, _params_fits(gates, 0.5))
    tuned = rescale(model, z, calibration)
    assert torch.equal(tuned.head != 0, z.head != 0)  # the structure is unchanged
    assert not torch.equal(tuned.intermediate, z.intermediate)
    before, after = _layer_errors(model, z, held_out), _layer_errors(model, tuned, held_out)
    assert (after < before).all(), (before, after)


def test_the_same_inputs_give_bitwise_identical_masks():
    model, batches = _model(num_hidden_layers=2), _batches(2, size=8)
    gates = CoFiMasks(model.config, units=("head", "intermediate"))
    fits = [_params_fits(gates, 0.4), _params_fits(gates, 0.7)]
    first, second = posttrain_masks(model, batches, fits), posttrain_masks(model, batches, fits)
    for a, b in zip(first, second, strict=True):
        assert isinstance(a, Masks)
        assert torch.equal(a.head, b.head) and torch.equal(a.intermediate, b.intermediate)
    assert gates.sparsity(first[1]) >= 0.7 > gates.sparsity(first[0]) >= 0.4
