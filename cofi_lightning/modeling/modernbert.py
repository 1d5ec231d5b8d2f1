"""The prunable ModernBERT (``transformers``' ``modeling_modernbert``, mask-aware): pre-norm layers,
fused Q/K/V, rotary positions, global and sliding-window attention, a gated FFN, no biases.

The masks act as in BERT (``layers.py``), adapted to pre-norm: the residual stream and every
LayerNorm's output are masked by ``hidden``. An FFN unit is a row of each half of ``Wi`` (``i``
and ``m + i``). A removed sublayer takes its pre-norm with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import ModernBertConfig
from transformers.activations import ACT2FN

# Relative imports only: exported checkpoints ship these files as ``trust_remote_code`` modules.
from .bert import (
    CoFiBertForQuestionAnswering,
    CoFiBertForSequenceClassification,
    CoFiBertPreTrainedModel,
)
from .configuration import PerLayerSizes
from .layers import (
    LayerMasks,
    SublayerMasks,
    fold_output,
    keep_zero_grads,
    masked_layer_norm,
    split_masks,
)
from .pruning import Kept, LayerKeep, embedding_part, fold, head_rows, layer_norm_part, linear_part

if TYPE_CHECKING:
    try:
        from cofi_lightning.core.masks.types import Masks
    except ImportError:  # loaded as remote code
        pass


@strict
class CoFiModernBertConfig(PerLayerSizes, ModernBertConfig):
    """``ModernBertConfig`` plus the explicit per-layer architecture (see ``configuration.py``);
    ``pooler_size`` is the prediction head's width."""

    model_type = "cofi_modernbert"

    num_heads: list[int] | None = None
    intermediate_sizes: list[int] | None = None
    attention_head_size: int | None = None
    pooler_size: int | None = None

    def encoder_param_terms(self) -> dict:
        """ModernBERT's coefficients of ``param_count.encoder_params`` (layer 0's attention has
        no pre-norm)."""
        norm = 2 if self.norm_bias else 1
        attn_bias, mlp_bias = bool(self.attention_bias), bool(self.mlp_bias)
        attention = [(norm if i > 0 else 0) + attn_bias for i in range(self.num_hidden_layers)]
        return {
            "head_bias": 3 * attn_bias,
            "attention_per_hidden": attention,
            "ffn_weights": 3,
            "ffn_bias": 2 * mlp_bias,
            "ffn_per_hidden": norm + mlp_bias,
        }


def _layer_norm(config, size: int) -> nn.LayerNorm:
    return nn.LayerNorm(size, eps=config.norm_eps, bias=config.norm_bias)


def _norm(x: torch.Tensor, ln: nn.Module, masks: LayerMasks) -> torch.Tensor:
    """A LayerNorm over the kept hidden dims, times the hidden mask (identity stays identity)."""
    if isinstance(ln, nn.Identity):
        return x
    out = masked_layer_norm(x, ln, masks.hidden_keep)
    return out if masks.hidden is None else out * masks.hidden


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class AttentionInputs(NamedTuple):
    """What every attention of one type (global or sliding) shares in one forward."""

    mask: torch.Tensor  # [B, 1, S, S] bool, True = attend
    cos: torch.Tensor  # [S, d]
    sin: torch.Tensor  # [S, d]


