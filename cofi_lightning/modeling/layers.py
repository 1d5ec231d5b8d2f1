"""Mask-aware BERT building blocks with per-layer sizes: embeddings, attention, FFN, layer, encoder.

This file owns the forward maths of one encoder and where each CoFi mask is applied (Xia et al.
2022, Sec. 3.1). The modules never sample or learn masks; they take mask tensors as inputs.
Submodule names follow ``transformers``' BERT exactly so vanilla checkpoints load key for key.

Where each mask acts (B = batch, S = sequence, H = hidden, n = heads, d = head size, m = FFN dims):
- ``hidden`` [H]: multiplies the embeddings before and after their LayerNorm, and every sublayer
  output before the residual sum and after its LayerNorm; LayerNorm statistics use the kept
  dimensions only.
- ``head`` [n]: multiplies each head's context vector, before the output projection.
- ``head_layer`` (scalar): multiplies the attention output projection.
- ``intermediate`` [m]: multiplies the FFN activation.
- ``mlp`` (scalar): multiplies the FFN output projection.
The head, intermediate, layer and (sublayer-output) hidden masks are folded into the output
projection's weight columns / rows rather than multiplied into activations: mathematically the same,
and the weight is much smaller than a batch of activations.
A sublayer whose layer mask is zero, or all of whose heads / FFN dimensions are zero, is *removed*:
the residual passes through with no bias and no LayerNorm, which is exactly what the physically
pruned model computes (the original code kept the output bias and LayerNorm when only the heads were
all zero, so its masked and pruned models disagreed). The choice is made with ``torch.where``.
In eager mode the units whose mask is exactly 0 are not computed at all (closed heads' Q/K/V rows,
closed FFN dims, removed sublayers; one host sync per forward reads which): the same numbers, the
same gradients and the same dropout random stream, for a step whose cost falls with the sparsity
(``tests/modeling/test_skip_closed_units.py``). Under ``torch.compile`` every unit is computed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from .pruning import Kept, LayerKeep, embedding_part, layer_norm_part, linear_part


class LayerMasks(NamedTuple):
    """The mask tensors one encoder layer needs (None = not masked).

    ``*_index`` / ``*_removed`` say which units are non-zero (read once per forward, see
    :func:`kept_units`): computing only those is exact, because a unit whose mask is exactly 0
    contributes nothing and receives no gradient (its hard-concrete gate is clamped at 0, where
    the clamp's gradient is 0 too).
    """

    hidden: torch.Tensor | None = None  # [H]
    hidden_keep: torch.Tensor | None = None  # [H], 1.0 where hidden != 0
    head: torch.Tensor | None = None  # [n]
    head_layer: torch.Tensor | None = None  # scalar
    intermediate: torch.Tensor | None = None  # [m]
    mlp: torch.Tensor | None = None  # scalar
    head_index: torch.Tensor | None = None  # [n_kept] long; None: every head is computed
    intermediate_index: torch.Tensor | None = None  # [m_kept] long; None: every dim
    attention_removed: bool = False  # the layer gate or every head is 0
    ffn_removed: bool = False  # the layer gate or every FFN dim is 0


#: Compute only the units whose mask is non-zero (an exact speed-up; tests switch it off to
#: compare with computing everything).
SKIP_CLOSED_UNITS = True


def kept_units(
    head_layer: torch.Tensor | None,
    head: torch.Tensor | None,
    mlp: torch.Tensor | None,
    intermediate: torch.Tensor | None,
) -> list[dict]:
    """Per layer: the ``head_index`` / ``intermediate_index`` / ``*_removed`` fields of
    :class:`LayerMasks`, from masks ``[L]``, ``[L, n]``, ``[L]``, ``[L, m]`` (None: unmasked).

    One host sync for all layers (a single copy of the non-zero pattern to the CPU); none under
    ``torch.compile``, which computes every unit. An index is None when every unit of that
    layer is kept, so unmasked layers take the usual path.
    """
    given = [t for t in (head_layer, head, mlp, intermediate) if t is not None]
    if not given or not SKIP_CLOSED_UNITS or torch.compiler.is_compiling():
        return []  # compiled: one static graph of the full computation, no sync
    num_layers, device = given[0].shape[0], given[0].device
    flat = [(t != 0).reshape(num_layers, -1) for t in given]
    columns = torch.cat(flat, dim=1).cpu().split([f.shape[1] for f in flat], dim=1)  # one sync
    names = [
        n
        for n, t in zip(
            ("layer_a", "heads", "layer_f", "dims"),
            (head_layer, head, mlp, intermediate),
            strict=True,
        )
        if t is not None
    ]
    nonzero = dict(zip(names, columns, strict=True))  # name -> [L, width] bool
    out = []
    for i in range(num_layers):
        row = {name: flags[i] for name, flags in nonzero.items()}
        layer_a, heads = row.get("layer_a"), row.get("heads")
        layer_f, dims = row.get("layer_f"), row.get("dims")
        fields: dict = {
            "attention_removed": bool(
                (layer_a is not None and not layer_a.all())
                or (heads is not None and not heads.any())
            ),
            "ffn_removed": bool(
                (layer_f is not None and not layer_f.all()) or (dims is not None and not dims.any())
            ),
        }
        if heads is not None and not heads.all():
            fields["head_index"] = torch.nonzero(heads).flatten().to(device)
        if dims is not None and not dims.all():
            fields["intermediate_index"] = torch.nonzero(dims).flatten().to(device)
        out.append(fields)
    return out


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a linear layer's output has for input ``x`` (autocast's, when it is on)."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def _replay_dropout(p: float, shape: tuple[int, ...], x: torch.Tensor) -> None:
    """Draw the dropout noise a skipped computation would have drawn, and discard it.

    A removed sublayer still applies dropout in the full computation; drawing the same noise
    (dropout's ``bernoulli_`` on a tensor of that shape and dtype) keeps the random stream, and
    so every later dropout mask, identical to computing everything (on the CPU; CUDA's fused
    dropout draws its numbers differently, so there the stream is only statistically the same).
    """
    if p > 0:
        torch.empty(shape, dtype=_compute_dtype(x), device=x.device).bernoulli_(1 - p)


def _keep_zero_grads(x: torch.Tensor, *modules: nn.Module) -> torch.Tensor:
    """``x`` (unchanged) tied to ``modules``' parameters with weight 0, so they get zero
    gradients, as they do when a removed sublayer is computed and then discarded.

    None instead of 0 would change the optimizer step: AdamW skips a parameter without a
    gradient, but moves one with a zero gradient by its momentum (and decays it)."""
    if not torch.is_grad_enabled():
        return x
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    if not params:
        return x
    return x + torch.stack([p.sum() for p in params]).sum().to(x.dtype) * 0


def _attention_with_dropout(q, k, v, attn_mask, p: float, keep: torch.Tensor, n: int):
    """Attention of the kept heads ``q, k, v [B, k, S, d]`` with the dropout noise that
    ``scaled_dot_product_attention`` would draw for all ``n`` heads, restricted to the kept ones:
    the same numbers as the full computation's kept heads, and the same random stream after it.
    (The CPU math path of SDPA: scale, masked softmax, then ``bernoulli_`` noise / (1 - p).)"""
    scale = q.shape[-1] ** -0.5
    scores = (q * scale**0.5) @ (k * scale**0.5).transpose(-2, -1)  # [B, k, S, S]
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    B, _, S, _ = probs.shape
    noise = torch.empty((B, n, S, S), dtype=probs.dtype, device=probs.device).bernoulli_(1 - p)
    return (probs * noise.index_select(1, keep).div_(1 - p)) @ v


def masked_layer_norm(x: torch.Tensor, ln: nn.LayerNorm, keep: torch.Tensor | None) -> torch.Tensor:
    """LayerNorm whose mean and variance are taken over the kept hidden dimensions only.

    Args:
        x: ``[..., H]`` input.
        ln: the LayerNorm holding weight, bias and eps.
        keep: ``[H]`` 0/1 float (1 = kept) or None for a plain LayerNorm.

    Returns:
        ``[..., H]``; on kept dims it equals ``F.layer_norm`` of the kept sub-vector, so a model
        whose dropped dims were physically removed computes the same numbers. Dropped dims hold
        arbitrary values: callers multiply by the hidden mask afterwards.
    """
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
    """Word + position + token-type embeddings, LayerNorm, dropout (HF ``BertEmbeddings``)."""

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
        seq_len = input_ids.shape[1]
        if position_ids is None:
            position_ids = self.position_ids[:, :seq_len]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        # In place: embedding lookups do not keep their outputs for backward, and the fresh
        # [B, S, H] tensors per sum cost page faults that show in small pruned models.
        x = self.word_embeddings(input_ids)
        x += self.token_type_embeddings(token_type_ids)
        x += self.position_embeddings(position_ids)
        if masks.hidden is not None:
            x = x * masks.hidden
        x = self.dropout(masked_layer_norm(x, self.LayerNorm, masks.hidden_keep))
        if masks.hidden is not None:
            x = x * masks.hidden
        return x

    def prune_hidden_(self, hidden: Kept) -> None:
        """Keep the hidden dims ``hidden`` (columns of every table, scaled; the LayerNorm)."""
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
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
        layer_z: torch.Tensor | None,
        masks: LayerMasks,
        alive: torch.Tensor | None,
        unit_z: torch.Tensor | None = None,
        reuse_residual: bool = False,
        in_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x [B, S, in]``, ``residual [B, S, H]`` -> ``[B, S, H]``; ``alive``: bool scalar.

        ``in_index [in]``: ``x`` holds only these input units of the projection (the kept
        heads' dims / FFN dims); ``unit_z`` is then given for those units only.

        ``unit_z [in]`` (head mask repeated over each head's dims, or the FFN mask) scales the
        projection's inputs and ``layer_z · hidden`` its outputs. Both are folded into the weight
        (``[H, in]`` work) instead of multiplying activations (``[B, S, in]`` and ``[B, S, H]``
        work, forward and backward): the same function, a cheaper pruning step.

        ``reuse_residual``: the caller no longer needs ``residual``. Without masks, gradients or
        dropout, the projection then accumulates into the residual's memory (one GEMM with
        ``beta = 1``, then the bias), instead of broadcasting the bias into a fresh ``[B, S, H]``
        tensor and adding the residual in a second pass. The same sum in another order; on CPU
        the fresh tensor's first touch (page faults) costs about as much as a small pruned GEMM.
        It is taken only where it computes what the plain path computes: no autocast and one
        dtype for input, residual and weight (under autocast the plain path's GEMM runs in bf16 /
        fp16 while the residual sum promotes to the residual's dtype, as in ``transformers``).
        """
        if (
            reuse_residual
            and layer_z is None
            and unit_z is None
            and alive is None
            and masks.hidden is None
            and not (self.training or torch.is_grad_enabled())
            and residual.is_contiguous()
            and not torch.is_autocast_enabled(residual.device.type)
            and x.dtype == residual.dtype == self.dense.weight.dtype
        ):
            flat = residual.view(-1, residual.shape[-1])  # [B*S, H], shares memory
            flat.addmm_(x.reshape(-1, x.shape[-1]), self.dense.weight.t())
            flat += self.dense.bias
            return self.LayerNorm(residual)
        weight, bias = self.dense.weight, self.dense.bias
        if in_index is not None:
            weight = weight.index_select(1, in_index)  # [H, in_kept]
        out_z = layer_z
        if masks.hidden is not None:
            out_z = masks.hidden if out_z is None else out_z * masks.hidden
        if unit_z is not None:
            weight = weight * unit_z  # [H, in] * [in]
        if out_z is not None:
            weight = weight * out_z.reshape(-1, 1)  # rows: [H, 1] or [1, 1]
            bias = bias * out_z
        x = self.dropout(F.linear(x, weight, bias))
        if x.dtype == residual.dtype:
            x += residual  # in place: neither linear nor dropout keeps its output for backward
        else:  # autocast: a bf16 / fp16 projection plus an fp32 residual is an fp32 sum
            x = x + residual
        out = masked_layer_norm(x, self.LayerNorm, masks.hidden_keep)
        if masks.hidden is not None:
            out = out * masks.hidden
        if alive is not None:
            out = torch.where(alive, out, residual)
        return out

    def prune_(self, inputs: torch.Tensor, input_z: torch.Tensor, layer_z, hidden: Kept) -> None:
        """Keep the projection's input units ``inputs`` (their masks ``input_z`` folded into its
        columns) and the hidden dims; ``layer_z`` (the sublayer's gate) scales its outputs."""
        out_z = layer_z * hidden.scale
        self.dense = linear_part(self.dense, hidden.index, inputs, input_z, out_z)
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

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None,
        masks: LayerMasks,
        reuse_input: bool = False,
    ):
        """``x [B, S, H]``, ``attn_mask [B, 1, 1, S]`` bool (True = attend) -> ``[B, S, H]``.

        ``reuse_input``: ``x`` may be overwritten (see ``SublayerOutput``).
        """
        B, S, H = x.shape
        n, d = self.num_heads, self.head_size
        p = self.dropout_p if self.training else 0.0
        if masks.attention_removed:  # the residual passes through (see the module docstring)
            _replay_dropout(p, (B, n, S, S), x)
            _replay_dropout(self.output.dropout.p if self.training else 0.0, (B, S, H), x)
            return _keep_zero_grads(x, self)
        keep, dims = masks.head_index, None
        kept = n if keep is None else keep.numel()

        def project(linear: nn.Linear) -> torch.Tensor:  # [B, S, H] -> [B, kept, S, d]
            if dims is None:
                out = linear(x)
            else:
                out = F.linear(x, linear.weight.index_select(0, dims), linear.bias[dims])
            return out.view(B, S, kept, d).transpose(1, 2)

        if keep is not None:  # only the kept heads' rows of Q, K, V
            dims = (keep[:, None] * d + torch.arange(d, device=keep.device)).flatten()
        q, k, v = (project(getattr(self.self, name)) for name in self.qkv_names)
        ctx = self.attend(q, k, v, attn_mask, p, keep, dims)
        ctx = ctx.transpose(1, 2).reshape(B, S, kept * d)  # [B, S, kept*d]
        head_z = None
        if masks.head is not None:
            z = masks.head if keep is None else masks.head.index_select(0, keep)
            head_z = z.repeat_interleave(d)  # [kept*d]
        alive = _alive(masks.head_layer, masks.head)
        return self.output(
            ctx,
            x,
            masks.head_layer,
            masks,
            alive,
            unit_z=head_z,
            reuse_residual=reuse_input,
            in_index=dims,
        )

    def attend(self, q, k, v, attn_mask, p: float, keep, dims) -> torch.Tensor:
        """Scaled dot-product attention of the kept heads ``q, k, v [B, kept, S, d]`` ->
        ``[B, kept, S, d]`` (``keep``: their indices, None for all; ``dims``: their Q/K/V rows).
        A family with another attention (DeBERTa's relative terms) overrides this."""
        if keep is not None and p > 0:
            return _attention_with_dropout(q, k, v, attn_mask, p, keep, self.num_heads)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)

    def prune_(self, keep: LayerKeep, hidden: Kept) -> None:
        """Keep ``keep.heads`` (Q/K/V rows, the output projection's columns) and the hidden dims.
        Its layer removes it when no head is kept."""
        d = self.head_size
        heads = keep.heads.index
        rows = (heads[:, None] * d + torch.arange(d)).flatten()  # [kept * d]
        for name in self.qkv_names:
            setattr(self.self, name, linear_part(getattr(self.self, name), rows, hidden.index))
        self.output.prune_(rows, keep.heads.scale.repeat_interleave(d), keep.head_layer, hidden)
        self.num_heads = len(heads)


