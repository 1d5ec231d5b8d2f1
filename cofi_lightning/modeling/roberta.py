"""The prunable RoBERTa and XLM-R (the same network, its own config): BERT's layers with RoBERTa's
positions (counted from ``padding_idx + 1``) and classification head (no pooler)."""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import RobertaConfig, XLMRobertaConfig

# Relative imports only: exported checkpoints ship these files as ``trust_remote_code`` modules.
from .bert import (
    CoFiBertForQuestionAnswering,
    CoFiBertForSequenceClassification,
    CoFiBertModel,
    CoFiBertPreTrainedModel,
)
from .configuration import PerLayerSizes
from .layers import CoFiBertEmbeddings, LayerMasks


@strict
class CoFiRobertaConfig(PerLayerSizes, RobertaConfig):
    """``RobertaConfig`` plus the explicit per-layer architecture (see ``configuration.py``)."""

    model_type = "cofi_roberta"

    num_heads: list[int] | None = None
    intermediate_sizes: list[int] | None = None
    attention_head_size: int | None = None
    pooler_size: int | None = None


@strict
class CoFiXLMRobertaConfig(PerLayerSizes, XLMRobertaConfig):
    """``XLMRobertaConfig`` plus the explicit per-layer architecture."""

    model_type = "cofi_xlm_roberta"

    num_heads: list[int] | None = None
    intermediate_sizes: list[int] | None = None
    attention_head_size: int | None = None
    pooler_size: int | None = None


def roberta_position_ids(input_ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """``[B, S]`` positions: real tokens count from ``padding_idx + 1``, padding stays at
    ``padding_idx`` (``transformers``' ``create_position_ids_from_input_ids``)."""
    mask = input_ids.ne(padding_idx).int()
    return (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + padding_idx


class CoFiRobertaEmbeddings(CoFiBertEmbeddings):
    """BERT's masked embeddings with RoBERTa's positions (and a padding row in their table)."""

    def __init__(self, config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size, padding_idx=self.padding_idx
        )

    def forward(self, input_ids, token_type_ids, position_ids, masks: LayerMasks) -> torch.Tensor:
        if position_ids is None:
            position_ids = roberta_position_ids(input_ids, self.padding_idx)
        return super().forward(input_ids, token_type_ids, position_ids, masks)


class CoFiRobertaPreTrainedModel(CoFiBertPreTrainedModel):
    config_class = CoFiRobertaConfig
    base_model_prefix = "roberta"
    vanilla_model_types = ("roberta",)


class CoFiRobertaModel(CoFiRobertaPreTrainedModel, CoFiBertModel):
    """The RoBERTa encoder (the task models have no pooler)."""

    embeddings_class = CoFiRobertaEmbeddings


class CoFiRobertaClassificationHead(nn.Module):
    """``dense (H -> pooler_size)``, tanh, ``out_proj`` on the first token (``<s>``)."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.pooler_size)
        p = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if p is None else p)
        self.out_proj = nn.Linear(config.pooler_size, config.num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.dropout(features[:, 0])
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out_proj(x)


class CoFiRobertaForSequenceClassification(
    CoFiRobertaPreTrainedModel, CoFiBertForSequenceClassification
):
    """RoBERTa's classification head on the ``<s>`` token (the encoder has no pooler)."""

    model_class: type[CoFiBertModel] = CoFiRobertaModel
    pooling_layer = False
    head_input = "classifier.dense"

    def add_head(self, config) -> None:
        self.classifier = CoFiRobertaClassificationHead(config)

    def logits(self, seq: torch.Tensor, pooled, attention_mask) -> torch.Tensor:
        return self.classifier(seq)


class CoFiRobertaForQuestionAnswering(CoFiRobertaPreTrainedModel, CoFiBertForQuestionAnswering):
    """Span extraction head on RoBERTa (``qa_outputs``, as BERT's)."""

    model_class: type[CoFiBertModel] = CoFiRobertaModel


# --- XLM-R: the same network, its own config ----------------------------------------------


class CoFiXLMRobertaPreTrainedModel(CoFiRobertaPreTrainedModel):
    config_class = CoFiXLMRobertaConfig
    vanilla_model_types = ("xlm-roberta",)


class CoFiXLMRobertaModel(CoFiXLMRobertaPreTrainedModel, CoFiRobertaModel):
    pass


class CoFiXLMRobertaForSequenceClassification(
    CoFiXLMRobertaPreTrainedModel, CoFiRobertaForSequenceClassification
):
    model_class = CoFiXLMRobertaModel


class CoFiXLMRobertaForQuestionAnswering(
    CoFiXLMRobertaPreTrainedModel, CoFiRobertaForQuestionAnswering
):
    model_class = CoFiXLMRobertaModel
