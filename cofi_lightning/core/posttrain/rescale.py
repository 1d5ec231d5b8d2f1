"""Mask tuning by least squares, layer by layer (Kwon et al. 2022, Sec. 3.4, Eq. 11-12).

A sublayer (attention or FFN) adds to its residual stream ``r`` the output projection ``W [H, n·u]``
(bias ``b``) of its units' activations ``x_i [T, u]`` (a head: ``u`` = head size; an FFN dim:
``u = 1``), each scaled by its mask value ``m_i``::

    y = r + b + Σ_i m_i · W_i x_i          (W_i = W[:, unit i's columns])

For the kept units the scales ``m`` are chosen so that the pruned model's ``y`` matches the
fine-tuned model's on the calibration tokens: ``min_m ‖A m − B‖²`` with ``A[:, i] = W_i x_i``
(flattened over tokens and hidden dims) and ``B = y_teacher − r − b`` (the bias cancels). Its normal
equations are small: ``AᵀA = blocksum((XᵀX) ∘ (W_Kᵀ W_K))`` and ``Aᵀ B = blocksum(Σ_t X ∘ (B W_K))``
with ``X [T, k·u]`` the kept units' activations, per batch in float32, summed in float64 and solved
with ``torch.linalg.lstsq``. Sublayers go in order, each with inputs from the model already tuned
below it (so a scale also corrects the error the layers beneath leave). As in the paper's code, a
classifier that reads the first token is matched on that token only in the last layer's FFN (the
other tokens are not read after it). A solution that is not finite or leaves ``|m| ≤ 10`` (the
paper's guard against ill-posed systems) is not applied.

Each layer's inputs (the fine-tuned model's and the pruned one's) are kept between layers, so a
layer runs once for the targets and a few times for the pruned model, never the layers below it.
The activations and residuals are read with hooks, so every family's layer is used as is.
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
from cofi_lightning.modeling.layers import split_masks

#: Largest |scale| applied (beyond it the system is taken as ill-posed).
MAX_SCALE = 10.0


class _LastLinearInput(TorchFunctionMode):
    """Remembers the input of the last ``F.linear`` run while active: inside a sublayer, the
    output projection's (the activations of the units it computed)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.linear:
            self.input = args[0]
        return func(*args, **(kwargs or {}))


class _Stop(Exception):
    """Ends a layer's run once the sublayer read is done (the rest is not needed)."""


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
def _layer_inputs(model: nn.Module, layers: list[nn.Module], batch: dict) -> list[tuple]:
    """Every layer's positional inputs ``(x, attention inputs, masks)`` on ``batch``."""
    inputs = []
    hooks = [layer.register_forward_pre_hook(lambda m, a: inputs.append(a)) for layer in layers]
    try:
        model(**batch)
    finally:
        for h in hooks:
            h.remove()
    return inputs


def _stop(module, args, out):
    """Forward hook ending the run (see ``_Stop``)."""
    raise _Stop


@torch.no_grad()
def _run(layer, args, modules, stop: bool = False) -> tuple[torch.Tensor | None, list[dict]]:
    """Run ``layer`` on ``args``; its output (None when stopped after the last of ``modules``) and,
    per module, what it saw: ``x`` (its projection's input), ``args``, ``out``, the layer's ends."""
    seen = [{"layer_in": args[0]} for _ in modules]
    hooks = []
    for module, c in zip(modules, seen, strict=True):
        mode = _LastLinearInput()

        def enter(m, a, c=c, mode=mode):
            c["args"] = a
            mode.__enter__()

        def leave(m, a, out, c=c, mode=mode):
            mode.__exit__(None, None, None)
            c["x"], c["out"] = mode.input, out

        hooks += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    if stop:
        hooks.append(modules[-1].register_forward_hook(_stop))
    out = None
    try:
        out = layer(*args)
    except _Stop:
        pass
    finally:
        for h in hooks:
            h.remove()
    for c in seen:
        c["layer_out"] = out
    return out, seen


