"""The prunable BERT: config, mask-aware layers, task models, physical pruning, parameter counts.

Importing this package registers ``model_type="cofi_bert"`` with the ``transformers`` Auto classes.
"""

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
from cofi_lightning.modeling.param_count import architecture_params, encoder_params

AutoConfig.register(CoFiBertConfig.model_type, CoFiBertConfig, exist_ok=True)
AutoModel.register(CoFiBertConfig, CoFiBertModel, exist_ok=True)
AutoModelForSequenceClassification.register(
    CoFiBertConfig, CoFiBertForSequenceClassification, exist_ok=True
)
AutoModelForQuestionAnswering.register(CoFiBertConfig, CoFiBertForQuestionAnswering, exist_ok=True)

# save_pretrained also writes an ``auto_map`` and copies the modeling files, so an exported model
# loads with ``trust_remote_code=True`` where cofi-lightning is not installed.
CoFiBertConfig.register_for_auto_class()
CoFiBertModel.register_for_auto_class("AutoModel")
CoFiBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
CoFiBertForQuestionAnswering.register_for_auto_class("AutoModelForQuestionAnswering")

__all__ = [
    "CheckpointMismatchError",
    "CoFiBertConfig",
    "CoFiBertForQuestionAnswering",
    "CoFiBertForSequenceClassification",
    "CoFiBertModel",
    "CoFiBertPreTrainedModel",
    "architecture_params",
    "encoder_params",
]