class CoFiModernBertAttention(nn.Module):
    """Self-attention of ``num_heads`` heads: fused ``Wqkv`` (rows: all heads' Q, then K, then V),
    rotary Q/K, ``Wo``."""

    def __init__(self, config, num_heads: int):
        super().__init__()
        self.num_heads, self.head_size = num_heads, config.attention_head_size
        inner = num_heads * self.head_size
        self.Wqkv = nn.Linear(config.hidden_size, 3 * inner, bias=config.attention_bias)
        self.Wo = nn.Linear(inner, config.hidden_size, bias=config.attention_bias)
        self.dropout_p = config.attention_dropout

    def forward(self, x: torch.Tensor, masks: LayerMasks, inputs: AttentionInputs):
        """``x [B, S, H]`` (normed) -> ``[B, S, H]`` (before the residual)."""
        B, S, _ = x.shape
        sub, n, d = masks.attention, self.num_heads, self.head_size
        kept = n if sub.index is None else len(sub.index)
        cols = None if sub.index is None else head_rows(sub.index, d)
        qkv = F.linear(x, *fold(self.Wqkv, self._qkv_rows(cols))).view(B, S, 3, kept, d)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(dim=2))  # [B, kept, S, d]
        cos, sin = inputs.cos, inputs.sin
        dtype = q.dtype
        q = (q.float() * cos + rotate_half(q.float()) * sin).to(dtype)
        k = (k.float() * cos + rotate_half(k.float()) * sin).to(dtype)
        p = self.dropout_p if self.training else 0.0
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=inputs.mask, dropout_p=p)
        ctx = ctx.transpose(1, 2).reshape(B, S, kept * d)
        return F.dropout(F.linear(ctx, *fold_output(self.Wo, masks, sub, d)), p, self.training)

    def _qkv_rows(self, heads: torch.Tensor | None) -> torch.Tensor | None:
        """The rows of ``Wqkv`` (Q, K, V one after another) of the heads' rows ``heads``."""
        inner = self.num_heads * self.head_size
        return None if heads is None else torch.cat([heads + part * inner for part in range(3)])

    def prune_(self, keep: LayerKeep, hidden: Kept) -> None:
        cols = head_rows(keep.heads.index, self.head_size)
        self.Wqkv = linear_part(self.Wqkv, self._qkv_rows(cols), hidden.index)
        col_z = keep.heads.scale.repeat_interleave(self.head_size)
        self.Wo = linear_part(self.Wo, hidden.index, cols, col_z, keep.head_layer * hidden.scale)
        self.num_heads = len(keep.heads.index)


class CoFiModernBertMLP(nn.Module):
    """Gated FFN: ``Wo(drop(act(x Wi[:m]) * (x Wi[m:])))``."""

    def __init__(self, config, size: int):
        super().__init__()
        self.size = size
        self.Wi = nn.Linear(config.hidden_size, 2 * size, bias=config.mlp_bias)
        self.act = ACT2FN[config.hidden_activation]
        self.drop = nn.Dropout(config.mlp_dropout)
        self.Wo = nn.Linear(size, config.hidden_size, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor, masks: LayerMasks) -> torch.Tensor:
        """``x [B, S, H]`` (normed) -> ``[B, S, H]`` (before the residual)."""
        rows = self._wi_rows(masks.ffn.index)
        inp, gate = F.linear(x, *fold(self.Wi, rows)).chunk(2, dim=-1)  # [B, S, k] each
        return F.linear(self.drop(self.act(inp) * gate), *fold_output(self.Wo, masks, masks.ffn))

    def _wi_rows(self, dims: torch.Tensor | None) -> torch.Tensor | None:
        """The rows of ``Wi`` of the FFN units ``dims``: one in each half."""
        return None if dims is None else torch.cat([dims, dims + self.size])

    def prune_(self, dims: Kept, mlp_z: torch.Tensor, hidden: Kept) -> None:
        self.Wi = linear_part(self.Wi, self._wi_rows(dims.index), hidden.index)
        self.Wo = linear_part(self.Wo, hidden.index, dims.index, dims.scale, mlp_z * hidden.scale)
        self.size = len(dims.index)


def _residual(x, sublayer, norm, masks: LayerMasks, sub: SublayerMasks, *inputs) -> torch.Tensor:
    """``x + sublayer(norm(x), masks, *inputs)``; ``x`` when the sublayer is removed."""
    if sub.removed:
        return keep_zero_grads(x, sublayer, norm)
    out = sublayer(_norm(x, norm, masks), masks, *inputs)
    return x + (out if sub.alive is None else torch.where(sub.alive, out, 0.0))


