"""Unmasked CoFi BERT equals transformers' BERT on the same weights; loading and its errors."""

import json

import pytest
import torch
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    RobertaConfig,
    RobertaModel,
)

from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.modeling import (
    CheckpointMismatchError,
    CoFiBertConfig,
    CoFiBertForQuestionAnswering,
    CoFiBertForSequenceClassification,
)

from tiny_bert import tiny_bert_kwargs


def batch(vocab=99, batch_size=3, seq=11, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch_size, seq), generator=gen)
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 7:] = 0  # padding
    attention_mask[2, 4:] = 0
    token_type_ids = torch.zeros_like(ids)
    token_type_ids[:, 5:] = 1
    return dict(input_ids=ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("num_labels", [1, 3])
def test_sequence_classification_matches_hf(tmp_path, attn, num_labels):
    torch.manual_seed(0)
    hf = BertForSequenceClassification(BertConfig(**tiny_bert_kwargs(num_labels=num_labels)))
    hf.save_pretrained(tmp_path)
    ours = CoFiBertForSequenceClassification.from_pretrained(tmp_path).eval()
    hf = BertForSequenceClassification.from_pretrained(tmp_path, attn_implementation=attn).eval()
    b = batch()
    torch.testing.assert_close(ours(**b).logits, hf(**b).logits, atol=1e-5, rtol=0)
    # all-ones masks change nothing
    ones = CoFiMasks(ours.config, init_log_alpha={u: 10.0 for u in ("intermediate",)}).sample()
    ones = ones.map(torch.ones_like)
    torch.testing.assert_close(ours(**b, masks=ones).logits, hf(**b).logits, atol=1e-5, rtol=0)


def test_question_answering_matches_hf(tmp_path):
    torch.manual_seed(0)
    BertForQuestionAnswering(BertConfig(**tiny_bert_kwargs())).save_pretrained(tmp_path)
    ours = CoFiBertForQuestionAnswering.from_pretrained(tmp_path).eval()
    hf = BertForQuestionAnswering.from_pretrained(tmp_path).eval()
    b = batch()
    a, h = ours(**b), hf(**b)
    torch.testing.assert_close(a.start_logits, h.start_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.end_logits, h.end_logits, atol=1e-5, rtol=0)
    pos = torch.tensor([1, 2, 30])  # 30 is outside the window and ignored
    loss = ours(**b, start_positions=pos, end_positions=pos).loss
    ref = hf(**b, start_positions=pos, end_positions=pos).loss
    torch.testing.assert_close(loss, ref)


def test_minilm_matches_hf(minilm_dir):
    ours = CoFiBertForSequenceClassification.from_pretrained(minilm_dir, num_labels=2).eval()
    hf = BertForSequenceClassification.from_pretrained(minilm_dir, num_labels=2).eval()
    hf.classifier.load_state_dict(ours.classifier.state_dict())
    b = batch(vocab=30000, seq=24)
    torch.testing.assert_close(ours(**b).logits, hf(**b).logits, atol=1e-5, rtol=0)
    out = ours(**b, output_hidden_states=True)
    ref = hf(**b, output_hidden_states=True)
    assert len(out.hidden_states) == len(ref.hidden_states) == 7
    for x, y in zip(out.hidden_states, ref.hidden_states, strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)
    q = CoFiBertForQuestionAnswering.from_pretrained(minilm_dir).eval()
    hq = BertForQuestionAnswering.from_pretrained(minilm_dir).eval()
    hq.qa_outputs.load_state_dict(q.qa_outputs.state_dict())
    torch.testing.assert_close(q(**b).start_logits, hq(**b).start_logits, atol=1e-5, rtol=0)


def test_fp16_checkpoint_loads_as_fp32(minilm_l2_dir):
    model = CoFiBertForSequenceClassification.from_pretrained(minilm_l2_dir, num_labels=3)
    assert next(model.parameters()).dtype == torch.float32
    assert model.config.num_labels == 3 and model.config.num_heads == [12, 12]


def test_non_bert_checkpoint_is_rejected(tmp_path):
    cfg = RobertaConfig(**tiny_bert_kwargs(pad_token_id=1))
    RobertaModel(cfg).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'roberta' checkpoint"):
        CoFiBertForSequenceClassification.from_pretrained(tmp_path)


def test_weights_not_matching_config_fail_loudly(tmp_path):
    model = CoFiBertForSequenceClassification(CoFiBertConfig(**tiny_bert_kwargs()))
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["intermediate_sizes"] = [48, 40]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointMismatchError, match="do not match the architecture"):
        CoFiBertForSequenceClassification.from_pretrained(tmp_path)
    cfg["intermediate_sizes"] = [48, 0]  # weights present for a layer the config says is removed
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointMismatchError, match="unexpected"):
        CoFiBertForSequenceClassification.from_pretrained(tmp_path)


def test_task_head_of_another_size_is_initialised_anew(tmp_path, caplog):
    """A classifier trained for 2 labels (e.g. an SST-2 model) starting an STS-B run (1 output):
    the encoder loads, the head is new and the log says so; an encoder mismatch still raises."""
    torch.manual_seed(0)
    hf = BertForSequenceClassification(BertConfig(**tiny_bert_kwargs(num_labels=2)))
    hf.save_pretrained(tmp_path)
    with caplog.at_level("WARNING", logger="cofi_lightning.modeling.bert"):
        model = CoFiBertForSequenceClassification.from_pretrained(tmp_path, num_labels=1)
    assert model.classifier.weight.shape[0] == 1
    assert "['classifier.bias', 'classifier.weight'] has another shape" in caplog.text
    torch.testing.assert_close(
        model.bert.encoder.layer[0].attention.self.query.weight,
        hf.bert.encoder.layer[0].attention.self.query.weight,
    )
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["intermediate_size"] = 40  # the encoder's FFN weights no longer fit
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointMismatchError, match="mismatched=.*intermediate"):
        CoFiBertForSequenceClassification.from_pretrained(tmp_path, num_labels=1)


def test_forward_has_no_graph_breaks():
    """No host syncs or data-dependent Python branches: dynamo traces forward as one graph."""
    cfg = CoFiBertConfig(**tiny_bert_kwargs())
    model = CoFiBertForSequenceClassification(cfg).eval()
    masks = CoFiMasks(cfg)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    b = batch()
    out = compiled(**b, masks=masks.sample())
    torch.testing.assert_close(out.logits.shape, torch.Size([3, 2]))
