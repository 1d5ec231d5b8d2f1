"""Post-training pruning on every family (tiny random checkpoints of ``test_families``, and BERT):
the export reproduces the masked model with the tuned scales, and the parameter search meets its
target as counted on the export's real tensors."""

from __future__ import annotations

import pytest
import torch
from test_families import FAMILIES, inputs
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.core.posttrain import posttrain_masks
from cofi_lightning.modeling import CoFiBertConfig, family_of

from tiny_bert import tiny_bert_kwargs

TARGET = 0.4


def _model(name: str, qa: bool, tmp_path):
    """A tiny random model of the family ``name``, loaded through its CoFi class."""
    if name == "bert":
        from transformers import BertConfig

        cfg = CoFiBertConfig.from_bert_config(BertConfig(**tiny_bert_kwargs(num_hidden_layers=3)))
        family = family_of("bert")
        cls = family.question_answering if qa else family.sequence_classification
        torch.manual_seed(0)
        return cls(cfg).eval()
    config_cls, seq_cls, qa_cls, kwargs = FAMILIES[name]
    torch.manual_seed(0)
    (qa_cls if qa else seq_cls)(config_cls(**kwargs())).save_pretrained(tmp_path)
    family = family_of(name.split()[0])
    cls = family.question_answering if qa else family.sequence_classification
    return cls.from_pretrained(tmp_path).eval()


def _batches(qa: bool) -> list[dict]:
    out = []
    for seed in range(3):
        ids, mask = inputs(seed)
        batch = {"input_ids": ids, "attention_mask": mask}
        g = torch.Generator().manual_seed(seed)
        if qa:
            batch["start_positions"] = torch.randint(0, 9, (len(ids),), generator=g)
            batch["end_positions"] = batch["start_positions"] + 1
        else:
            batch["labels"] = torch.randint(0, 2, (len(ids),), generator=g)
        out.append(batch)
    return out


def _outputs(model, masks=None) -> torch.Tensor:
    ids, mask = inputs(seed=7)
    out = model(input_ids=ids, attention_mask=mask, **({} if masks is None else {"masks": masks}))
    if getattr(out, "start_logits", None) is not None:
        return torch.cat([out.start_logits, out.end_logits], dim=-1)
    return out.logits


@pytest.mark.parametrize(
    ("name", "qa"),
    # one configuration per family (test_families covers their options); QA for ModernBERT
    [(name, False) for name in ("bert", "roberta", "deberta-v2", "modernbert")]
    + [("modernbert", True)],
)
@torch.no_grad()
def test_the_posttrain_export_equals_the_tuned_masked_model(name, qa, tmp_path):
    model = _model(name, qa, tmp_path / "vanilla")
    gates = CoFiMasks(model.config, units=("head", "intermediate"))
    with torch.enable_grad():  # the Fisher pass needs gradients
        (z,) = posttrain_masks(
            model, _batches(qa), [lambda m: gates.sparsity(m) >= TARGET], rescaled="always"
        )
    for t in (z.head, z.intermediate):  # tuned scales of both unit types
        assert ((t != 0) & (t != 1)).any()
    out = tmp_path / "export"
    model.prune(z).save_pretrained(out)
    auto = AutoModelForQuestionAnswering if qa else AutoModelForSequenceClassification
    export = auto.from_pretrained(out).eval()
    torch.testing.assert_close(_outputs(export), _outputs(model, z), atol=1e-4, rtol=1e-4)
    real = 1 - export.num_encoder_params() / model.num_encoder_params()
    assert real >= TARGET and real == pytest.approx(gates.sparsity(z))
