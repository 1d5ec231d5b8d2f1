"""Every encoder family besides BERT (whose tests are the other files here), on tiny random
configs saved as vanilla ``transformers`` checkpoints: unmasked outputs equal ``transformers``'
own model, masked == physically pruned, predicted == real parameter count, exports reload through
the Auto classes (and as remote code without the package)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from test_pruning import random_masks
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    DebertaV2Config,
    DebertaV2ForQuestionAnswering,
    DebertaV2ForSequenceClassification,
    ModernBertConfig,
    ModernBertForQuestionAnswering,
    ModernBertForSequenceClassification,
    RobertaConfig,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForQuestionAnswering,
    XLMRobertaForSequenceClassification,
)

from cofi_lightning import modeling
from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.modeling import (
    CoFiBertForQuestionAnswering,
    CoFiBertForSequenceClassification,
    UnsupportedModelError,
    family_of,
)

from tiny_bert import tiny_bert_kwargs

PAD = 1  # RoBERTa's <pad>: positions count from it


def _roberta_kwargs(**overrides):
    kwargs = tiny_bert_kwargs(num_hidden_layers=4, type_vocab_size=1, pad_token_id=PAD)
    return {**kwargs, "max_position_embeddings": 64 + PAD + 1, **overrides}


def _deberta_v3_kwargs(**overrides):
    """DeBERTa-v3's choices: relative attention both ways with log buckets and shared position
    projections, LayerNorm on the relative embeddings, no absolute positions, no token types."""
    kwargs = tiny_bert_kwargs(num_hidden_layers=4, type_vocab_size=0, pad_token_id=0)
    return {
        **kwargs,
        "relative_attention": True,
        "position_buckets": 8,
        "max_relative_positions": -1,
        "pos_att_type": ["p2c", "c2p"],
        "share_att_key": True,
        "norm_rel_ebd": "layer_norm",
        "position_biased_input": False,
        "pooler_hidden_size": 32,
        **overrides,
    }


def _deberta_v2_kwargs(**overrides):
    """DeBERTa-v2's other choices: own position projections, absolute positions, token types,
    no bucketing, no LayerNorm on the relative embeddings."""
    return _deberta_v3_kwargs(
        share_att_key=False,
        position_buckets=-1,
        max_relative_positions=16,
        norm_rel_ebd="none",
        position_biased_input=True,
        type_vocab_size=2,
        **overrides,
    )


def _modernbert_kwargs(**overrides):
    """ModernBERT with a global layer every third (the others see +-3 tokens, so the test's
    13-token inputs reach beyond the window), biases on or off."""
    kwargs = tiny_bert_kwargs(num_hidden_layers=4, pad_token_id=0)
    for key in ("type_vocab_size", "hidden_dropout_prob", "attention_probs_dropout_prob"):
        kwargs.pop(key)
    ids = {"bos_token_id": 2, "eos_token_id": 3, "cls_token_id": 2, "sep_token_id": 3}
    return {**kwargs, **ids, "local_attention": 6, "global_attn_every_n_layers": 3, **overrides}


# family -> (vanilla config, classification model, QA model, config kwargs)
FAMILIES = {
    "roberta": (
        RobertaConfig,
        RobertaForSequenceClassification,
        RobertaForQuestionAnswering,
        _roberta_kwargs,
    ),
    "xlm-roberta": (
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
        XLMRobertaForQuestionAnswering,
        _roberta_kwargs,
    ),
    "deberta-v2": (
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
        DebertaV2ForQuestionAnswering,
        _deberta_v3_kwargs,
    ),
    "deberta-v2 (v2 options)": (
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
        DebertaV2ForQuestionAnswering,
        _deberta_v2_kwargs,
    ),
    "modernbert": (
        ModernBertConfig,
        ModernBertForSequenceClassification,
        ModernBertForQuestionAnswering,
        _modernbert_kwargs,
    ),
    "modernbert (biases, mean pooling)": (
        ModernBertConfig,
        ModernBertForSequenceClassification,
        ModernBertForQuestionAnswering,
        lambda **kw: _modernbert_kwargs(
            attention_bias=True,
            mlp_bias=True,
            norm_bias=True,
            classifier_bias=True,
            classifier_pooling="mean",
            **kw,
        ),
    ),
}


def inputs(seed=0, seq=13):
    """Token ids with padding (``PAD`` where the attention mask is 0, as tokenizers write it)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 99, (4, seq), generator=gen)
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 9:] = 0
    attention_mask[3, 2:] = 0
    return ids.masked_fill(attention_mask == 0, PAD), attention_mask


