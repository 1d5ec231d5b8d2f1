"""Errors at the door: a model, tokenizer or teacher setting that names nothing usable, or a teacher
that cannot be distilled into the student, stops the run at start, naming the key."""

from __future__ import annotations

import json

import pytest
import torch

from cofi_lightning.config import load_config
from cofi_lightning.run.pipeline import train
from cofi_lightning.run.preflight import ModelSourceError, check_source, check_teacher_fits


def test_neither_directory_nor_hub_name(tmp_path):
    with pytest.raises(
        ModelSourceError, match="model.pretrained=not//valid is neither an existing"
    ):
        check_source("model.pretrained", "not//valid")
    with pytest.raises(ModelSourceError, match=r"distill.teacher=\./runs/missing is neither"):
        check_source("distill.teacher", "./runs/missing")


def test_offline_hub_name_without_local_copy(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(ModelSourceError, match="HF_HUB_OFFLINE is set and no local copy was found"):
        check_source("model.pretrained", "org/some-bert")


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelSourceError, match="is a directory without config.json"):
        check_source("distill.teacher", str(tmp_path))
    assert check_source("model.tokenizer", str(tmp_path), need=None) is None  # tokenizers vary


def test_pruned_or_mismatched_teacher_names_both_shapes(make_student, tmp_path):
    from cofi_lightning.core.masks import Masks

    student = make_student().config.to_dict()
    model = make_student()
    pruned = model.prune(Masks(head=torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]]))).config.to_dict()
    with pytest.raises(ModelSourceError, match=r"pruned model .*heads per layer \[2, 4\]"):
        check_teacher_fits(student, pruned, "dynamic")
    wide = {**student, "hidden_size": 64}
    with pytest.raises(ModelSourceError, match="teacher hidden 64 x 2 layers, student hidden 32"):
        check_teacher_fits(student, wide, "dynamic")
    deep = {**student, "num_hidden_layers": 4, "num_heads": [4] * 4, "intermediate_sizes": [48] * 4}
    check_teacher_fits(student, deep, "dynamic")  # dynamic mapping handles any depth
    with pytest.raises(ModelSourceError, match="fixed needs a student at least as deep"):
        check_teacher_fits(student, deep, "fixed")
    check_teacher_fits(student, student, "fixed")


def test_pruned_export_as_teacher_fails_before_the_run_starts(
    compose_train, tiny_overrides, tiny_bert_dir, make_student, tmp_path
):
    from cofi_lightning.core.masks import Masks

    model = make_student(vocab_size=30522, max_position_embeddings=128)
    export = tmp_path / "export"
    model.prune(
        Masks(intermediate=torch.ones(2, 48).index_fill_(1, torch.arange(8), 0))
    ).save_pretrained(export)
    assert json.loads((export / "config.json").read_text())["intermediate_sizes"] == [40, 40]
    run_dir = tmp_path / "run"
    cfg = load_config(compose_train([*tiny_overrides(run_dir), f"distill.teacher={export}"]))
    with pytest.raises(ModelSourceError, match=r"distill.teacher is a pruned model .*\[40, 40\]"):
        train(cfg)
    assert not run_dir.exists()  # nothing was written


def test_cli_prints_a_user_error_once_without_traceback(train_cli, tmp_path):
    run_dir = tmp_path / "run"
    proc = train_cli("model.pretrained=not//valid", f"run_dir={run_dir}", check=False)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert out.count("model.pretrained=not//valid is neither") == 1
    assert "Traceback" not in out
    # run_dir holds Hydra's files and the log, with the full traceback for whoever needs it
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    log = (run_dir / "train.log").read_text()
    assert "Traceback" in log and "model.pretrained=not//valid is neither" in log
