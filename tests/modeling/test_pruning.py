"""Physical pruning is exact: masked model == pruned model, predicted == real parameter count, and
the
exported checkpoint reloads through the Auto classes with identical outputs."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

from cofi_lightning.core.masks import CoFiMasks, Masks
from cofi_lightning.modeling import (
    CoFiBertConfig,
    CoFiBertForQuestionAnswering,
    CoFiBertForSequenceClassification,
)
from cofi_lightning.modeling.pruning import fold, head_rows, linear_part
from cofi_lightning.modeling.structure import Structure

from tiny_bert import tiny_bert_kwargs

MODELS = [CoFiBertForSequenceClassification, CoFiBertForQuestionAnswering]


def outputs(model, masks=None, seed=0, seq=13):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 99, (4, seq), generator=gen)
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 9:] = 0
    attention_mask[3, 2:] = 0
    out = model(input_ids=ids, attention_mask=attention_mask, masks=masks)
    if hasattr(out, "start_logits") and out.start_logits is not None:
        return torch.cat([out.start_logits, out.end_logits], dim=-1)
    return out.logits


def random_masks(cfg, seed) -> Masks:
    """Sampled soft masks; whole heads, an attention, an FFN and hidden dims removed."""
    torch.manual_seed(seed)
    masks = CoFiMasks(cfg)
    with torch.no_grad():
        for g in masks.gates.values():
            g.log_alpha.uniform_(-1.0, 3.0)
    z = masks.sample().detach()
    head, inter = z.head.clone(), z.intermediate.clone()
    head_layer, mlp, hidden = z.head_layer.clone(), z.mlp.clone(), z.hidden.clone()
    head[0, :2] = 0  # two heads gone
    head[1] = 0  # every head of layer 1 gone (layer mask still on)
    head_layer[2] = 0  # attention of layer 2 gone
    mlp[1] = 0  # FFN of layer 1 gone
    inter[3] = 0  # every FFN dim of layer 3 gone (layer mask still on)
    hidden[::5] = 0  # some hidden dims gone
    return Masks(hidden=hidden, head=head, head_layer=head_layer, intermediate=inter, mlp=mlp)


@pytest.fixture
def cfg():
    return CoFiBertConfig(**tiny_bert_kwargs(num_hidden_layers=4, num_labels=3))


@pytest.mark.parametrize("model_cls", MODELS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_equals_pruned_with_soft_masks(cfg, model_cls, seed):
    model = model_cls(cfg).eval()
    z = random_masks(cfg, seed)
    small = model.prune(z).eval()
    torch.testing.assert_close(outputs(small), outputs(model, z), atol=1e-4, rtol=0)
    assert small.config.num_heads == [2, 0, 0, int((z.head[3] != 0).sum())]
    assert small.config.intermediate_sizes[1] == 0 and small.config.intermediate_sizes[3] == 0
    assert small.config.hidden_size == int((z.hidden != 0).sum())
    assert small.bert.encoder.layer[1].attention is None
    assert small.bert.encoder.layer[1].intermediate is None


@pytest.mark.parametrize("model_cls", MODELS)
def test_inference_equals_the_autograd_path_and_keeps_every_state(cfg, model_cls):
    """Under no_grad a compact model computes what it computes with gradients on, and no layer
    overwrites a tensor it was given: the embeddings' output and every returned hidden state
    stay as they were returned."""
    small = model_cls(cfg).prune(random_masks(cfg, 0)).eval()
    seen = []
    small.bert.embeddings.register_forward_hook(lambda m, i, out: seen.append((out, out.clone())))
    reference = outputs(small)
    with torch.no_grad():
        torch.testing.assert_close(outputs(small), reference, atol=1e-5, rtol=0)
        for embedded, copy in seen:
            torch.testing.assert_close(embedded, copy, atol=0, rtol=0)
        ids = torch.randint(1, 99, (2, 9), generator=torch.Generator().manual_seed(3))
        states = small.bert(input_ids=ids, output_hidden_states=True)[2]
        kept = [s.clone() for s in states]
    grad_states = small.bert(input_ids=ids, output_hidden_states=True)[2]
    for state, snapshot, grad_state in zip(states, kept, grad_states, strict=True):
        torch.testing.assert_close(state, snapshot, atol=0, rtol=0)
        torch.testing.assert_close(state, grad_state, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_cls", MODELS)
def test_predicted_params_equal_real_params(cfg, model_cls):
    model = model_cls(cfg)
    masks = CoFiMasks(cfg)
    for seed in range(5):
        z = random_masks(cfg, seed)
        small = model.prune(z)
        real = sum(p.numel() for p in small.bert.encoder.parameters())
        assert small.num_encoder_params() == real
        assert masks.remaining_params(z) == real
        assert masks.sparsity(z) == 1.0 - real / model.num_encoder_params()  # the export's
        c = small.config
        assert Structure.from_config(c).params(8) == real
        assert masks.structure(z) == Structure.from_config(c)


def test_deterministic_masks_on_minilm(minilm_dir):
    model = CoFiBertForSequenceClassification.from_pretrained(minilm_dir, num_labels=2).eval()
    masks = CoFiMasks(model.config)
    torch.manual_seed(0)
    with torch.no_grad():
        for g in masks.gates.values():
            g.log_alpha.uniform_(-2.0, 3.0)
    z = masks.deterministic()
    small = model.prune(z).eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (4, 32), generator=gen)
    am = torch.ones_like(ids)
    am[0, 20:] = 0
    ref = model(input_ids=ids, attention_mask=am, masks=z).logits
    torch.testing.assert_close(
        small(input_ids=ids, attention_mask=am).logits, ref, atol=1e-4, rtol=0
    )
    assert small.num_encoder_params() == masks.remaining_params(z) < model.num_encoder_params()


def test_fold_is_the_masked_and_the_pruned_projection():
    """``fold`` keeps rows and columns, scales columns by the input units' masks and rows (and
    the bias) by the output masks, differentiably; ``linear_part`` is a Linear holding it."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 4)
    rows, cols = torch.tensor([0, 2, 3]), head_rows(torch.tensor([0, 2]), 2)  # heads of size 2
    assert cols.tolist() == [0, 1, 4, 5]
    col_z = torch.tensor([0.5, 0.5, 2.0, 2.0], requires_grad=True)
    row_z = torch.tensor([1.0, 0.25, 3.0], requires_grad=True)
    weight, bias = fold(linear, rows, cols, col_z, row_z)
    want_w = linear.weight[rows][:, cols] * col_z * row_z[:, None]
    torch.testing.assert_close(weight, want_w, atol=0, rtol=0)
    torch.testing.assert_close(bias, linear.bias[rows] * row_z, atol=0, rtol=0)
    (weight.sum() + bias.sum()).backward()
    assert (col_z.grad != 0).all() and (row_z.grad != 0).all()  # the masks learn through it
    x = torch.randn(5, 4)
    part = linear_part(linear, rows, cols, col_z.detach(), row_z.detach())
    with torch.no_grad():
        torch.testing.assert_close(part(x), x @ weight.t() + bias, atol=1e-6, rtol=0)