class CoFiModernBertLayer(nn.Module):
    """Pre-norm layer: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``; a sublayer of size 0 is
    absent, with its norm."""

    def __init__(self, config, index: int, num_heads: int, intermediate_size: int):
        super().__init__()
        self.attention_type = config.layer_types[index]
        self.attn = self.attn_norm = self.mlp = self.mlp_norm = None
        if num_heads > 0:
            self.attn_norm = (
                nn.Identity() if index == 0 else _layer_norm(config, config.hidden_size)
            )
            self.attn = CoFiModernBertAttention(config, num_heads)
        if intermediate_size > 0:
            self.mlp_norm = _layer_norm(config, config.hidden_size)
            self.mlp = CoFiModernBertMLP(config, intermediate_size)

    def forward(self, x: torch.Tensor, inputs: AttentionInputs, masks: LayerMasks):
        if self.attn is not None:
            x = _residual(x, self.attn, self.attn_norm, masks, masks.attention, inputs)
        if self.mlp is not None:
            x = _residual(x, self.mlp, self.mlp_norm, masks, masks.ffn)
        return x

    @torch.no_grad()
    def unit_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """As ``CoFiBertLayer.unit_scores``; an FFN unit's input rows are its two halves'."""
        n, d = self.attn.num_heads, self.attn.head_size
        heads = self.attn.Wqkv.weight.reshape(3, n, d, -1).pow(2).sum(dim=(0, 2, 3))
        heads = heads + self.attn.Wo.weight.reshape(-1, n, d).pow(2).sum(dim=(0, 2))
        m = self.mlp.size
        w_in = self.mlp.Wi.weight.pow(2).sum(dim=1)
        ffn = w_in[:m] + w_in[m:] + self.mlp.Wo.weight.pow(2).sum(dim=0)
        return heads.sqrt(), ffn.sqrt()

    def prune_(self, keep: LayerKeep, hidden: Kept) -> None:
        if self.attn is not None:
            if len(keep.heads.index):
                self.attn.prune_(keep, hidden)
                if not isinstance(self.attn_norm, nn.Identity):
                    self.attn_norm = layer_norm_part(self.attn_norm, hidden)
            else:
                self.attn = self.attn_norm = None
        if self.mlp is not None:
            if len(keep.dims.index):
                self.mlp.prune_(keep.dims, keep.mlp, hidden)
                self.mlp_norm = layer_norm_part(self.mlp_norm, hidden)
            else:
                self.mlp = self.mlp_norm = None


class CoFiModernBertEmbeddings(nn.Module):
    """Token embeddings, masked LayerNorm, dropout (no positions: rotary, in the attention)."""

    def __init__(self, config):
        super().__init__()
        self.tok_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.norm = _layer_norm(config, config.hidden_size)
        self.drop = nn.Dropout(config.embedding_dropout)

    def forward(self, input_ids: torch.Tensor, masks: LayerMasks) -> torch.Tensor:
        x = self.tok_embeddings(input_ids)
        if masks.hidden is not None:
            x = x * masks.hidden
        return self.drop(_norm(x, self.norm, masks))

    def prune_hidden_(self, hidden: Kept) -> None:
        self.tok_embeddings = embedding_part(self.tok_embeddings, hidden)
        self.norm = layer_norm_part(self.norm, hidden)


class CoFiModernBertPreTrainedModel(CoFiBertPreTrainedModel):
    config_class = CoFiModernBertConfig
    base_model_prefix = "model"
    vanilla_model_types = ("modernbert",)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear | nn.Embedding):
            super()._init_weights(module)


