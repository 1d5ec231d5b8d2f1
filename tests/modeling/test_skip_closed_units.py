"""Computing only the units whose mask is non-zero is exact: the same outputs and gradients as
computing every unit, with fewer FLOPs. With dropout on, the random numbers differ (the skipped
units draw none), so there the skip is checked for what still holds."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.modeling import CoFiBertConfig, CoFiBertForSequenceClassification
from cofi_lightning.modeling import layers as layers_module

from tiny_bert import tiny_bert_kwargs


def _model_and_masks(dropout: float = 0.0):
    torch.manual_seed(0)
    cfg = CoFiBertConfig(
        **tiny_bert_kwargs(
            num_hidden_layers=3,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
        )
    )
    model = CoFiBertForSequenceClassification(cfg).train()
    masks = CoFiMasks(cfg)
    with torch.no_grad():
        gates = masks.gates
        gates["head"].log_alpha[0, 1:3] = -10.0  # layer 0: two heads closed
        gates["intermediate"].log_alpha[0, ::2] = -10.0  # layer 0: half the FFN dims closed
        gates["intermediate"].log_alpha[0, 1::2] = 10.0
        gates["head_layer"].log_alpha[1] = -10.0  # layer 1: attention removed
        gates["intermediate"].log_alpha[2] = -10.0  # layer 2: FFN removed (every dim closed)
        gates["intermediate"].log_alpha[1] = 10.0
    return model, masks


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 99, (4, 11), generator=g)
    attention_mask = torch.ones_like(ids)
    attention_mask[2, 7:] = 0
    return {
        "input_ids": ids,
        "attention_mask": attention_mask,
        "labels": torch.tensor([0, 1, 1, 0]),
    }


def _step(model, masks, skip: bool, monkeypatch, autocast: bool = False):
    monkeypatch.setattr(layers_module, "SKIP_CLOSED_UNITS", skip)
    model.zero_grad(set_to_none=True)
    masks.zero_grad(set_to_none=True)
    z = masks.sample(masks.noise(torch.Generator().manual_seed(5)))
    torch.manual_seed(123)  # dropout
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(**_batch(), masks=z, output_hidden_states=True)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    grads.update({f"mask.{n}": p.grad.clone() for n, p in masks.named_parameters()})
    return out, grads, z


def test_skipping_closed_units_is_exact_in_training(monkeypatch):
    model, masks = _model_and_masks()
    full, full_grads, z = _step(model, masks, False, monkeypatch)
    assert (z.head[0] == 0).sum() == 2 and (z.intermediate[2] == 0).all()  # the setup holds
    assert z.head_layer[1] == 0 and (z.intermediate[0] == 0).sum() == 24
    skip, skip_grads, _ = _step(model, masks, True, monkeypatch)
    torch.testing.assert_close(skip.logits, full.logits, rtol=1e-5, atol=1e-6)
    for a, b in zip(skip.hidden_states, full.hidden_states, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert skip_grads.keys() == full_grads.keys()  # a skipped unit's parameters get a gradient
    for name, grad in full_grads.items():
        torch.testing.assert_close(skip_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_with_dropout_skipped_units_get_zero_gradients(monkeypatch):
    model, masks = _model_and_masks(dropout=0.1)
    skip, grads, _ = _step(model, masks, True, monkeypatch)
    assert torch.isfinite(skip.logits).all()
    assert all(torch.isfinite(g).all() for g in grads.values())
    layers = "bert.encoder.layer"
    for name, grad in ((n, g) for n, g in grads.items() if not n.startswith("mask.")):
        removed = name.startswith(
            (f"{layers}.1.attention.", f"{layers}.2.intermediate.", f"{layers}.2.output.")
        )
        assert (grad == 0).all() == removed, name  # zero (not None): AdamW still decays them
    d = model.config.attention_head_size
    q = grads[f"{layers}.0.attention.self.query.weight"].reshape(-1, d, model.config.hidden_size)
    assert (q[1:3] == 0).all() and (q[0] != 0).any()  # closed heads' rows: zero gradient
    model.eval()
    with torch.no_grad():
        z = masks.deterministic()
        monkeypatch.setattr(layers_module, "SKIP_CLOSED_UNITS", True)
        skipped = model(**_batch(), masks=z).logits
        monkeypatch.setattr(layers_module, "SKIP_CLOSED_UNITS", False)
        computed = model(**_batch(), masks=z).logits
    torch.testing.assert_close(skipped, computed, rtol=1e-5, atol=1e-6)


def test_skipping_under_bf16_autocast_matches_the_full_computation(monkeypatch):
    model, masks = _model_and_masks()
    full, _, _ = _step(model, masks, False, monkeypatch, autocast=True)
    skip, _, _ = _step(model, masks, True, monkeypatch, autocast=True)
    torch.testing.assert_close(skip.logits.float(), full.logits.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("skip", [False, True])
def test_skipping_saves_flops(monkeypatch, skip):
    model, masks = _model_and_masks()
    monkeypatch.setattr(layers_module, "SKIP_CLOSED_UNITS", skip)
    z = masks.sample(masks.noise(torch.Generator().manual_seed(5)))
    with FlopCounterMode(display=False) as counter:
        model(**_batch(), masks=z)
    flops = counter.get_total_flops()
    monkeypatch.setattr(layers_module, "SKIP_CLOSED_UNITS", False)
    with FlopCounterMode(display=False) as counter:
        model(**_batch(), masks=z)
    assert (flops < 0.7 * counter.get_total_flops()) if skip else flops == counter.get_total_flops()
