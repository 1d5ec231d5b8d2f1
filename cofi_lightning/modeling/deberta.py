"""The prunable DeBERTa-v2 / v3 (``transformers``' ``modeling_deberta_v2``, mask-aware): BERT's
layers with disentangled attention, scores ``q·k + q·P_k[δ(i, j)] + k_j·P_q[δ(j, i)]`` over
``sqrt(d · (1 + #terms))``, where ``P_k`` / ``P_q`` are the shared relative embeddings ``[2P, H]``
(hidden dims: masked and pruned with the hidden mask) projected for the kept heads, and ``δ`` the
log-bucketed relative distance. Refused when loading: ``embedding_size != hidden_size`` and
``conv_kernel_size > 0`` (DeBERTa-v2-xlarge / xxlarge).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import DebertaV2Config
from transformers.activations import ACT2FN

# Relative imports only: exported checkpoints ship these files as ``trust_remote_code`` modules.
from .bert import (
    CoFiBertForQuestionAnswering,
    CoFiBertForSequenceClassification,
    CoFiBertModel,
    CoFiBertPreTrainedModel,
)
from .configuration import PerLayerSizes
from .layers import (
    CoFiBertAttention,
    CoFiBertEmbeddings,
    CoFiBertEncoder,
    CoFiBertLayer,
    LayerMasks,
    masked_layer_norm,
)
from .pruning import Kept, LayerKeep, embedding_part, fold, head_rows, layer_norm_part, linear_part


@strict
class CoFiDebertaV2Config(PerLayerSizes, DebertaV2Config):
    """``DebertaV2Config`` plus the explicit per-layer architecture (see ``configuration.py``);
    ``pooler_size`` is DeBERTa's ``pooler_hidden_size``."""

    model_type = "cofi_deberta_v2"

    num_heads: list[int] | None = None
    intermediate_sizes: list[int] | None = None
    attention_head_size: int | None = None
    pooler_size: int | None = None

    def __post_init__(self, **kwargs):
        if self.pooler_size is None:  # DebertaV2Config reads pooler_hidden_size from the kwargs
            self.pooler_size = kwargs.get("pooler_hidden_size") or self.hidden_size
        kwargs["pooler_hidden_size"] = self.pooler_size
        super().__post_init__(**kwargs)  # PerLayerSizes fills the per-layer sizes
        embedding_size = getattr(self, "embedding_size", None)
        if embedding_size not in (None, self.hidden_size) and self.is_uniform():
            raise ValueError(
                f"DeBERTa with embedding_size {embedding_size} != hidden_size {self.hidden_size} "
                "(an embedding projection) is not supported"
            )
        if getattr(self, "conv_kernel_size", 0) > 0:
            raise ValueError(
                "DeBERTa with conv_kernel_size > 0 (a convolution layer) is not supported"
            )

    @property
    def position_span(self) -> int:
        """P: the relative embeddings have ``2P`` rows."""
        if getattr(self, "position_buckets", -1) > 0:
            return self.position_buckets
        if self.max_relative_positions > 0:
            return self.max_relative_positions
        return self.max_position_embeddings

    @property
    def rel_layer_norm(self) -> bool:
        norm = getattr(self, "norm_rel_ebd", None) or "none"
        return "layer_norm" in [x.strip() for x in norm.lower().split("|")]

    def encoder_param_terms(self) -> dict[str, int]:
        """``param_count.encoder_params``' DeBERTa terms: a projection per position term without
        ``share_att_key``; the relative embeddings' ``2P`` rows (and LayerNorm) per hidden dim."""
        terms = set(self.pos_att_type or ()) if self.relative_attention else set()
        per_hidden = 0
        if self.relative_attention:
            per_hidden = 2 * self.position_span + (2 if self.rel_layer_norm else 0)
        extra = 0 if getattr(self, "share_att_key", False) else len(terms & {"c2p", "p2c"})
        return {"extra_projections": extra, "per_hidden": per_hidden}


def log_bucket_position(relative_pos: torch.Tensor, bucket_size: int, max_position: int):
    """DeBERTa's log-bucketed relative positions (exact within ``±bucket_size / 2``)."""
    sign = torch.sign(relative_pos)
    mid = bucket_size // 2
    abs_pos = torch.where(
        (relative_pos < mid) & (relative_pos > -mid),
        torch.tensor(mid - 1).type_as(relative_pos),
        torch.abs(relative_pos),
    )
    log_pos = (
        torch.ceil(
            torch.log(abs_pos / mid) / torch.log(torch.tensor((max_position - 1) / mid)) * (mid - 1)
        )
        + mid
    )
    return torch.where(abs_pos <= mid, relative_pos.type_as(log_pos), log_pos * sign)


