"""An inference-only rewrite of a CoFi BERT computing the same function faster (``optimize=true``).

This file owns three changes found by profiling the synthetic s95 model (BERT-base at 95% encoder
sparsity, batch 32 x 128) on CPU; each keeps the outputs equal to the original model's up to float
rounding. With one thread (CPU time on a busy 2-core EPYC) they took the s95 model from 75% to 86%
of its FLOP-ideal speedup, where ``torch.compile`` alone reached 78%. With two threads on an idle
machine they gained nothing (84.0% against 84.6%; the in-place sums have since moved into the model
itself), so this stays opt-in.

* **Fused Q/K/V**: one ``[3·n·d, H]`` projection instead of three. A pruned layer often keeps one
  or two heads, and three 64-column GEMMs run at a lower rate than one 192-column GEMM.
* **Padded GEMM widths**: GEMM output widths (FFN sizes, and the hidden size when hidden dims were
  pruned) that are not a multiple of 8 or 16 run up to 2x slower in MKL (on a 2-core EPYC,
  ``[4096, 704] @ [704, 380]`` took 35 ms against 23 ms for 384 columns). FFN input projections get
  zero rows (the activation maps 0 to 0, so the extra units output nothing) and the output
  projections matching zero columns; output projections whose width is the hidden size get zero
  rows that are sliced off before the residual sum.
* **Fewer fresh tensors**: the residual is added in place into the projection's output, and the
  three embeddings are summed in place. Every fresh ``[B, S, H]`` tensor costs an allocation and,
  when the allocator hands memory back to the OS, page faults on first touch.

The rewritten model takes no masks and only runs in eval mode. Counting (parameters, FLOPs) must use
the original model: padding adds zero weights. It relies on the call signatures of
``CoFiBertEmbeddings`` and ``CoFiBertLayer`` in ``modeling/layers.py``; tests compare outputs.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from cofi_lightning.modeling import CoFiBertPreTrainedModel
from cofi_lightning.modeling.layers import CoFiBertEmbeddings, CoFiBertLayer


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    """An ``nn.Linear`` holding copies of ``weight [out, in]`` and ``bias [out]``."""
    out_features, in_features = weight.shape
    linear = nn.Linear(in_features, out_features, device="meta")  # no wasted random init
    linear.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
    linear.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
    return linear


def _padded(linear: nn.Linear, rows: int, cols: int) -> nn.Linear:
    """``linear`` with zero rows (outputs) and zero columns (inputs) appended."""
    w, b = linear.weight, linear.bias
    weight = w.new_zeros(rows, cols)
    weight[: w.shape[0], : w.shape[1]] = w
    bias = b.new_zeros(rows)
    bias[: b.shape[0]] = b
    return _linear(weight, bias)


def _check_no_masks(module: nn.Module, masks) -> None:
    values = masks._asdict().values() if hasattr(masks, "_asdict") else vars(masks).values()
    if any(v is not None and v is not False for v in values):  # no mask, nothing removed
        raise ValueError(f"{type(module).__name__} is an inference rewrite and takes no masks")
    if module.training:
        raise RuntimeError(f"{type(module).__name__} runs in eval mode only")


class FastEmbeddings(nn.Module):
    """``CoFiBertEmbeddings`` in eval mode, summing the three tables in place."""

    def __init__(self, embeddings: nn.Module):
        super().__init__()
        self.word_embeddings = embeddings.word_embeddings
        self.position_embeddings = embeddings.position_embeddings
        self.token_type_embeddings = embeddings.token_type_embeddings
        self.LayerNorm = embeddings.LayerNorm
        self.register_buffer("position_ids", embeddings.position_ids, persistent=False)

    def forward(self, input_ids, token_type_ids, position_ids, masks) -> torch.Tensor:
        """``[B, S]`` ids -> ``[B, S, H]``."""
        _check_no_masks(self, masks)
        if position_ids is None:
            position_ids = self.position_ids[:, : input_ids.shape[1]]  # [1, S]
        x = self.word_embeddings(input_ids)  # a fresh tensor: safe to add into
        if token_type_ids is None:
            x += self.token_type_embeddings.weight[0]
        else:
            x += self.token_type_embeddings(token_type_ids)
        x += self.position_embeddings(position_ids)
        return self.LayerNorm(x)


class FastLayer(nn.Module):
    """``CoFiBertLayer`` in eval mode with fused Q/K/V, padded GEMM widths and in-place residuals.

    Args:
        layer: The layer to rewrite (its weights are copied).
        multiple: GEMM output widths are padded up to a multiple of this.
    """

    def __init__(self, layer: nn.Module, multiple: int = 16):
        super().__init__()
        attention, intermediate = layer.attention, layer.intermediate
        self.qkv = self.ffn_in = None
        if attention is not None:
            dense = attention.output.dense
            self.hidden = dense.out_features
            self.num_heads, self.head_size = attention.num_heads, attention.head_size
            s = attention.self
            self.qkv = _linear(
                torch.cat([s.query.weight, s.key.weight, s.value.weight]),  # [3*n*d, H]
                torch.cat([s.query.bias, s.key.bias, s.value.bias]),
            )
            self.attn_out = _padded(dense, _round_up(self.hidden, multiple), dense.in_features)
            self.attn_norm = attention.output.LayerNorm
        if intermediate is not None:
            dense_in, dense_out = intermediate.dense, layer.output.dense
            self.hidden = dense_out.out_features
            self.act = intermediate.intermediate_act_fn
            m = dense_in.out_features
            zero_in_zero_out = float(self.act(torch.zeros(1))[0]) == 0.0
            m_pad = _round_up(m, multiple) if zero_in_zero_out else m
            self.ffn_in = _padded(dense_in, m_pad, dense_in.in_features)
            self.ffn_out = _padded(dense_out, _round_up(self.hidden, multiple), m_pad)
            self.ffn_norm = layer.output.LayerNorm

    def _add_norm(self, y: torch.Tensor, residual: torch.Tensor, norm: nn.LayerNorm):
        """``LayerNorm(y[..., :H] + residual)``; ``y`` is a fresh projection output."""
        if y.shape[-1] != self.hidden:
            return norm(y[..., : self.hidden] + residual)
        y += residual
        return norm(y)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None, masks, reuse_input: bool = False
    ) -> torch.Tensor:
        """``x [B, S, H]``, ``attn_mask [B, 1, 1, S]`` bool (True = attend) -> ``[B, S, H]``.

        ``reuse_input`` is accepted for ``CoFiBertLayer``'s signature; this layer always adds the
        residual into its own projection output instead."""
        _check_no_masks(self, masks)
        if self.qkv is not None:
            B, S, _ = x.shape
            n, d = self.num_heads, self.head_size
            # [B, S, 3*n*d] -> 3 x [B, n, S, d] (views; SDPA takes strided inputs)
            q, k, v = self.qkv(x).view(B, S, 3, n, d).permute(2, 0, 3, 1, 4).unbind(0)
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B, n, S, d]
            ctx = ctx.transpose(1, 2).reshape(B, S, n * d)
            x = self._add_norm(self.attn_out(ctx), x, self.attn_norm)
        if self.ffn_in is not None:
            x = self._add_norm(self.ffn_out(self.act(self.ffn_in(x))), x, self.ffn_norm)
        return x


@torch.no_grad()
def optimize_for_inference(
    model: CoFiBertPreTrainedModel, multiple: int = 16
) -> CoFiBertPreTrainedModel:
    """A copy of ``model`` (eval mode) with :class:`FastEmbeddings` and :class:`FastLayer` inside.

    Args:
        model: A CoFi task model of any family, pruned or not; it is left unchanged.
        multiple: GEMM output widths are padded to a multiple of this (16 suits MKL fp32 and
            bf16 tensor cores alike).
    """
    fast = copy.deepcopy(model)
    base = fast.base_model
    if type(base.embeddings) is CoFiBertEmbeddings:  # other families number positions their way
        base.embeddings = FastEmbeddings(base.embeddings)
    encoder = getattr(base, "encoder", None)  # families with BERT's layers have one
    if encoder is not None:
        encoder.layer = nn.ModuleList(  # a family with its own attention keeps its layers
            FastLayer(layer, multiple) if type(layer) is CoFiBertLayer else layer
            for layer in encoder.layer
        )
    return fast.eval()