def logits(model, masks=None):
    ids, am = inputs()
    kwargs = {} if masks is None else {"masks": masks}
    out = model(input_ids=ids, attention_mask=am, **kwargs)
    if getattr(out, "start_logits", None) is not None:
        return torch.cat([out.start_logits, out.end_logits], dim=-1)
    return out.logits


def _save_vanilla(name, out):
    """``(name, dir of a vanilla classification checkpoint, dir of a QA one)`` of the family."""
    config_cls, seq_cls, qa_cls, kwargs = FAMILIES[name]
    torch.manual_seed(0)
    seq_dir, qa_dir = out / "seq", out / "qa"
    seq_cls(config_cls(**kwargs(num_labels=3))).save_pretrained(seq_dir)
    qa_cls(config_cls(**kwargs())).save_pretrained(qa_dir)
    return name, seq_dir, qa_dir


@pytest.fixture(params=sorted(FAMILIES))
def vanilla_dir(request, tmp_path):
    """``(family model_type, dir of a vanilla classification checkpoint, dir of a QA one)``."""
    return _save_vanilla(request.param, tmp_path)


def _pairs(vanilla_dir):
    """``(ours, transformers')`` models of both heads, loaded from the vanilla checkpoints."""
    name, seq_dir, qa_dir = vanilla_dir
    family = family_of(name.split()[0])
    _, seq_cls, qa_cls, _ = FAMILIES[name]
    return [
        (family.sequence_classification.from_pretrained(seq_dir).eval(), seq_cls, seq_dir),
        (family.question_answering.from_pretrained(qa_dir).eval(), qa_cls, qa_dir),
    ]


@torch.no_grad()
def test_unmasked_outputs_equal_transformers(vanilla_dir):
    for ours, theirs_cls, path in _pairs(vanilla_dir):
        theirs = theirs_cls.from_pretrained(path).eval()
        torch.testing.assert_close(logits(ours), logits(theirs), atol=1e-5, rtol=0)


@torch.no_grad()
def test_masked_equals_pruned_and_params_are_predicted(vanilla_dir):
    for ours, _, _ in _pairs(vanilla_dir):
        for seed in (0, 1):
            z = random_masks(ours.config, seed)
            small = ours.prune(z).eval()
            torch.testing.assert_close(logits(small), logits(ours, z), atol=1e-4, rtol=0)
            assert small.config.num_heads[1:3] == [0, 0] and small.config.intermediate_sizes[1] == 0
            predicted = CoFiMasks(ours.config).remaining_params(z)
            assert predicted == small.num_encoder_params()


@torch.no_grad()
def test_export_reloads_through_the_auto_classes(vanilla_dir, tmp_path):
    name = vanilla_dir[0].split()[0]
    autos = (AutoModelForSequenceClassification, AutoModelForQuestionAnswering)
    for (ours, _, _), auto in zip(_pairs(vanilla_dir), autos, strict=True):
        small = ours.prune(random_masks(ours.config, 3)).eval()
        out = tmp_path / f"export_{auto.__name__}"
        small.save_pretrained(out)
        saved = json.loads((out / "config.json").read_text())
        assert saved["model_type"] == family_of(name).config_class.model_type
        assert saved["num_heads"] == small.config.num_heads
        loaded = auto.from_pretrained(out).eval()
        assert type(loaded) is type(small)
        torch.testing.assert_close(logits(loaded), logits(small), atol=0, rtol=0)


