"""Prunable encoders per family (``families.py``); one ``fold()`` shared by the masked forward and
physical pruning. Importing it registers every family's CoFi ``model_type`` with the
``transformers`` Auto classes."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
)

from cofi_lightning.modeling.bert import (
    CheckpointMismatchError,
    CoFiBertForQuestionAnswering,
    CoFiBertForSequenceClassification,
    CoFiBertModel,
    CoFiBertPreTrainedModel,
)
from cofi_lightning.modeling.configuration import CoFiBertConfig
from cofi_lightning.modeling.deberta import (
    CoFiDebertaV2Config,
    CoFiDebertaV2ForQuestionAnswering,
    CoFiDebertaV2ForSequenceClassification,
    CoFiDebertaV2Model,
)
from cofi_lightning.modeling.families import (
    FAMILIES,
    Family,
    UnsupportedModelError,
    family_of,
)
from cofi_lightning.modeling.modernbert import (
    CoFiModernBertConfig,
    CoFiModernBertForQuestionAnswering,
    CoFiModernBertForSequenceClassification,
    CoFiModernBertModel,
)
from cofi_lightning.modeling.param_count import encoder_params
from cofi_lightning.modeling.roberta import (
    CoFiRobertaConfig,
    CoFiRobertaForQuestionAnswering,
    CoFiRobertaForSequenceClassification,
    CoFiRobertaModel,
    CoFiXLMRobertaConfig,
    CoFiXLMRobertaForQuestionAnswering,
    CoFiXLMRobertaForSequenceClassification,
    CoFiXLMRobertaModel,
)

for _family in FAMILIES:
    _config, _base = _family.config_class, _family.sequence_classification.model_class
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _base, exist_ok=True)
    AutoModelForSequenceClassification.register(
        _config, _family.sequence_classification, exist_ok=True
    )
    AutoModelForQuestionAnswering.register(_config, _family.question_answering, exist_ok=True)
    # save_pretrained also writes an ``auto_map`` and copies the modeling files, so an exported
    # model loads with ``trust_remote_code=True`` where cofi-lightning is not installed.
    _config.register_for_auto_class()
    _base.register_for_auto_class("AutoModel")
    _family.sequence_classification.register_for_auto_class("AutoModelForSequenceClassification")
    _family.question_answering.register_for_auto_class("AutoModelForQuestionAnswering")

__all__ = [
    "FAMILIES",
    "CheckpointMismatchError",
    "CoFiBertConfig",
    "CoFiBertForQuestionAnswering",
    "CoFiBertForSequenceClassification",
    "CoFiBertModel",
    "CoFiBertPreTrainedModel",
    "CoFiDebertaV2Config",
    "CoFiDebertaV2ForQuestionAnswering",
    "CoFiDebertaV2ForSequenceClassification",
    "CoFiDebertaV2Model",
    "CoFiModernBertConfig",
    "CoFiModernBertForQuestionAnswering",
    "CoFiModernBertForSequenceClassification",
    "CoFiModernBertModel",
    "CoFiRobertaConfig",
    "CoFiRobertaForQuestionAnswering",
    "CoFiRobertaForSequenceClassification",
    "CoFiRobertaModel",
    "CoFiXLMRobertaConfig",
    "CoFiXLMRobertaForQuestionAnswering",
    "CoFiXLMRobertaForSequenceClassification",
    "CoFiXLMRobertaModel",
    "Family",
    "UnsupportedModelError",
    "family_of",
    "encoder_params",
]
