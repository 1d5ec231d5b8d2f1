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
