"""Physical pruning: fold mask values into the weights and remove every zeroed unit.

This file owns the surgery ``masked model -> compact dense model`` (Xia et al. 2022, Sec. 3.4 / the
original ``prune_model_with_z``) as a walk over modules: the model is copied, and each prunable
module shrinks itself (``prune_hidden_`` / ``prune_``) given which units it keeps and with which
mask values. A new encoder family implements those methods on its own modules; nothing here edits
``state_dict`` keys. After the walk, the compact model computes exactly what the masked model
computes with those (deterministic) masks; tests check this to 1e-4 in fp32, and it holds by
construction for the projections: :func:`fold` computes a linear's masked weight and bias for the
masked forward and for the compact ``nn.Linear`` (:func:`linear_part`) alike.

Folding, per unit (``hz`` = hidden mask, ``K`` = kept indices):
- embeddings: every table's columns ``[:, K_hidden] * hz``; LayerNorm ``* hz``.
- attention: Q/K/V rows of kept heads, columns ``K_hidden``; the output projection's columns are
  scaled by each head's mask, the whole projection (and bias) by ``head_layer``, its rows by ``hz``.
- FFN: input projection rows ``K_int``; output projection columns scaled by ``intermediate``, the
  whole projection by ``mlp``, rows by ``hz``; LayerNorms ``* hz``.
- task heads: input columns ``K_hidden`` (a pooler's output size is not a hidden dimension).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from .structure import Structure, sublayer_alive, sublayer_masks

if TYPE_CHECKING:
    try:
        from cofi_lightning.core.masks.types import Masks
    except ImportError:  # loaded as remote code
        pass


class Kept(NamedTuple):
    """The units a module keeps: ``index [k]`` (long) and their mask values ``scale [k]``."""

    index: torch.Tensor
    scale: torch.Tensor


class LayerKeep(NamedTuple):
    """What one encoder layer keeps.

    Attributes:
        heads: Kept heads (scale: each head's mask value); empty index: attention removed.
        head_layer: The attention sublayer's gate value (scalar tensor).
        dims: Kept FFN dims (scale: the intermediate mask); empty index: FFN removed.
        mlp: The FFN sublayer's gate value (scalar tensor).
    """

    heads: Kept
    head_layer: torch.Tensor
    dims: Kept
    mlp: torch.Tensor


def head_rows(heads: torch.Tensor, d: int) -> torch.Tensor:
    """``[k * d]``: the rows of heads ``heads [k]`` in a projection of heads of size ``d``."""
    return (heads[:, None] * d + torch.arange(d, device=heads.device)).flatten()


def fold(
    linear: nn.Linear,
    rows: torch.Tensor | None = None,
    cols: torch.Tensor | None = None,
    col_scale: torch.Tensor | None = None,
    row_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``linear``'s weight and bias restricted to ``rows`` / ``cols``, with masks folded in.

    The one place where "masked == pruned" is decided: the masked forward calls it on every step
    (the masks stay differentiable), physical pruning builds the compact ``nn.Linear`` from it.
    Folding a mask into the weight (``[out, in]`` work) instead of multiplying the activations
    (``[B, S, in]`` and ``[B, S, out]`` work) computes the same function, cheaper.

    Args:
        linear: The full projection.
        rows: ``[r]`` long: the output units kept (None: all).
        cols: ``[c]`` long: the input units kept (None: all).
        col_scale: ``[c]``: each kept input unit's mask (heads repeated over their dims).
        row_scale: ``[r]`` or scalar: each output's mask (the sublayer gate times the hidden mask).

    Returns:
        ``(W[rows][:, cols] * col_scale * row_scale[:, None], b[rows] * row_scale)``; the bias is
        None when ``linear`` has none.
    """
    weight, bias = linear.weight, linear.bias
    if rows is not None:
        weight = weight.index_select(0, rows)
        bias = None if bias is None else bias.index_select(0, rows)
    if cols is not None:
        weight = weight.index_select(1, cols)
    if col_scale is not None:
        weight = weight * col_scale
    if row_scale is not None:
        weight = weight * row_scale.reshape(-1, 1)  # [r, 1] or [1, 1]
        bias = None if bias is None else bias * row_scale
    return weight, bias


def linear_part(linear: nn.Linear, *args, **kwargs) -> nn.Linear:
    """A new ``nn.Linear`` holding ``fold(linear, *args, **kwargs)``: the compact projection."""
    weight, bias = fold(linear, *args, **kwargs)
    out = nn.Linear(
        *weight.shape[::-1], bias=bias is not None, device=weight.device, dtype=weight.dtype
    )
    out.weight.data.copy_(weight)
    if bias is not None:
        out.bias.data.copy_(bias)
    return out


def layer_norm_part(ln: nn.LayerNorm, hidden: Kept) -> nn.LayerNorm:
    """A LayerNorm over the kept hidden dims, its affine parameters scaled by the hidden mask
    (what the masked forward's ``LayerNorm(x) * hz`` computes on those dims)."""
    affine = ln.weight is not None
    out = nn.LayerNorm(
        len(hidden.index),
        eps=ln.eps,
        elementwise_affine=affine,
        bias=ln.bias is not None,
        device=hidden.index.device,
    )
    if affine:
        out.weight.data.copy_(ln.weight.data[hidden.index] * hidden.scale)
    if ln.bias is not None:
        out.bias.data.copy_(ln.bias.data[hidden.index] * hidden.scale)
    return out


def embedding_part(emb: nn.Embedding, hidden: Kept) -> nn.Embedding:
    """An embedding table with the kept hidden columns, scaled by the hidden mask."""
    w = emb.weight.data[:, hidden.index] * hidden.scale
    out = nn.Embedding(w.shape[0], w.shape[1], padding_idx=emb.padding_idx, dtype=w.dtype)
    out.weight.data.copy_(w)
    return out


def _checked(masks: Masks, config) -> Masks:
    """``masks`` as float32 CPU tensors, after checking that their shapes fit ``config``."""
    uniform = len(set(config.num_heads)) == 1 and len(set(config.intermediate_sizes)) == 1
    if not uniform and (masks.head is not None or masks.intermediate is not None):
        raise ValueError(
            "head / intermediate masks need the same heads and FFN size in every layer; "
            f"this model has num_heads={config.num_heads}, "
            f"intermediate_sizes={config.intermediate_sizes}"
        )
    shapes = Structure.from_config(config).mask_shapes()
    for name, t in masks.items():
        if tuple(t.shape) != shapes[name]:
            need = shapes[name]
            raise ValueError(f"masks.{name} has shape {tuple(t.shape)}, the model needs {need}")
    return masks.map(lambda t: t.detach().float().cpu())


def _kept(t: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(t != 0).flatten()


def _sublayer_keep(
    units: torch.Tensor | None, layer: torch.Tensor | None, i: int, full: int
) -> tuple[Kept, torch.Tensor]:
    """Layer ``i``'s kept units of one sublayer (none once it is not alive) and its gate value;
    a None mask keeps all ``full`` units."""
    gate = torch.ones(()) if layer is None else layer[i]
    scale = torch.ones(full) if units is None else units[i]
    alive = sublayer_alive(gate != 0, scale != 0)
    index = _kept(scale) if alive else torch.zeros(0, dtype=torch.long)
    return Kept(index, scale[index]), gate


def _layer_keeps(z: Masks, config) -> list[LayerKeep]:
    """Per layer: the heads / FFN dims of the sublayers that stay alive."""
    (head_layer, head), (mlp, intermediate) = sublayer_masks(z)
    out = []
    for i in range(config.num_hidden_layers):
        heads, attention_gate = _sublayer_keep(head, head_layer, i, config.num_heads[i])
        dims, ffn_gate = _sublayer_keep(intermediate, mlp, i, config.intermediate_sizes[i])
        out.append(LayerKeep(heads, attention_gate, dims, ffn_gate))
    return out


@torch.no_grad()
def prune_model(model, masks: Masks):
    """Return a new compact model of ``model``'s class equivalent to ``model(..., masks=masks)``.

    The walk: ``base.embeddings.prune_hidden_``, ``base.prune_encoder_`` (each layer's
    ``prune_``), ``model.prune_head_``; then the config gets the kept sizes, and the compact model's
    tensors are checked against a fresh model of that config (so it saves and loads as itself).

    Args:
        model: a CoFi model of any supported family (sequence classification or QA).
        masks: the masks to apply permanently (typically ``CoFiMasks.deterministic()``); soft values
            are folded into the weights, zeros are removed.

    Raises:
        ValueError: mask shapes do not fit the model, or every hidden dimension is pruned.
    """
    cfg = model.config
    z = _checked(masks, cfg)
    structure = Structure.from_masks(z, Structure.from_config(cfg))
    if structure.hidden_size == 0:
        raise ValueError("the hidden mask removes every hidden dimension; nothing would remain")
    hz = torch.ones(cfg.hidden_size) if z.hidden is None else z.hidden
    hidden = Kept(_kept(hz), hz[_kept(hz)])
    keeps = _layer_keeps(z, cfg)
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    compact = copy.deepcopy(model).to(device="cpu", dtype=torch.float32)  # fold in fp32
    base = compact.base_model
    base.embeddings.prune_hidden_(hidden)
    base.prune_encoder_(keeps, hidden)
    compact.prune_head_(hidden)
    new_cfg = type(cfg).from_pretrained_config(cfg, **structure.as_dict())
    copied = compact.config  # the copy's config object, shared by its PreTrainedModel parts
    for module in compact.modules():
        if getattr(module, "config", None) is copied:
            module.config = new_cfg
    _check_against(compact, new_cfg)
    return compact.to(device=device, dtype=dtype).train(model.training)


def _check_against(compact, config) -> None:
    """The compact model has exactly the tensors a fresh model of ``config`` has."""
    with torch.device("meta"):
        fresh = type(compact)(config)
    want = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in compact.state_dict().items()}
    if want != have:
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        raise AssertionError(f"pruned model does not match its config at {diff[:8]}")