class Intermediate(nn.Module):
    """FFN input projection and activation (HF ``BertIntermediate`` layout)."""

    def __init__(self, config, size: int):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, size)
        act = config.hidden_act
        self.intermediate_act_fn = ACT2FN[act] if isinstance(act, str) else act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(x))

    def prune_(self, dims: torch.Tensor, hidden: Kept) -> None:
        """Keep the FFN dims ``dims`` (rows) and the hidden dims (columns)."""
        self.dense = linear_part(self.dense, dims, hidden.index)


def _alive(layer_z: torch.Tensor | None, unit_z: torch.Tensor | None) -> torch.Tensor | None:
    """Bool scalar: the sublayer exists (its layer gate and at least one unit are non-zero)."""
    if layer_z is None and unit_z is None:
        return None
    alive = torch.ones(
        (), dtype=torch.bool, device=(layer_z if layer_z is not None else unit_z).device
    )
    if layer_z is not None:
        alive = alive & (layer_z != 0)
    if unit_z is not None:
        alive = alive & (unit_z != 0).any()
    return alive


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

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None,
        masks: LayerMasks,
        reuse_input: bool = False,
    ):
        """``[B, S, H]`` -> ``[B, S, H]``. ``reuse_input``: the caller no longer needs ``x``, so
        inference may overwrite it; the attention's output is always this layer's own tensor."""
        if self.attention is not None:
            layer_input = x
            x = self.attention(x, attn_mask, masks, reuse_input=reuse_input)
            reuse_input = reuse_input or x is not layer_input  # a fresh tensor nobody else holds
        if self.intermediate is not None and masks.ffn_removed:
            _replay_dropout(self.output.dropout.p if self.training else 0.0, x.shape, x)
            x = _keep_zero_grads(x, self.intermediate, self.output)
        elif self.intermediate is not None:
            keep, unit_z = masks.intermediate_index, masks.intermediate
            if keep is None:
                h = self.intermediate(x)
            else:  # only the kept FFN dims
                dense = self.intermediate.dense
                pre = F.linear(x, dense.weight.index_select(0, keep), dense.bias[keep])
                h = self.intermediate.intermediate_act_fn(pre)
                unit_z = unit_z.index_select(0, keep)
            alive = _alive(masks.mlp, masks.intermediate)
            x = self.output(
                h,
                x,
                masks.mlp,
                masks,
                alive,
                unit_z=unit_z,
                reuse_residual=reuse_input,
                in_index=keep,
            )
        return x

    @torch.no_grad()
    def unit_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``([n], [m])``: the L2 norm of each head's Q, K, V rows and output-projection columns,
        and of each FFN dim's input row and output column (the uniform baseline keeps the
        largest)."""
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

    def forward(self, x, attn_mask, layer_masks: list[LayerMasks], output_hidden_states: bool):
        """The last ``[B, S, H]`` state and, if asked, every layer's output (no embeddings)."""
        states = []
        # Without hidden states nobody else holds a layer's input (the embedding output
        # included), so inference may accumulate each residual sum in place.
        for layer, masks in zip(self.layer, layer_masks, strict=True):
            x = layer(x, attn_mask, masks, reuse_input=not output_hidden_states)
            if output_hidden_states:
                states.append(x)
        return x, states

    def prune_(self, keeps: list[LayerKeep], hidden: Kept) -> None:
        for layer, keep in zip(self.layer, keeps, strict=True):
            layer.prune_(keep, hidden)
