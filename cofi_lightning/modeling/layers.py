"""Mask-aware BERT building blocks with per-layer sizes (Xia et al. 2022, Sec. 3.1), under
``transformers``' BERT module names so vanilla checkpoints load key for key.

Where each mask acts (B = batch, S = sequence, H = hidden, n = heads, d = head size, m = FFN dims):
- ``hidden`` [H]: the embeddings before and after their LayerNorm, every sublayer output before
  the residual sum and after its LayerNorm; LayerNorm statistics use the kept dimensions only.
- ``head`` [n] / ``head_layer``: each head's context / the attention output projection.
- ``intermediate`` [m] / ``mlp``: the FFN activation / the FFN output projection.
These are folded into the output projection's weight (``pruning.fold``, shared with physical
pruning). A sublayer that is not alive is removed: the residual passes through with no bias and
no LayerNorm, as in the pruned model. Eagerly, units whose mask is exactly 0 are not computed
(docs/method.md); under ``torch.compile`` every unit is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from .pruning import Kept, LayerKeep, embedding_part, fold, head_rows, layer_norm_part, linear_part
from .structure import sublayer_alive, sublayer_masks

if TYPE_CHECKING:
    try:
        from cofi_lightning.core.masks.types import Masks
    except ImportError:  # loaded as remote code
        pass


class SublayerMasks(NamedTuple):
    """The masks of one sublayer: its units (heads or FFN dims) and its gate. A unit whose mask is
    exactly 0 gets no gradient (the gate's clamp has none there), so skipping it is exact."""

    units: torch.Tensor | None = None  # [k]: the computed units' masks (None: not masked)
    layer: torch.Tensor | None = None  # scalar: z_MHA or z_FFN
    index: torch.Tensor | None = None  # [k] long: the units computed; None: every unit
    alive: torch.Tensor | None = None  # bool scalar when not known on the host (compiled)
    removed: bool = False  # known on the host: the sublayer is not alive, nothing is computed


class LayerMasks(NamedTuple):
    """The mask tensors one encoder layer needs (None = not masked)."""

    hidden: torch.Tensor | None = None  # [H]
    hidden_keep: torch.Tensor | None = None  # [H], 1.0 where hidden != 0
    attention: SublayerMasks = SublayerMasks()
    ffn: SublayerMasks = SublayerMasks()


#: Compute only the units whose mask is non-zero (an exact speed-up; tests switch it off to
#: compare with computing everything).
SKIP_CLOSED_UNITS = True


def split_masks(masks: Masks | None, num_layers: int) -> tuple[list[LayerMasks], LayerMasks]:
    """Per-layer :class:`LayerMasks` and the embeddings' masks from one ``Masks`` value (eagerly,
    one host sync reads which sublayers are alive and which units are open)."""
    if masks is None:
        return [LayerMasks()] * num_layers, LayerMasks()
    hidden = masks.hidden
    shared = LayerMasks(hidden, None if hidden is None else (hidden != 0).to(hidden.dtype))
    gates = sublayer_masks(masks)  # ((layer [L], units [L, k]) per sublayer type)
    alive = [sublayer_alive(_open(layer), _open(units)) for layer, units in gates]  # [L] bool
    flags: list[torch.Tensor | None] = [None] * len(gates)
    if SKIP_CLOSED_UNITS and not torch.compiler.is_compiling():
        flags = _host_flags(gates, alive)
    attention, ffn = (
        _sublayer_masks(layer, units, a, f, num_layers)
        for (layer, units), a, f in zip(gates, alive, flags, strict=True)
    )
    layers = [shared._replace(attention=a, ffn=f) for a, f in zip(attention, ffn, strict=True)]
    return layers, shared


def _host_flags(gates, alive: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """Per sublayer type, ``[L, 1 + k]`` bool on the host: alive, then each unit open (None when
    the type is not masked). All types in one copy to the host: the forward's one sync."""
    parts = [
        None
        if a is None
        else a[:, None]
        if units is None
        else torch.cat([a[:, None], units != 0], 1)
        for (_, units), a in zip(gates, alive, strict=True)
    ]
    given = [p for p in parts if p is not None]
    if not given:
        return parts
    host = iter(torch.cat(given, dim=1).cpu().split([p.shape[1] for p in given], dim=1))
    return [None if p is None else next(host) for p in parts]


def _sublayer_masks(
    layer: torch.Tensor | None,
    units: torch.Tensor | None,
    alive: torch.Tensor | None,
    flags: torch.Tensor | None,
    num_layers: int,
) -> list[SublayerMasks]:
    """Per layer: one sublayer type's masks from its gates ``layer [L]`` and ``units [L, k]``,
    ``alive [L]`` and, eagerly, its host ``flags`` (:func:`_host_flags`; None: compute every
    unit)."""
    if alive is None:
        return [SublayerMasks()] * num_layers

    def row(t: torch.Tensor | None, i: int) -> torch.Tensor | None:
        return None if t is None else t[i]

    if flags is None:
        return [
            SublayerMasks(row(units, i), row(layer, i), alive=alive[i]) for i in range(num_layers)
        ]
    out = []
    for i in range(num_layers):
        z, index = row(units, i), None
        if not flags[i, 0]:
            out.append(SublayerMasks(removed=True))
            continue
        if z is not None and not flags[i, 1:].all():
            index = torch.nonzero(flags[i, 1:]).flatten().to(z.device)
            z = z.index_select(0, index)
        out.append(SublayerMasks(z, row(layer, i), index))
    return out


def _open(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t != 0


def _product(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """``a * b``, where None is a factor of 1."""
    return b if a is None else a if b is None else a * b


def fold_output(linear: nn.Linear, masks: LayerMasks, sub: SublayerMasks, unit_size: int = 1):
    """:func:`~.pruning.fold` of a sublayer's output projection: the columns of the computed units
    (each ``unit_size`` wide: a head's dims, or one FFN dim) scaled by their masks, the rows by
    ``z_layer · z_hidden``."""
    cols = None if sub.index is None else head_rows(sub.index, unit_size)
    col_z = None if sub.units is None else sub.units.repeat_interleave(unit_size)
    return fold(linear, None, cols, col_z, _product(sub.layer, masks.hidden))


def keep_zero_grads(x: torch.Tensor, *modules: nn.Module) -> torch.Tensor:
    """``x`` tied to ``modules``' parameters with weight 0, so they get zero gradients as when a
    removed sublayer is computed and discarded (AdamW skips a None gradient, not a zero one)."""
    if not torch.is_grad_enabled():
        return x
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    if not params:
        return x
    return x + torch.stack([p.sum() for p in params]).sum().to(x.dtype) * 0


def masked_layer_norm(x: torch.Tensor, ln: nn.LayerNorm, keep: torch.Tensor | None) -> torch.Tensor:
    """LayerNorm of ``x [..., H]`` with mean and variance over the dims ``keep [H]`` (0/1 float;
    None: a plain LayerNorm). Kept dims equal the pruned model's; dropped dims hold arbitrary
    values (callers multiply by the hidden mask)."""
    if keep is None:
        return ln(x)
    # Autocast runs layer_norm in fp32; so does this (its mat-vecs would otherwise run in bf16).
    autocast = torch.is_autocast_enabled(x.device.type)
    out_dtype = torch.float32 if autocast else x.dtype
    with torch.autocast(x.device.type, enabled=False):
        x, keep = x.to(out_dtype), keep.to(out_dtype)
        n = keep.sum()
        # Weighted sums as mat-vec products: one pass over x, no [..., H] temporaries for x * keep.
        mean = (x @ keep).unsqueeze(-1) / n  # [..., 1]
        centered = x - mean
        var = (centered.square() @ keep).unsqueeze(-1) / n  # [..., 1]
        out = centered * torch.rsqrt(var + ln.eps)
        if ln.weight is not None:
            out = out * ln.weight.to(out_dtype)
        return out if ln.bias is None else out + ln.bias.to(out_dtype)


class CoFiBertEmbeddings(nn.Module):
    """Word + token-type + position embeddings, LayerNorm, dropout (HF ``BertEmbeddings``); a
    family without token types or absolute positions sets that table to None."""

    def __init__(self, config):
        super().__init__()
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.register_buffer(
            "position_ids",
            torch.arange(config.max_position_embeddings).unsqueeze(0),
            persistent=False,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        masks: LayerMasks,
    ) -> torch.Tensor:
        """``[B, S]`` ids -> ``[B, S, H]`` embeddings."""
        # In place: embedding lookups do not keep their outputs for backward, and the fresh
        # [B, S, H] tensors per sum cost page faults that show in small pruned models.
        x = self.word_embeddings(input_ids)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x += self.token_type_embeddings(token_type_ids)
        if self.position_embeddings is not None:
            if position_ids is None:
                position_ids = self.position_ids[:, : input_ids.shape[1]]
            x += self.position_embeddings(position_ids)
        if masks.hidden is not None:
            x = x * masks.hidden
        x = self.dropout(masked_layer_norm(x, self.LayerNorm, masks.hidden_keep))
        if masks.hidden is not None:
            x = x * masks.hidden
        return x

    def prune_hidden_(self, hidden: Kept) -> None:
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            if getattr(self, name) is not None:
                setattr(self, name, embedding_part(getattr(self, name), hidden))
        self.LayerNorm = layer_norm_part(self.LayerNorm, hidden)


class SublayerOutput(nn.Module):
    """Output projection, dropout, residual sum and LayerNorm of one sublayer (HF
    ``BertSelfOutput`` / ``BertOutput`` layout)."""

    def __init__(self, in_features: int, config):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        x: torch.Tensor,
        residual: torch.Tensor,
        masks: LayerMasks,
        sub: SublayerMasks,
        unit_size: int = 1,
    ) -> torch.Tensor:
        """``x [B, S, k * unit_size]`` (the computed units of ``sub``), ``residual [B, S, H]`` ->
        ``[B, S, H]``; the residual itself when the sublayer is not alive."""
        x = self.dropout(F.linear(x, *fold_output(self.dense, masks, sub, unit_size)))
        out = masked_layer_norm(x + residual, self.LayerNorm, masks.hidden_keep)
        if masks.hidden is not None:
            out = out * masks.hidden
        return out if sub.alive is None else torch.where(sub.alive, out, residual)

    def prune_(self, cols: torch.Tensor, col_z: torch.Tensor, layer_z, hidden: Kept) -> None:
        """Keep the input units ``cols`` (masks ``col_z``) and the hidden dims; ``layer_z`` scales
        the outputs."""
        row_z = layer_z * hidden.scale
        self.dense = linear_part(self.dense, hidden.index, cols, col_z, row_z)
        self.LayerNorm = layer_norm_part(self.LayerNorm, hidden)


class QKVProjections(nn.Module):
    """Query, key and value projections (HF ``BertSelfAttention`` parameter layout), under the
    family's names."""

    def __init__(self, hidden_size: int, inner_size: int, names=("query", "key", "value")):
        super().__init__()
        for name in names:
            setattr(self, name, nn.Linear(hidden_size, inner_size))


class CoFiBertAttention(nn.Module):
    """Multi-head self-attention with ``num_heads`` heads of ``config.attention_head_size``."""

    #: The attribute names of the Q, K, V projections inside ``self.self`` (the checkpoint's).
    qkv_names: tuple[str, str, str] = ("query", "key", "value")

    def __init__(self, config, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_size = config.attention_head_size
        self.dropout_p = config.attention_probs_dropout_prob
        self.self = QKVProjections(config.hidden_size, num_heads * self.head_size, self.qkv_names)
        self.output = SublayerOutput(num_heads * self.head_size, config)

    def forward(self, x: torch.Tensor, attn_mask, masks: LayerMasks) -> torch.Tensor:
        """``x [B, S, H]``, ``attn_mask [B, 1, 1, S]`` bool (True = attend) -> ``[B, S, H]``."""
        B, S, _ = x.shape
        sub, d = masks.attention, self.head_size
        kept = self.num_heads if sub.index is None else len(sub.index)
        rows = None if sub.index is None else head_rows(sub.index, d)  # the kept heads' Q/K/V
        q, k, v = (
            F.linear(x, *fold(getattr(self.self, name), rows)).view(B, S, kept, d).transpose(1, 2)
            for name in self.qkv_names
        )  # [B, kept, S, d]
        ctx = self.attend(q, k, v, attn_mask, rows)
        ctx = ctx.transpose(1, 2).reshape(B, S, kept * d)
        return self.output(ctx, x, masks, sub, unit_size=d)

    def attend(self, q, k, v, attn_mask, rows) -> torch.Tensor:
        """Attention of the kept heads ``q, k, v [B, kept, S, d]`` -> ``[B, kept, S, d]``
        (``rows``: their Q/K/V rows, None for all)."""
        p = self.dropout_p if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)

    def prune_(self, keep: LayerKeep, hidden: Kept) -> None:
        d = self.head_size
        rows = head_rows(keep.heads.index, d)  # [kept * d]
        for name in self.qkv_names:
            setattr(self.self, name, linear_part(getattr(self.self, name), rows, hidden.index))
        self.output.prune_(rows, keep.heads.scale.repeat_interleave(d), keep.head_layer, hidden)
        self.num_heads = len(keep.heads.index)


class Intermediate(nn.Module):
    """FFN input projection and activation (HF ``BertIntermediate`` layout)."""

    def __init__(self, config, size: int):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, size)
        act = config.hidden_act
        self.intermediate_act_fn = ACT2FN[act] if isinstance(act, str) else act

    def forward(self, x: torch.Tensor, sub: SublayerMasks) -> torch.Tensor:
        """``[B, S, H]`` -> ``[B, S, k]`` (the computed FFN dims)."""
        return self.intermediate_act_fn(F.linear(x, *fold(self.dense, sub.index)))

    def prune_(self, dims: torch.Tensor, hidden: Kept) -> None:
        self.dense = linear_part(self.dense, dims, hidden.index)


class CoFiBertLayer(nn.Module):
    """One encoder layer; ``num_heads == 0`` or ``intermediate_size == 0`` removes that sublayer."""

    attention_class: type[CoFiBertAttention] = CoFiBertAttention

    def __init__(self, config, num_heads: int, intermediate_size: int):
        super().__init__()
        self.attention = self.attention_class(config, num_heads) if num_heads > 0 else None
        if intermediate_size > 0:
            self.intermediate = Intermediate(config, intermediate_size)
            self.output = SublayerOutput(intermediate_size, config)
        else:
            self.intermediate = self.output = None

    def forward(self, x: torch.Tensor, attn_mask, masks: LayerMasks) -> torch.Tensor:
        """``[B, S, H]`` -> ``[B, S, H]``; a removed sublayer passes its input through."""
        if self.attention is not None:
            if masks.attention.removed:
                x = keep_zero_grads(x, self.attention)
            else:
                x = self.attention(x, attn_mask, masks)
        if self.intermediate is not None:
            if masks.ffn.removed:
                x = keep_zero_grads(x, self.intermediate, self.output)
            else:
                x = self.output(self.intermediate(x, masks.ffn), x, masks, masks.ffn)
        return x

    @torch.no_grad()
    def unit_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``([n], [m])``: the L2 norm of each head's Q, K, V rows and output columns, and of each
        FFN dim's input row and output column (the uniform baseline keeps the largest)."""
        attn, n, d = self.attention, self.attention.num_heads, self.attention.head_size
        rows = [getattr(attn.self, name).weight for name in attn.qkv_names]
        heads = sum(w.reshape(n, d, -1).pow(2).sum(dim=(1, 2)) for w in rows)
        heads = heads + attn.output.dense.weight.reshape(-1, n, d).pow(2).sum(dim=(0, 2))
        w_in, w_out = self.intermediate.dense.weight, self.output.dense.weight
        return heads.sqrt(), (w_in.pow(2).sum(dim=1) + w_out.pow(2).sum(dim=0)).sqrt()

    def prune_(self, keep: LayerKeep, hidden: Kept) -> None:
        """Shrink to the kept heads, FFN dims and hidden dims; a sublayer with none is removed."""
        if self.attention is not None:
            if len(keep.heads.index):
                self.attention.prune_(keep, hidden)
            else:
                self.attention = None
        if self.intermediate is not None:
            dims = keep.dims
            if len(dims.index):
                self.intermediate.prune_(dims.index, hidden)
                self.output.prune_(dims.index, dims.scale, keep.mlp, hidden)
            else:
                self.intermediate = self.output = None


class CoFiBertEncoder(nn.Module):
    """The layers, sized from ``config.num_heads`` / ``config.intermediate_sizes``."""

    layer_class: type[CoFiBertLayer] = CoFiBertLayer

    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(
            self.layer_class(config, n, m)
            for n, m in zip(config.num_heads, config.intermediate_sizes, strict=True)
        )

    def forward(self, x, attn_mask, layer_masks: list[LayerMasks]):
        """``[B, S, H]`` -> the last layer's output and every layer's, ``[B, S, H]`` each."""
        states = []
        for layer, masks in zip(self.layer, layer_masks, strict=True):
            x = layer(x, attn_mask, masks)
            states.append(x)
        return x, states

    def prune_(self, keeps: list[LayerKeep], hidden: Kept) -> None:
        for layer, keep in zip(self.layer, keeps, strict=True):
            layer.prune_(keep, hidden)
