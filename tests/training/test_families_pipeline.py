"""Every stage of the pipeline on a non-BERT family: the family is read from the checkpoint's
``model_type``, and a checkpoint of an unsupported family is refused at the door."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForSequenceClassification

from cofi_lightning.modeling import CoFiRobertaForSequenceClassification
from cofi_lightning.pipeline import train
from cofi_lightning.preflight import ModelSourceError
from runs import tiny_run_overrides


def test_roberta_runs_all_four_stages(compose_train, tiny_roberta_dir, feature_cache, tmp_path):
    run_dir = tmp_path / "run"
    overrides = tiny_run_overrides(tiny_roberta_dir, run_dir, feature_cache)
    results = train(compose_train(overrides))
    export = AutoModelForSequenceClassification.from_pretrained(results["export_dir"])
    assert type(export) is CoFiRobertaForSequenceClassification
    assert json.loads((run_dir / "pruned_model" / "config.json").read_text())["model_type"] == (
        "cofi_roberta"
    )
    assert results["params"]["pruned"] == export.num_encoder_params()
    assert 0 < results["sparsity"] < 1
    teacher = json.loads((run_dir / "teacher" / "model" / "config.json").read_text())
    assert teacher["model_type"] == "cofi_roberta"


def test_an_unsupported_family_is_refused_before_anything_runs(compose_train, tmp_path):
    from transformers import GPT2Config

    model = tmp_path / "gpt2"
    GPT2Config(n_layer=1, n_embd=32, n_head=2).save_pretrained(model)
    run_dir = tmp_path / "run"
    overrides = ["experiment=demo", f"model.pretrained={model}", f"run_dir={run_dir}"]
    with pytest.raises(ModelSourceError, match=r"model.pretrained=.*supported: BERT \(bert\)"):
        train(compose_train(overrides))
    assert not run_dir.exists()