class CoFiModernBertModel(CoFiModernBertPreTrainedModel):
    """Embeddings, the layers (``layers``: no ``encoder`` module, as in ``transformers``) and the
    final norm."""

    def __init__(self, config, add_pooling_layer: bool = False):
        super().__init__(config)
        self.embeddings = CoFiModernBertEmbeddings(config)
        self.layers = nn.ModuleList(
            CoFiModernBertLayer(config, i, n, m)
            for i, (n, m) in enumerate(
                zip(config.num_heads, config.intermediate_sizes, strict=True)
            )
        )
        self.final_norm = _layer_norm(config, config.hidden_size)
        self.post_init()

    def _rotary(self, layer_type: str, seq: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos, sin [S, d]`` of the layer type's rotary frequencies (fp32)."""
        theta = self.config.rope_parameters[layer_type]["rope_theta"]
        d = self.config.attention_head_size
        inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float, device=device) / d))
        freqs = torch.arange(seq, device=device, dtype=torch.float)[:, None] * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        masks: Masks | None = None,
        output_hidden_states: bool = False,
    ):
        """``(sequence [B, S, H] after the final norm, None, hidden states or None)``."""
        layer_masks, emb_masks = split_masks(masks, self.config.num_hidden_layers)
        B, S = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        keys = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, S]
        pos = torch.arange(S, device=input_ids.device)
        near = (pos[:, None] - pos[None, :]).abs() <= self.config.sliding_window  # [S, S]
        inputs = {}
        for layer_type in set(self.config.layer_types):
            mask = keys & near if layer_type == "sliding_attention" else keys.expand(B, 1, S, S)
            inputs[layer_type] = AttentionInputs(mask, *self._rotary(layer_type, S, pos.device))
        x = self.embeddings(input_ids, emb_masks)
        states = [x]
        for layer, layer_mask in zip(self.layers, layer_masks, strict=True):
            x = layer(x, inputs[layer.attention_type], layer_mask)
            states.append(x)
        seq = _norm(x, self.final_norm, emb_masks)
        return seq, None, tuple(states) if output_hidden_states else None

    def encoder_parameters(self):
        return self.layers.parameters()

    def encoder_layers(self) -> list[nn.Module]:
        return list(self.layers)

    def prune_encoder_(self, keeps: list[LayerKeep], hidden: Kept) -> None:
        for layer, keep in zip(self.layers, keeps, strict=True):
            layer.prune_(keep, hidden)
        self.final_norm = layer_norm_part(self.final_norm, hidden)


class CoFiModernBertHead(nn.Module):
    """``norm(act(dense(x)))``: dense from the hidden size to ``pooler_size``."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.pooler_size, config.classifier_bias)
        self.act = ACT2FN[config.classifier_activation]
        self.norm = _layer_norm(config, config.pooler_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(x)))


def _add_head(model, config, num_outputs: int) -> None:
    """ModernBERT's task head: the prediction head, dropout, a linear ``classifier``."""
    model.head = CoFiModernBertHead(config)
    model.drop = nn.Dropout(config.classifier_dropout)
    model.classifier = nn.Linear(config.pooler_size, num_outputs)


class CoFiModernBertForSequenceClassification(
    CoFiModernBertPreTrainedModel, CoFiBertForSequenceClassification
):
    """Pooling (``cls`` or ``mean``), the prediction head, a linear classifier."""

    _new_head_prefixes = ("head.", "classifier.")
    model_class = CoFiModernBertModel
    pooling_layer = False
    head_input = "head.dense"

    def add_head(self, config) -> None:
        _add_head(self, config, config.num_labels)

    def logits(self, seq: torch.Tensor, pooled, attention_mask) -> torch.Tensor:
        if self.config.classifier_pooling == "mean":
            m = torch.ones_like(seq[..., 0]) if attention_mask is None else attention_mask
            pooled = (seq * m.unsqueeze(-1)).sum(dim=1) / m.sum(dim=1, keepdim=True)
        else:
            pooled = seq[:, 0]
        return self.classifier(self.drop(self.head(pooled)))


class CoFiModernBertForQuestionAnswering(
    CoFiModernBertPreTrainedModel, CoFiBertForQuestionAnswering
):
    """The prediction head and a ``[pooler_size, 2]`` classifier on every position."""

    _new_head_prefixes = ("head.", "classifier.")
    model_class = CoFiModernBertModel
    head_input = "head.dense"

    def add_head(self, config) -> None:
        _add_head(self, config, 2)

    def logits(self, seq: torch.Tensor, pooled, attention_mask) -> torch.Tensor:
        return self.classifier(self.drop(self.head(seq)))
