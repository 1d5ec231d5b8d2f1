"""Physical pruning: fold mask values into the weights and remove every zeroed unit.

This file owns the surgery ``masked model -> compact dense model`` (Xia et al. 2022, Sec. 3.4 / the
original ``prune_model_with_z``). After it, the compact model computes exactly what the masked model
computes with those (deterministic) masks; tests check this to 1e-4 in fp32.

Folding, per unit (``hz`` = hidden mask, ``K`` = kept indices):
- embeddings: word / position / token-type columns ``[:, K_hidden] * hz``; LayerNorm ``* hz``.
- attention: Q/K/V rows of kept heads, columns ``K_hidden``; the output projection's columns are
  scaled by each head's mask, the whole projection (and bias) by ``head_layer``, its rows by ``hz``.
- FFN: input projection rows ``K_int``; output projection columns scaled by ``intermediate``, the
  whole projection by ``mlp``, rows by ``hz``; LayerNorms ``* hz``.
- pooler / QA head: input columns ``K_hidden`` (the pooler's output size is not a hidden dimension).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .configuration import CoFiBertConfig  # relative: shipped as remote code (see bert.py)

if TYPE_CHECKING:
    from .bert import CoFiBertPreTrainedModel

    try:
        from cofi_lightning.masks.types import Masks
    except ImportError:  # loaded as remote code
        pass


def _check_shape(name: str, t: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    if t is not None and tuple(t.shape) != shape:
        raise ValueError(f"masks.{name} has shape {tuple(t.shape)}, the model needs {shape}")


def _full_masks(masks: Masks, config: CoFiBertConfig) -> dict[str, torch.Tensor]:
    """Every mask as a float32 CPU tensor, all-ones where a unit is not masked."""
    L, H = config.num_hidden_layers, config.hidden_size
    uniform = len(set(config.num_heads)) == 1 and len(set(config.intermediate_sizes)) == 1
    if not uniform and (masks.head is not None or masks.intermediate is not None):
        raise ValueError(
            "head / intermediate masks need the same heads and FFN size in every layer; "
            f"this model has num_heads={config.num_heads}, "
            f"intermediate_sizes={config.intermediate_sizes}"
        )
    n, m = config.num_heads[0], config.intermediate_sizes[0]
    shapes = {
        "hidden": (H,),
        "head": (L, n),
        "head_layer": (L,),
        "intermediate": (L, m),
        "mlp": (L,),
    }
    out = {}
    for name, shape in shapes.items():
        t = getattr(masks, name)
        _check_shape(name, t, shape)
        out[name] = torch.ones(shape) if t is None else t.detach().float().cpu()
    return out


def _kept(t: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(t != 0).flatten()


@torch.no_grad()
def prune_model(model: CoFiBertPreTrainedModel, masks: Masks) -> CoFiBertPreTrainedModel:
    """Return a new compact model of ``model``'s class equivalent to ``model(..., masks=masks)``.

    Args:
        model: a CoFi BERT model (sequence classification or QA).
        masks: the masks to apply permanently (typically ``CoFiMasks.deterministic()``); soft values
            are folded into the weights, zeros are removed.

    Raises:
        ValueError: mask shapes do not fit the model, or every hidden dimension is pruned.
    """
    cfg = model.config
    z = _full_masks(masks, cfg)
    d = cfg.attention_head_size
    hz = z["hidden"]
    kh = _kept(hz)
    if len(kh) == 0:
        raise ValueError("the hidden mask removes every hidden dimension; nothing would remain")
    hzk = hz[kh]

    src = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    base = "bert." if any(k.startswith("bert.") for k in src) else ""
    sd: dict[str, torch.Tensor] = {}
    emb = f"{base}embeddings."
    for table in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        sd[f"{emb}{table}.weight"] = src[f"{emb}{table}.weight"][:, kh] * hzk
    for p in ("weight", "bias"):
        sd[f"{emb}LayerNorm.{p}"] = src[f"{emb}LayerNorm.{p}"][kh] * hzk

    num_heads, inter_sizes = [], []
    for i in range(cfg.num_hidden_layers):
        pre = f"{base}encoder.layer.{i}."
        # attention: kept heads are those whose own and whose layer's mask are non-zero
        head_scale = z["head"][i] * z["head_layer"][i]
        heads = _kept(head_scale) if cfg.num_heads[i] > 0 else head_scale.new_zeros(0).long()
        num_heads.append(len(heads))
        if len(heads):
            rows = (heads[:, None] * d + torch.arange(d)).flatten()  # [n_kept * d]
            a = f"{pre}attention."
            for proj in ("query", "key", "value"):
                sd[f"{a}self.{proj}.weight"] = src[f"{a}self.{proj}.weight"][rows][:, kh]
                sd[f"{a}self.{proj}.bias"] = src[f"{a}self.{proj}.bias"][rows]
            # each head's mask scales its d columns of the output projection
            col_scale = z["head"][i][heads].repeat_interleave(d)
            layer_scale = z["head_layer"][i] * hzk  # [H_kept]
            w = src[f"{a}output.dense.weight"][kh][:, rows] * col_scale
            sd[f"{a}output.dense.weight"] = w * layer_scale[:, None]
            sd[f"{a}output.dense.bias"] = src[f"{a}output.dense.bias"][kh] * layer_scale
            for p in ("weight", "bias"):
                sd[f"{a}output.LayerNorm.{p}"] = src[f"{a}output.LayerNorm.{p}"][kh] * hzk
        # FFN: kept dimensions are those whose own and whose layer's mask are non-zero
        int_scale = z["intermediate"][i] * z["mlp"][i]
        dims = _kept(int_scale) if cfg.intermediate_sizes[i] > 0 else int_scale.new_zeros(0).long()
        inter_sizes.append(len(dims))
        if len(dims):
            sd[f"{pre}intermediate.dense.weight"] = src[f"{pre}intermediate.dense.weight"][dims][
                :, kh
            ]
            sd[f"{pre}intermediate.dense.bias"] = src[f"{pre}intermediate.dense.bias"][dims]
            layer_scale = z["mlp"][i] * hzk
            w = src[f"{pre}output.dense.weight"][kh][:, dims] * z["intermediate"][i][dims]
            sd[f"{pre}output.dense.weight"] = w * layer_scale[:, None]
            sd[f"{pre}output.dense.bias"] = src[f"{pre}output.dense.bias"][kh] * layer_scale
            for p in ("weight", "bias"):
                sd[f"{pre}output.LayerNorm.{p}"] = src[f"{pre}output.LayerNorm.{p}"][kh] * hzk

    # task heads read hidden states on their input side only
    for key in (f"{base}pooler.dense.weight", "qa_outputs.weight"):
        if key in src:
            sd[key] = src[key][:, kh]
    for key in (
        f"{base}pooler.dense.bias",
        "qa_outputs.bias",
        "classifier.weight",
        "classifier.bias",
    ):
        if key in src:
            sd[key] = src[key]

    new_cfg = CoFiBertConfig.from_bert_config(
        cfg, hidden_size=len(kh), num_heads=num_heads, intermediate_sizes=inter_sizes
    )
    compact = type(model)(new_cfg)
    compact.load_state_dict(sd, strict=True)
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    return compact.to(device=device, dtype=dtype).train(model.training)