def relative_positions(seq: int, config, device) -> torch.Tensor:
    """``[S, S]`` long: the (bucketed) distance ``i − j`` of query i to key j."""
    ids = torch.arange(seq, dtype=torch.long, device=device)
    rel = ids[:, None] - ids[None, :]
    max_position = config.max_relative_positions
    if max_position < 1:
        max_position = config.max_position_embeddings
    buckets = getattr(config, "position_buckets", -1)
    if buckets > 0 and max_position > 0:
        rel = log_bucket_position(rel, buckets, max_position)
    return rel.to(torch.long)


class AttentionInputs(NamedTuple):
    """What every DeBERTa attention of one forward shares."""

    mask: torch.Tensor | None  # [B, 1, S, S] bool: m_i * m_j
    rel_embeddings: torch.Tensor | None  # [2P, H] after the encoder's LayerNorm and hidden mask
    relative_pos: torch.Tensor | None  # [S, S] long


class CoFiDebertaV2Attention(CoFiBertAttention):
    """Disentangled self-attention of the kept heads (``self.query_proj`` / ``key_proj`` /
    ``value_proj``, as in ``transformers``)."""

    qkv_names = ("query_proj", "key_proj", "value_proj")

    def __init__(self, config, num_heads: int):
        super().__init__(config, num_heads)
        terms = (config.pos_att_type or ()) if config.relative_attention else ()
        self.terms = [t for t in terms if t in ("c2p", "p2c")]
        self.span = config.position_span
        self.share_att_key = bool(getattr(config, "share_att_key", False))
        self.pos_dropout_p = config.hidden_dropout_prob
        inner = num_heads * self.head_size
        if not self.share_att_key:
            if "c2p" in self.terms:
                self.self.pos_key_proj = nn.Linear(config.hidden_size, inner)
            if "p2c" in self.terms:
                self.self.pos_query_proj = nn.Linear(config.hidden_size, inner)

    def _positions(self, linear: nn.Linear, rel: torch.Tensor, rows, kept: int) -> torch.Tensor:
        """``[kept, 2P, d]``: the relative embeddings projected for the kept heads."""
        out = F.linear(rel, *fold(linear, rows))
        return out.view(rel.shape[0], kept, self.head_size).transpose(0, 1)

    def attend(self, q, k, v, inputs: AttentionInputs, rows) -> torch.Tensor:
        B, kept, S, d = q.shape
        scale = (d * (1 + len(self.terms))) ** 0.5
        scores = q @ (k.transpose(-1, -2) / scale)  # [B, kept, S, S]
        if self.terms:
            rel = F.dropout(inputs.rel_embeddings, self.pos_dropout_p, self.training)
            rel = rel[: 2 * self.span]
            rel_pos = inputs.relative_pos
            if "c2p" in self.terms:
                proj = self.self.key_proj if self.share_att_key else self.self.pos_key_proj
                pos_k = self._positions(proj, rel, rows, kept)  # [kept, 2P, d]
                c2p = q @ pos_k.transpose(-1, -2)  # [B, kept, S, 2P]
                index = torch.clamp(rel_pos + self.span, 0, 2 * self.span - 1)
                c2p = torch.gather(c2p, -1, index.expand(B, kept, S, S))
                scores = scores + c2p / scale
            if "p2c" in self.terms:
                proj = self.self.query_proj if self.share_att_key else self.self.pos_query_proj
                pos_q = self._positions(proj, rel, rows, kept)
                p2c = k @ pos_q.transpose(-1, -2)  # [B, kept, S(key), 2P]
                index = torch.clamp(-rel_pos + self.span, 0, 2 * self.span - 1)
                p2c = torch.gather(p2c, -1, index.expand(B, kept, S, S)).transpose(-1, -2)
                scores = scores + p2c / scale
        if inputs.mask is not None:
            scores = scores.masked_fill(~inputs.mask, torch.finfo(scores.dtype).min)
        probs = F.dropout(torch.softmax(scores, dim=-1), self.dropout_p, self.training)
        return probs @ v

    def prune_(self, keep: LayerKeep, hidden: Kept) -> None:
        rows = head_rows(keep.heads.index, self.head_size)
        for name in ("pos_key_proj", "pos_query_proj"):
            if hasattr(self.self, name):
                setattr(self.self, name, linear_part(getattr(self.self, name), rows, hidden.index))
        super().prune_(keep, hidden)


