"""Physical pruning (Xia et al. 2022, Sec. 3.4): fold mask values into the weights and remove every
zeroed unit, as a walk in which each prunable module shrinks itself (``prune_hidden_`` /
``prune_``); nothing edits ``state_dict`` keys. :func:`fold` computes a projection's masked weight
and bias for the masked forward and the compact ``nn.Linear`` alike, so masked == pruned.

Folding (``hz`` = hidden mask, ``K`` = kept indices): embedding columns ``[:, K_hidden] * hz``;
Q/K/V rows of kept heads; output projections' columns scaled by the unit masks, the whole
projection by the sublayer gate, rows by ``hz``; LayerNorms ``* hz``; task heads' input columns
``K_hidden`` (a pooler's output size is not a hidden dimension).
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
    """What one encoder layer keeps: heads and FFN dims (an empty index removes the sublayer) and
    the sublayer gates' values."""

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
    """``(W[rows][:, cols] * col_scale * row_scale[:, None], b[rows] * row_scale)`` of ``linear``.

    The one place where "masked == pruned" is decided: the masked forward calls it every step,
    physical pruning builds the compact ``nn.Linear`` from it. Folding masks into the weight
    (``[out, in]`` work) is cheaper than multiplying the activations.

    Args:
        rows: ``[r]`` long: the output units kept (None: all).
        cols: ``[c]`` long: the input units kept (None: all).
        col_scale: ``[c]``: each kept input unit's mask (heads repeated over their dims).
        row_scale: ``[r]`` or scalar: the sublayer gate times the hidden mask.
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
    """A LayerNorm over the kept hidden dims, its affine parameters scaled by the hidden mask."""
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
    """A new compact model of ``model``'s class equivalent to ``model(..., masks=masks)``: soft
    values folded into the weights, zeros removed, the config given the kept sizes and checked
    against a fresh model of it (so it saves and loads as itself).

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
