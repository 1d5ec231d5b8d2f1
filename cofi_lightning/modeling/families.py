"""The encoder families cofi-lightning prunes, by ``model_type``: one source for which classes load
a checkpoint, and for the error that lists what is supported.

A family is a config class and its task models (sequence classification, question answering); its
modules implement the pruning walk (``pruning.py``) and its parameter count is
:func:`~cofi_lightning.modeling.param_count.encoder_params` with its config's extra terms.
"""

from __future__ import annotations

from dataclasses import dataclass

from cofi_lightning.modeling.bert import (
    CoFiBertForQuestionAnswering,
    CoFiBertForSequenceClassification,
)
from cofi_lightning.modeling.configuration import CoFiBertConfig
from cofi_lightning.modeling.deberta import (
    CoFiDebertaV2Config,
    CoFiDebertaV2ForQuestionAnswering,
    CoFiDebertaV2ForSequenceClassification,
)
from cofi_lightning.modeling.modernbert import (
    CoFiModernBertConfig,
    CoFiModernBertForQuestionAnswering,
    CoFiModernBertForSequenceClassification,
)
from cofi_lightning.modeling.roberta import (
    CoFiRobertaConfig,
    CoFiRobertaForQuestionAnswering,
    CoFiRobertaForSequenceClassification,
    CoFiXLMRobertaConfig,
    CoFiXLMRobertaForQuestionAnswering,
    CoFiXLMRobertaForSequenceClassification,
)


class UnsupportedModelError(ValueError):
    """A checkpoint of an encoder family cofi-lightning does not prune."""


@dataclass(frozen=True)
class Family:
    """One prunable encoder family.

    Attributes:
        name: Readable name (``BERT``).
        vanilla_type: ``model_type`` of the family's ``transformers`` checkpoints.
        config_class: The CoFi config (its ``model_type`` is the exported checkpoints').
        sequence_classification / question_answering: The task models.
    """

    name: str
    vanilla_type: str
    config_class: type
    sequence_classification: type
    question_answering: type

    @property
    def model_types(self) -> tuple[str, str]:
        return (self.vanilla_type, self.config_class.model_type)

    def model_class(self, question_answering: bool) -> type:
        return self.question_answering if question_answering else self.sequence_classification


FAMILIES: tuple[Family, ...] = (
    Family(
        "BERT",
        "bert",
        CoFiBertConfig,
        CoFiBertForSequenceClassification,
        CoFiBertForQuestionAnswering,
    ),
    Family(
        "RoBERTa",
        "roberta",
        CoFiRobertaConfig,
        CoFiRobertaForSequenceClassification,
        CoFiRobertaForQuestionAnswering,
    ),
    Family(
        "XLM-R",
        "xlm-roberta",
        CoFiXLMRobertaConfig,
        CoFiXLMRobertaForSequenceClassification,
        CoFiXLMRobertaForQuestionAnswering,
    ),
    Family(
        "DeBERTa-v2/v3",
        "deberta-v2",
        CoFiDebertaV2Config,
        CoFiDebertaV2ForSequenceClassification,
        CoFiDebertaV2ForQuestionAnswering,
    ),
    Family(
        "ModernBERT",
        "modernbert",
        CoFiModernBertConfig,
        CoFiModernBertForSequenceClassification,
        CoFiModernBertForQuestionAnswering,
    ),
)


def supported() -> str:
    """``BERT (bert), RoBERTa (roberta), ...`` for messages."""
    return ", ".join(f"{f.name} ({f.vanilla_type})" for f in FAMILIES)


def family_of(model_type: str) -> Family:
    """The family of a vanilla or CoFi ``model_type``.

    Raises:
        UnsupportedModelError: listing the supported families.
    """
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise UnsupportedModelError(
        f"model_type '{model_type}' is not an encoder family cofi-lightning prunes; supported: "
        f"{supported()}"
    )
