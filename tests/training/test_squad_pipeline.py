"""The pipeline on SQuAD: QA head, distillation over start/end logits, EM/F1 through the data
module's post-processing, on a tiny random BERT and a handful of questions."""

from __future__ import annotations

import json

from transformers import AutoModelForQuestionAnswering

from cofi_lightning.run.pipeline import train


def test_squad_pipeline_end_to_end(compose_train, tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(run_dir) + [
        "task=squad",
        "task.datamodule.max_seq_length=128",
        "task.datamodule.doc_stride=32",
        "task.datamodule.limit_train_samples=24",
        "task.datamodule.limit_eval_samples=8",
        "pruning.epochs=1",
    ]
    results = train(compose_train(overrides))
    assert results["task"] == "squad" and results["main_metric"] == "f1"
    assert set(results["pruned"]) == {"exact_match", "f1"}
    assert set(results["teacher"]) == {"exact_match", "f1"}
    model = AutoModelForQuestionAnswering.from_pretrained(results["export_dir"])
    assert model.num_encoder_params() == results["params"]["pruned"]
    assert json.loads((run_dir / "results.json").read_text())["task"] == "squad"