class CoFiDebertaV2Layer(CoFiBertLayer):
    attention_class = CoFiDebertaV2Attention


class CoFiDebertaV2Encoder(CoFiBertEncoder):
    """BERT's layers, with the relative embeddings (and their LayerNorm) they share."""

    layer_class = CoFiDebertaV2Layer

    def __init__(self, config):
        super().__init__(config)
        self.config = config
        if config.relative_attention:
            self.rel_embeddings = nn.Embedding(2 * config.position_span, config.hidden_size)
            if config.rel_layer_norm:
                self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x, attn_mask, layer_masks: list[LayerMasks]):
        S = x.shape[1]
        rel = relative = None
        if self.config.relative_attention:
            masks = layer_masks[0] if layer_masks else LayerMasks()
            rel = self.rel_embeddings.weight
            if masks.hidden is not None:
                rel = rel * masks.hidden
            if hasattr(self, "LayerNorm"):
                rel = masked_layer_norm(rel, self.LayerNorm, masks.hidden_keep)
                if masks.hidden is not None:
                    rel = rel * masks.hidden
            relative = relative_positions(S, self.config, x.device)
        inputs = AttentionInputs(attn_mask, rel, relative)
        return super().forward(x, inputs, layer_masks)

    def prune_(self, keeps: list[LayerKeep], hidden: Kept) -> None:
        if hasattr(self, "rel_embeddings"):
            self.rel_embeddings = embedding_part(self.rel_embeddings, hidden)
        if hasattr(self, "LayerNorm"):
            self.LayerNorm = layer_norm_part(self.LayerNorm, hidden)
        super().prune_(keeps, hidden)


class CoFiDebertaV2Embeddings(CoFiBertEmbeddings):
    """BERT's embeddings without the tables DeBERTa's config leaves out."""

    def __init__(self, config):
        super().__init__(config)
        if not config.position_biased_input:
            del self.position_embeddings
            self.position_embeddings = None
        if config.type_vocab_size <= 0:
            del self.token_type_embeddings
            self.token_type_embeddings = None


class CoFiDebertaV2PreTrainedModel(CoFiBertPreTrainedModel):
    config_class = CoFiDebertaV2Config
    base_model_prefix = "deberta"
    vanilla_model_types = ("deberta-v2",)


class CoFiDebertaV2Model(CoFiDebertaV2PreTrainedModel, CoFiBertModel):
    """The DeBERTa encoder (no pooler: the classification model has its own)."""

    embeddings_class = CoFiDebertaV2Embeddings
    encoder_class = CoFiDebertaV2Encoder

    def attention_inputs(self, x: torch.Tensor, attention_mask: torch.Tensor | None):
        """Padded positions zeroed; the mask ``m_i · m_j [B, 1, S, S]`` (as in ``transformers``)."""
        if attention_mask is None:
            return x, None
        keep = attention_mask.bool()
        return x * keep.unsqueeze(-1).to(x.dtype), keep[:, None, :, None] & keep[:, None, None, :]


class CoFiDebertaV2ForSequenceClassification(
    CoFiDebertaV2PreTrainedModel, CoFiBertForSequenceClassification
):
    """A ``ContextPooler`` (dense + activation on the first token) and a linear classifier."""

    _new_head_prefixes = ("classifier.", "pooler.")
    model_class = CoFiDebertaV2Model
    pooling_layer = False
    head_input = "pooler.dense"

    def add_head(self, config) -> None:
        self.pooler = nn.Sequential()
        self.pooler.add_module("dropout", nn.Dropout(config.pooler_dropout))
        self.pooler.add_module("dense", nn.Linear(config.hidden_size, config.pooler_size))
        self.pooler.add_module("activation", ACT2FN[config.pooler_hidden_act])
        p = getattr(config, "cls_dropout", None)
        self.dropout = nn.Dropout(config.hidden_dropout_prob if p is None else p)
        self.classifier = nn.Linear(config.pooler_size, config.num_labels)

    def logits(self, seq: torch.Tensor, pooled, attention_mask) -> torch.Tensor:
        return self.classifier(self.dropout(self.pooler(seq[:, 0])))


class CoFiDebertaV2ForQuestionAnswering(CoFiDebertaV2PreTrainedModel, CoFiBertForQuestionAnswering):
    """Span extraction head on DeBERTa (``qa_outputs``, as BERT's)."""

    model_class = CoFiDebertaV2Model