def test_subset_of_units(cfg):
    model = CoFiBertForSequenceClassification(cfg).eval()
    z = random_masks(cfg, 0)
    only_heads = Masks(head=z.head, head_layer=z.head_layer)
    small = model.prune(only_heads).eval()
    torch.testing.assert_close(outputs(small), outputs(model, only_heads), atol=1e-4, rtol=0)
    assert small.config.hidden_size == cfg.hidden_size
    assert small.config.intermediate_sizes == cfg.intermediate_sizes


def test_bad_masks_rejected(cfg):
    model = CoFiBertForSequenceClassification(cfg)
    with pytest.raises(ValueError, match="masks.head has shape"):
        model.prune(Masks(head=torch.ones(4, 3)))
    with pytest.raises(ValueError, match="every hidden dimension"):
        model.prune(Masks(hidden=torch.zeros(cfg.hidden_size)))


@pytest.mark.parametrize(
    ("model_cls", "auto_cls"),
    [
        (CoFiBertForSequenceClassification, AutoModelForSequenceClassification),
        (CoFiBertForQuestionAnswering, AutoModelForQuestionAnswering),
    ],
)
def test_export_reloads_through_auto_classes(tmp_path, cfg, model_cls, auto_cls):
    small = model_cls(cfg).prune(random_masks(cfg, 3)).eval()
    small.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "cofi_bert"
    assert saved["num_heads"] == small.config.num_heads
    assert saved["intermediate_sizes"] == small.config.intermediate_sizes
    assert saved["hidden_size"] == small.config.hidden_size
    loaded = auto_cls.from_pretrained(tmp_path).eval()
    assert type(loaded) is model_cls
    torch.testing.assert_close(outputs(loaded), outputs(small), atol=0, rtol=0)
    assert loaded.num_encoder_params() == small.num_encoder_params()


def test_pruning_a_pruned_model_is_consistent(cfg):
    """Masks over the hidden dim and layers also apply to an already compact (ragged) model."""
    model = CoFiBertForSequenceClassification(cfg).eval()
    small = model.prune(random_masks(cfg, 4)).eval()
    h = small.config.hidden_size
    hidden = torch.ones(h)
    hidden[:3] = 0.5
    hidden[3] = 0
    z = Masks(hidden=hidden, mlp=torch.tensor([1.0, 1.0, 0.0, 1.0]))
    smaller = small.prune(z).eval()
    torch.testing.assert_close(outputs(smaller), outputs(small, z), atol=1e-4, rtol=0)
    assert smaller.config.hidden_size == h - 1


def test_export_loads_as_remote_code_without_the_package(tmp_path, cfg):
    """``trust_remote_code=True`` loads an export where cofi_lightning cannot be imported."""
    small = CoFiBertForSequenceClassification(cfg).prune(random_masks(cfg, 5)).eval()
    export = tmp_path / "export"
    small.save_pretrained(export)
    torch.save(outputs(small), tmp_path / "expected.pt")
    script = f"""
import sys, importlib.abc, torch
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "cofi_lightning":
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from transformers import AutoModelForSequenceClassification
model = AutoModelForSequenceClassification.from_pretrained({str(export)!r}, trust_remote_code=True)
assert "cofi_lightning" not in sys.modules, "package leaked in"
gen = torch.Generator().manual_seed(0)
ids = torch.randint(1, 99, (4, 13), generator=gen)
am = torch.ones_like(ids); am[1, 9:] = 0; am[3, 2:] = 0
expected = torch.load({str(tmp_path / "expected.pt")!r})
with torch.no_grad():
    got = model.eval()(input_ids=ids, attention_mask=am).logits
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    for dtype, tol in ((torch.bfloat16, 0.05), (torch.float16, 0.01)):  # the standard recipe
        with torch.autocast("cpu", dtype=dtype):
            low = model(input_ids=ids, attention_mask=am).logits
        assert (low.float() - expected).abs().max() <= tol * expected.abs().max(), dtype
print("remote-code OK", type(model).__module__)
"""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "remote-code OK transformers_modules" in done.stdout
