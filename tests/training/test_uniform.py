"""The uniform-width baseline: the same width in every layer, the largest-norm units, at the
target sparsity, and a pipeline run that trains only the finetune stage."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertConfig

from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.core.uniform import uniform_masks
from cofi_lightning.modeling import CoFiBertConfig, CoFiBertForSequenceClassification

from tiny_bert import tiny_bert_kwargs


def _model():
    torch.manual_seed(0)
    cfg = CoFiBertConfig.from_bert_config(
        BertConfig(**tiny_bert_kwargs(num_hidden_layers=3, intermediate_size=64)), num_labels=2
    )
    return CoFiBertForSequenceClassification(cfg)


@pytest.mark.parametrize("target", [0.3, 0.6, 0.8])
def test_uniform_structure_is_even_on_target_and_keeps_the_largest_units(target):
    model = _model()
    with torch.no_grad():  # make head 2 of layer 1 and FFN dim 5 of layer 0 stand out
        model.bert.encoder.layer[1].attention.output.dense.weight[:, 16:24] *= 10
        model.bert.encoder.layer[0].intermediate.dense.weight[5] *= 10
    gates = CoFiMasks(model.config)
    z, sparsity = uniform_masks(model, gates, target)
    kept_heads = (z.head != 0).sum(dim=1)
    kept_ffn = (z.intermediate != 0).sum(dim=1)
    assert len(set(kept_heads.tolist())) == 1 and len(set(kept_ffn.tolist())) == 1
    assert (z.hidden != 0).all() and (z.head_layer != 0).all() and (z.mlp != 0).all()
    assert z.head[1, 2] == 1 and z.intermediate[0, 5] == 1
    assert sparsity == pytest.approx(gates.sparsity(z))
    assert abs(sparsity - target) < 0.05
    pruned = model.prune(z)  # the exported model's real count says the same
    full = model.num_encoder_params()
    assert 1 - pruned.num_encoder_params() / full == pytest.approx(sparsity)


def test_pipeline_uniform_method(compose_train, tiny_overrides, tmp_path):
    from cofi_lightning.run.pipeline import train

    run_dir = tmp_path / "run"
    cfg = compose_train(tiny_overrides(run_dir) + ["pruning.method=uniform"])
    results = train(cfg)
    meta = json.loads((run_dir / "prune" / "best" / "meta.json").read_text())
    assert meta["method"] == "uniform" and meta["step"] == 0
    assert not (run_dir / "prune" / "checkpoints").exists()  # nothing was trained
    assert results["method"] == "uniform"
    assert results["sparsity"] == pytest.approx(meta["deterministic_sparsity"])
    heads = results["structure"]["num_heads"]
    assert len(set(heads)) == 1
