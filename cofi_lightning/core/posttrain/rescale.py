"""Mask tuning by least squares, layer by layer (Kwon et al. 2022, Sec. 3.4, Eq. 11-12).

A sublayer (attention or FFN) adds to its residual stream ``r`` the output projection ``W [H, n·u]``
(bias ``b``) of its units' activations ``x_i [T, u]`` (a head: ``u`` = head size; an FFN dim:
``u = 1``), each scaled by its mask value ``m_i``::

    y = r + b + Σ_i m_i · W_i x_i          (W_i = W[:, unit i's columns])

For the kept units the scales ``m`` are chosen so that the pruned model's ``y`` matches the
fine-tuned model's on the calibration tokens: ``min_m ‖A m − B‖²`` with ``A[:, i] = W_i x_i``
(flattened over tokens and hidden dims) and ``B = y_teacher − r − b``. Its normal equations are
small: ``AᵀA = blocksum((XᵀX) ∘ (W_Kᵀ W_K))`` and ``Aᵀ B = blocksum(Σ_t X ∘ (B W_K))`` with
``X [T, k·u]`` the kept units' activations, summed in float64 over the batches and solved with
``torch.linalg.lstsq``. Sublayers go in order, each with inputs from the model already tuned
below it (so a scale also corrects the error the layers beneath leave). A solution that is not
finite or leaves ``|m| ≤ 10`` (the paper's guard against ill-posed systems) is not applied.
The activations and residuals are read with hooks, so every family's forward is used as is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from tqdm.auto import tqdm

from cofi_lightning.core.masks import Masks

#: Largest |scale| applied (beyond it the system is taken as ill-posed).
MAX_SCALE = 10.0


class _LastLinearInput(TorchFunctionMode):
    """Remembers the input of the last ``F.linear`` run while active: inside a sublayer, the
    output projection's (the activations of the units it computed)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.linear:
            self.input = args[0]
        return func(*args, **(kwargs or {}))


def _sublayers(layer: nn.Module) -> list[tuple[nn.Module, nn.Linear, int, Callable]]:
    """Per sublayer (attention, FFN): the module ending in its output projection, that
    projection, the unit size, and how its residual is read from the captured values."""
    if hasattr(layer, "mlp"):  # pre-norm (ModernBERT): x + attn(norm(x)), then x + mlp(norm(x))
        return [
            (layer.attn, layer.attn.Wo, layer.attn.head_size, lambda c: c["layer_in"]),
            (layer.mlp, layer.mlp.Wo, 1, lambda c: c["layer_out"] - c["out"]),
        ]
    attention = layer.attention  # post-norm (BERT): LayerNorm(x + dense(units))
    return [
        (attention, attention.output.dense, attention.head_size, lambda c: c["args"][0]),
        (layer.output, layer.output.dense, 1, lambda c: c["args"][1]),
    ]


@torch.no_grad()
def _capture(model, batch, masks, layer, module) -> tuple[torch.Tensor, dict]:
    """Run ``model`` on ``batch``; return ``module``'s projection input and what it saw."""
    seen, mode = {}, _LastLinearInput()

    def enter(m, args):
        seen["args"] = args
        mode.__enter__()

    def leave(m, args, out):
        mode.__exit__(None, None, None)
        seen["out"] = out

    hooks = [
        layer.register_forward_pre_hook(lambda m, a: seen.__setitem__("layer_in", a[0])),
        layer.register_forward_hook(lambda m, a, out: seen.__setitem__("layer_out", out)),
        module.register_forward_pre_hook(enter),
        module.register_forward_hook(leave),
    ]
    try:
        model(**batch, masks=masks)
    finally:
        for h in hooks:
            h.remove()
    return mode.input, seen


def _tokens(t: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """``[B, S, d]`` -> ``[T, d]`` float64 of the real tokens."""
    return t.reshape(-1, t.shape[-1])[real].double().cpu()


def _solve(model, masks, batches, layer, sublayer, kept: torch.Tensor) -> torch.Tensor | None:
    """Least-squares scales ``[k]`` of one sublayer's kept units (None: not applied)."""
    module, proj, u, residual = sublayer
    cols = (kept[:, None] * u + torch.arange(u)).flatten()  # the kept units' columns
    w = proj.weight.detach().double().cpu()
    bias = 0.0 if proj.bias is None else proj.bias.detach().double().cpu()
    wk = w[:, cols]  # [H, k·u]
    xtx = torch.zeros(len(cols), len(cols), dtype=torch.float64)
    xtb = torch.zeros(len(cols), dtype=torch.float64)
    for batch in batches:
        real = batch["attention_mask"].flatten().bool().cpu()  # calibrate on real tokens only
        x_t, seen_t = _capture(model, batch, None, layer, module)
        x_s, seen_s = _capture(model, batch, masks, layer, module)
        x_t, x_s = _tokens(x_t, real), _tokens(x_s, real)
        if x_s.shape[1] != len(cols):  # every unit was computed (zeros masked, not skipped)
            x_s = x_s[:, cols]
        target = _tokens(residual(seen_t), real) + x_t @ w.T + bias
        b = target - _tokens(residual(seen_s), real) - bias  # [T, H]
        xtx += x_s.T @ x_s
        xtb += (x_s * (b @ wk)).sum(0)
    k = len(kept)
    ata = (xtx * (wk.T @ wk)).view(k, u, k, u).sum((1, 3))
    atb = xtb.view(k, u).sum(1)
    scale = torch.linalg.lstsq(ata, atb[:, None]).solution[:, 0]
    return scale if scale.isfinite().all() and scale.abs().max() <= MAX_SCALE else None


def rescale(model: nn.Module, masks: Masks, batches: Sequence[dict]) -> Masks:
    """``masks`` with the kept heads' and FFN dims' values tuned, sublayer by sublayer.

    Args:
        model: The fine-tuned, unpruned CoFi model (both the target, unmasked, and the pruned
            model, masked).
        masks: 0/1 ``head [L, N]`` and ``intermediate [L, I]`` masks (others None).
        batches: Calibration batches (``attention_mask`` marks the real tokens).
    """
    model.eval()
    values = {unit: t.clone().float() for unit, t in masks.items()}
    layers = model.base_model.encoder_layers()
    for i, layer in enumerate(tqdm(layers, desc="[prune] rescale", leave=False)):
        for unit, sublayer in zip(("head", "intermediate"), _sublayers(layer), strict=True):
            kept = torch.nonzero(values[unit][i]).flatten()
            if len(kept) == 0:
                continue  # the sublayer is removed: nothing to scale
            current = replace(masks, **values)
            scale = _solve(model, current, batches, layer, sublayer, kept)
            if scale is not None:
                values[unit][i, kept] = scale.float()
    return replace(masks, **values)