def _rows(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``[B, S, d]`` -> ``[T, d]`` float32 of the ``rows`` (flat ``[B·S]`` bool) kept."""
    return t.reshape(-1, t.shape[-1])[rows].float()


def _token_rows(batch: dict, first_only: bool) -> torch.Tensor:
    """Flat ``[B·S]`` bool: the real tokens, or only each sequence's first."""
    real = batch["attention_mask"].bool()
    if first_only:
        real = torch.zeros_like(real)
        real[:, 0] = True
    return real.flatten()


def _solve(layer, sublayer, kept, inputs, targets, rows, stop) -> torch.Tensor | None:
    """Least-squares scales ``[k]`` of one sublayer's kept units (None: not applied).

    Args:
        layer: The encoder layer holding ``sublayer``.
        sublayer: ``_sublayers``' entry.
        kept: The kept units' indices.
        inputs: Per batch, the pruned model's positional layer inputs.
        targets: Per batch, the fine-tuned model's ``r + W x`` on the ``rows`` (float32).
        rows: Per batch, the flat token rows matched.
        stop: End each run after the sublayer (nothing after it is read).
    """
    module, proj, u, residual = sublayer
    cols = (kept[:, None] * u + torch.arange(u)).flatten()  # the kept units' columns
    wk = proj.weight.detach().float()[:, cols]  # [H, k·u]
    xtx = torch.zeros(len(cols), len(cols), dtype=torch.float64)
    xtb = torch.zeros(len(cols), dtype=torch.float64)
    for args, target, r in zip(inputs, targets, rows, strict=True):
        _, (seen,) = _run(layer, args, [module], stop=stop)
        x = _rows(seen["x"], r)
        if x.shape[1] != len(cols):  # every unit was computed (zeros masked, not skipped)
            x = x[:, cols]
        b = target - _rows(residual(seen), r)  # [T, H]
        xtx += (x.T @ x).double()
        xtb += (x * (b @ wk)).sum(0).double()
    k = len(kept)
    ata = (xtx * (wk.T @ wk).double()).view(k, u, k, u).sum((1, 3))
    atb = xtb.view(k, u).sum(1)
    scale = torch.linalg.lstsq(ata, atb[:, None]).solution[:, 0]
    return scale if scale.isfinite().all() and scale.abs().max() <= MAX_SCALE else None


@torch.no_grad()
def _targets(layer, sublayers, inputs, rows) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Per batch, ``layer``'s output and, per sublayer, its ``r + W x`` on its ``rows``."""
    outs, targets = [], []
    for args, batch_rows in zip(inputs, rows, strict=True):
        out, seen = _run(layer, args, [s[0] for s in sublayers])
        outs.append(out)
        targets.append(
            [
                _rows(residual(c), r) + _rows(c["x"], r) @ proj.weight.detach().float().T
                for (_, proj, _, residual), c, r in zip(sublayers, seen, batch_rows, strict=True)
            ]
        )
    return outs, targets


def by_length(batches: Sequence[dict]) -> list[dict]:
    """The same sequences re-batched by length (the same batch size), each batch cut to its
    longest: only the ``[B, S]`` inputs are kept, right-padded with zeros (masked out).

    The normal equations sum over the real tokens, so the batching does not change them, while
    far fewer padded positions run through the layers (SST-2's calibration: 33% of the slots of
    its batches in training order are real tokens)."""
    size = len(batches[0]["attention_mask"])
    sequences = []
    for batch in batches:
        mask = batch["attention_mask"]
        keys = [k for k, v in batch.items() if torch.is_tensor(v) and v.shape == mask.shape]
        ends = mask.shape[1] - (mask != 0).flip(1).int().argmax(1)  # after the last real token
        sequences += [{k: batch[k][j, :end] for k in keys} for j, end in enumerate(ends.tolist())]
    sequences.sort(key=lambda s: len(s["attention_mask"]))  # stable: deterministic
    out = []
    for start in range(0, len(sequences), size):
        chunk = sequences[start : start + size]
        n = len(chunk[-1]["attention_mask"])
        out.append(
            {k: torch.stack([F.pad(s[k], (0, n - len(s[k]))) for s in chunk]) for k in chunk[0]}
        )
    return out


def rescale(model: nn.Module, masks: Masks, batches: Sequence[dict]) -> Masks:
    """``masks`` with the kept heads' and FFN dims' values tuned, sublayer by sublayer.

    Args:
        model: The fine-tuned, unpruned CoFi model (both the target, unmasked, and the pruned
            model, masked).
        masks: 0/1 ``head [L, N]`` and ``intermediate [L, I]`` masks (others None).
        batches: Calibration batches (``attention_mask`` marks the real tokens).
    """
    model.eval()
    batches = by_length(batches)
    values = {unit: t.clone().float() for unit, t in masks.items()}
    layers = model.base_model.encoder_layers()
    pools = getattr(model.config, "classifier_pooling", "cls") == "cls"
    first_only = hasattr(model, "classifier") and pools  # the head reads the first token only
    captured = [_layer_inputs(model, layers, b) for b in batches]
    context = [[args[1] for args in c] for c in captured]  # per batch and layer (attention inputs)
    teacher = student = [c[0][0] for c in captured]  # the first layer's input: the same for both
    del captured
    plain = split_masks(None, len(layers))[0][0]
    for i, layer in enumerate(tqdm(layers, desc="[prune] rescale", leave=False)):
        last = i == len(layers) - 1
        rows = [[_token_rows(b, first_only and last and s == 1) for s in (0, 1)] for b in batches]
        sublayers = _sublayers(layer)
        inputs = [(x, c[i], plain) for x, c in zip(teacher, context, strict=True)]
        teacher, targets = _targets(layer, sublayers, inputs, rows)
        for s, (unit, sublayer) in enumerate(zip(("head", "intermediate"), sublayers, strict=True)):
            kept = torch.nonzero(values[unit][i]).flatten()
            if len(kept) == 0:
                continue  # the sublayer is removed: nothing to scale
            layer_masks = split_masks(replace(masks, **values), len(layers))[0][i]
            inputs = [(x, c[i], layer_masks) for x, c in zip(student, context, strict=True)]
            sub_targets, sub_rows = [t[s] for t in targets], [r[s] for r in rows]
            scale = _solve(layer, sublayer, kept, inputs, sub_targets, sub_rows, stop=s == 0)
            if scale is not None:
                values[unit][i, kept] = scale.float()
        if not last:
            layer_masks = split_masks(replace(masks, **values), len(layers))[0][i]
            student = [
                _run(layer, (x, c[i], layer_masks), [])[0]
                for x, c in zip(student, context, strict=True)
            ]
    return replace(masks, **values)
