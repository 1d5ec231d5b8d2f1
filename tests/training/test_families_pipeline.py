"""Every stage of the pipeline on a non-BERT family: the family is read from the checkpoint's
``model_type``, and a checkpoint of an unsupported family is refused at the door."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForSequenceClassification

from cofi_lightning.modeling import family_of
from cofi_lightning.run.pipeline import train
from cofi_lightning.run.preflight import ModelSourceError

from runs import tiny_run_overrides


@pytest.mark.parametrize("family", ["roberta", "xlm-roberta", "deberta-v2", "modernbert"])
def test_a_family_runs_all_four_stages(compose_train, family, request, feature_cache, tmp_path):
    model_dir = request.getfixturevalue(f"tiny_{family.split('-')[0]}_dir")
    run_dir = tmp_path / "run"
    overrides = tiny_run_overrides(model_dir, run_dir, feature_cache)
    results = train(compose_train(overrides))
    export = AutoModelForSequenceClassification.from_pretrained(results["export_dir"])
    cofi_type = family_of(family).config_class.model_type
    assert type(export) is family_of(family).sequence_classification
    saved = json.loads((run_dir / "pruned_model" / "config.json").read_text())
    assert saved["model_type"] == cofi_type
    assert results["params"]["pruned"] == export.num_encoder_params()
    assert 0 < results["sparsity"] < 1
    teacher = json.loads((run_dir / "teacher" / "model" / "config.json").read_text())
    assert teacher["model_type"] == cofi_type


def test_an_unsupported_family_is_refused_before_anything_runs(compose_train, tmp_path):
    from transformers import GPT2Config

    model = tmp_path / "gpt2"
    GPT2Config(n_layer=1, n_embd=32, n_head=2).save_pretrained(model)
    run_dir = tmp_path / "run"
    overrides = ["experiment=demo", f"model.pretrained={model}", f"run_dir={run_dir}"]
    with pytest.raises(ModelSourceError, match=r"model.pretrained=.*supported: BERT \(bert\)"):
        train(compose_train(overrides))
    assert not run_dir.exists()


def test_the_latency_constraint_refuses_a_family_it_cannot_profile(
    compose_train, tiny_deberta_dir, feature_cache, tmp_path
):
    from cofi_lightning.config import ConfigError

    overrides = tiny_run_overrides(tiny_deberta_dir, tmp_path / "run", feature_cache)
    overrides += ["pruning.constraint=latency", "pruning.target_speedup=2"]
    with pytest.raises(ConfigError, match="DeBERTa-v2/v3 is not supported yet"):
        train(compose_train(overrides))
