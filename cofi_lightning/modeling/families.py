"""The encoder families cofi-lightning prunes, by ``model_type``: which classes load a checkpoint,
and the error that lists what is supported."""

from __future__ import annotations

from dataclasses import dataclass

from cofi_lightning.modeling.bert import (
    CoFiBertForQuestionAnswering,
    CoFiBertForSequenceClassification,
)
from cofi_lightning.modeling.deberta import (
    CoFiDebertaV2ForQuestionAnswering,
    CoFiDebertaV2ForSequenceClassification,
)
from cofi_lightning.modeling.modernbert import (
    CoFiModernBertForQuestionAnswering,
    CoFiModernBertForSequenceClassification,
)
from cofi_lightning.modeling.roberta import (
    CoFiRobertaForQuestionAnswering,
    CoFiRobertaForSequenceClassification,
    CoFiXLMRobertaForQuestionAnswering,
    CoFiXLMRobertaForSequenceClassification,
)


class UnsupportedModelError(ValueError):
    """A checkpoint of an encoder family cofi-lightning does not prune."""


@dataclass(frozen=True)
class Family:
    """One prunable encoder family: a readable name and its task models (which know the config,
    the encoder and the ``model_type`` of the family's vanilla checkpoints)."""

    name: str
    sequence_classification: type
    question_answering: type

    @property
    def config_class(self) -> type:
        """The CoFi config (its ``model_type`` is the exported checkpoints')."""
        return self.sequence_classification.config_class

    @property
    def vanilla_type(self) -> str:
        """``model_type`` of the family's ``transformers`` checkpoints."""
        return self.sequence_classification.vanilla_model_types[0]

    def model_class(self, question_answering: bool) -> type:
        return self.question_answering if question_answering else self.sequence_classification


FAMILIES: tuple[Family, ...] = (
    Family("BERT", CoFiBertForSequenceClassification, CoFiBertForQuestionAnswering),
    Family("RoBERTa", CoFiRobertaForSequenceClassification, CoFiRobertaForQuestionAnswering),
    Family("XLM-R", CoFiXLMRobertaForSequenceClassification, CoFiXLMRobertaForQuestionAnswering),
    Family(
        "DeBERTa-v2/v3",
        CoFiDebertaV2ForSequenceClassification,
        CoFiDebertaV2ForQuestionAnswering,
    ),
    Family(
        "ModernBERT",
        CoFiModernBertForSequenceClassification,
        CoFiModernBertForQuestionAnswering,
    ),
)


def family_of(model_type: str) -> Family:
    """The family of a vanilla or CoFi ``model_type``.

    Raises:
        UnsupportedModelError: listing the supported families.
    """
    for family in FAMILIES:
        if model_type in (family.vanilla_type, family.config_class.model_type):
            return family
    supported = ", ".join(f"{f.name} ({f.vanilla_type})" for f in FAMILIES)
    raise UnsupportedModelError(
        f"model_type '{model_type}' is not an encoder family cofi-lightning prunes; supported: "
        f"{supported}"
    )
