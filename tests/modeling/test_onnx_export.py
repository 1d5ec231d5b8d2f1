"""ONNX export of every family's pruned model (uneven heads, a narrowed and a removed FFN, a removed
attention, reduced hidden size), both heads: ONNX Runtime's fp32 outputs equal torch's at two
batch / length shapes (the axes are dynamic, not the traced sample's)."""

from __future__ import annotations

import pytest
import torch
from test_families import FAMILIES
from test_pruning import random_masks

from cofi_lightning.deploy.onnx_export import export_onnx
from cofi_lightning.deploy.runtime import OrtModel
from cofi_lightning.modeling import CoFiBertConfig, family_of
from cofi_lightning.training.parts import logits

from tiny_bert import tiny_bert_kwargs

pytest.importorskip("onnxruntime", reason="the deploy extra is not installed")

FAMILY_NAMES = ("bert", "roberta", "deberta-v2", "modernbert")
# Each family and each head in the default suite (one export takes seconds); the other four
# combinations in the slow suite.
QUICK = (("bert", False), ("roberta", True), ("deberta-v2", False), ("modernbert", True))
CASES = [
    pytest.param(name, qa, marks=() if (name, qa) in QUICK else pytest.mark.slow)
    for name in FAMILY_NAMES
    for qa in (False, True)
]


def _config(name: str, num_labels: int):
    if name == "bert":
        return CoFiBertConfig(**tiny_bert_kwargs(num_hidden_layers=4, num_labels=num_labels))
    vanilla_cls, _, _, kwargs = FAMILIES[name]
    family = family_of(name)
    return family.config_class.from_pretrained_config(vanilla_cls(**kwargs(num_labels=num_labels)))


def _inputs(batch: int, seq: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 99, (batch, seq), generator=gen)
    attention_mask = torch.ones_like(ids)
    attention_mask[0, seq // 2 :] = 0  # a padded example
    ids = ids.masked_fill(attention_mask == 0, 0)
    return {"input_ids": ids, "attention_mask": attention_mask, "token_type_ids": ids * 0}


def _cat(out) -> torch.Tensor:
    out = logits(out)
    return torch.cat(out, dim=-1) if isinstance(out, tuple) else out


@pytest.mark.parametrize(("name", "qa"), CASES)
@torch.no_grad()
def test_onnx_runtime_equals_torch_on_a_pruned_model(name, qa, tmp_path):
    family = family_of(name)
    torch.manual_seed(0)
    model = family.model_class(qa)(_config(name, num_labels=3)).eval()
    pruned = model.prune(random_masks(model.config, seed=0)).eval()
    heads, ffn = pruned.config.num_heads, pruned.config.intermediate_sizes
    full_heads, full_ffn = model.config.num_attention_heads, model.config.intermediate_size
    assert 0 in heads and any(0 < h < full_heads for h in heads)  # removed, uneven
    assert 0 in ffn and any(0 < f < full_ffn for f in ffn)  # removed, narrowed
    assert pruned.config.hidden_size < model.config.hidden_size
    path = export_onnx(pruned, tmp_path / f"{name}_{qa}.onnx")
    ort_model = OrtModel(path, threads=1)
    for batch, seq, seed in ((2, 8, 0), (5, 29, 1)):  # the traced sample is 2 x 8
        x = _inputs(batch, seq, seed)
        expected, got = _cat(pruned(**x)), _cat(ort_model(**x))
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@torch.no_grad()
def test_the_sessions_graph_keeps_add_and_layernorm_unfused(tmp_path):
    """ONNX Runtime would fuse each residual add and LayerNorm into its slow CPU
    SkipLayerNormalization; our sessions turn that fusion off by its name (an unknown name would
    be ignored silently, so the optimized graph is read back)."""
    import onnx
    import onnxruntime as ort

    from cofi_lightning.deploy.runtime import SLOW_FUSIONS, ort_session

    torch.manual_seed(0)
    model = family_of("bert").model_class(False)(_config("bert", num_labels=2)).eval()
    path = export_onnx(model, tmp_path / "model.onnx")
    ours, default = tmp_path / "ours.onnx", tmp_path / "default.onnx"
    ort_session(path, threads=1, optimized_path=str(ours))
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(default)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def ops(graph_path):
        return {node.op_type for node in onnx.load(str(graph_path)).graph.node}

    assert SLOW_FUSIONS == ("SkipLayerNormFusion",)
    assert "SkipLayerNormalization" in ops(default)
    assert "SkipLayerNormalization" not in ops(ours) and "LayerNormalization" in ops(ours)