_REMOTE_CODE = """
import sys, importlib.abc, traceback, torch
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "cofi_lightning":
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from transformers import AutoModelForSequenceClassification
for case in sys.argv[1:]:
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            case + "/export", trust_remote_code=True
        )
        assert "cofi_lightning" not in sys.modules, "package leaked in"
        ids, am = torch.load(case + "/inputs.pt")
        with torch.no_grad():
            got = model.eval()(input_ids=ids, attention_mask=am).logits
        torch.testing.assert_close(got, torch.load(case + "/expected.pt"), atol=0, rtol=0)
        print("remote-code OK", case, type(model).__name__)
    except Exception:
        print("remote-code FAILED", case, traceback.format_exc().replace(chr(10), " | "))
"""


@pytest.fixture(scope="module")
def remote_code_runs(tmp_path_factory):
    """Every family's pruned export loaded with ``trust_remote_code`` in one fresh process that
    cannot import the package (one process: each start spends seconds importing torch and
    transformers): ``{name: (printed line, class name of our pruned model)}``."""
    cases = {}
    for name in sorted(FAMILIES):
        case = tmp_path_factory.mktemp("remote_code")
        ours = _pairs(_save_vanilla(name, case))[0][0]
        small = ours.prune(random_masks(ours.config, 5)).eval()
        small.save_pretrained(case / "export")
        with torch.no_grad():
            torch.save(logits(small), case / "expected.pt")
        torch.save(inputs(), case / "inputs.pt")
        cases[name] = (case, type(small).__name__)
    env = {
        **os.environ,
        "HF_MODULES_CACHE": str(tmp_path_factory.mktemp("modules")),
        "HF_HUB_OFFLINE": "1",
    }
    args = [str(case) for case, _ in cases.values()]
    done = subprocess.run(
        [sys.executable, "-c", _REMOTE_CODE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line for line in done.stdout.splitlines() if line.startswith("remote-code ")]
    lines = {line.split()[2]: line for line in printed}
    return {name: (lines.get(str(case), ""), cls) for name, (case, cls) in cases.items()}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_export_loads_as_remote_code_without_the_package(remote_code_runs, name):
    line, cls = remote_code_runs[name]
    assert line.startswith("remote-code OK ") and line.endswith(f" {cls}"), line[-3000:]


@torch.no_grad()
def test_the_uniform_baseline_scores_every_family(vanilla_dir):
    from cofi_lightning.core.uniform import uniform_masks

    ours = _pairs(vanilla_dir)[0][0]
    masks = CoFiMasks(ours.config)
    z, sparsity = uniform_masks(ours, masks, 0.5)
    assert abs(sparsity - 0.5) < 0.05
    small = ours.prune(z)
    assert len(set(small.config.num_heads)) == 1 and len(set(small.config.intermediate_sizes)) == 1
    assert masks.remaining_params(z) == small.num_encoder_params()


def test_a_checkpoint_of_another_family_is_refused_naming_both(vanilla_dir):
    _, seq_dir, _ = vanilla_dir
    from cofi_lightning.modeling import CoFiBertForSequenceClassification

    with pytest.raises(ValueError, match="CoFiBertForSequenceClassification loads model_type"):
        CoFiBertForSequenceClassification.from_pretrained(seq_dir)


def test_an_unsupported_family_lists_the_supported_ones():
    with pytest.raises(UnsupportedModelError, match=r"supported: BERT \(bert\), RoBERTa"):
        family_of("gpt2")


def test_one_task_model_implementation_serves_every_family():
    """Every family's task models run BERT's forward, loss and head surgery; a family supplies
    only its modules (``add_head``), how its head reads the encoder (``logits``) and names."""
    for family in modeling.FAMILIES:
        for task, base in (
            (family.sequence_classification, CoFiBertForSequenceClassification),
            (family.question_answering, CoFiBertForQuestionAnswering),
        ):
            assert issubclass(task, base), task
            for shared in ("__init__", "forward", "prune_head_"):
                assert getattr(task, shared) is getattr(base, shared), (task, shared)
