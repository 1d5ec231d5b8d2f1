"""Errors at the door: a model, tokenizer or teacher setting that names nothing usable, or a teacher
that cannot be distilled into the student, stops the run at start, naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cofi_lightning.config import ConfigError, load_config
from cofi_lightning.data import DataError
from cofi_lightning.run.pipeline import train
from cofi_lightning.run.preflight import (
    ModelSourceError,
    check_slurm_tasks,
    check_source,
    check_teacher_fits,
)


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


# --- everything a run needs is checked before the first stage starts ------------------------------


def _refused_at_the_door(compose_train, overrides, run_dir, error, match):
    """``train`` raises ``error`` (one line matching ``match``) and leaves nothing behind: no run
    directory, so no stage trained and no DONE.json."""
    with pytest.raises(error, match=match) as caught:
        train(compose_train(overrides))
    assert "\n" not in str(caught.value)
    assert not run_dir.exists()
    return str(caught.value)


def _tiny_table(hidden=32, layers=2, heads=4, width=48, fixed=0.1):
    """A latency table of the tiny BERT's shape: 1 ms per head, 0.1 ms per FFN dim at full
    hidden size, ``fixed`` ms outside the layers."""
    from cofi_lightning.latency import LatencyTable

    hiddens, head_grid, widths = [8, hidden], list(range(heads + 1)), [0, width // 2, width]
    meta = {
        "num_layers": layers,
        "num_heads": heads,
        "intermediate_size": width,
        "hidden_size": hidden,
        "device": "cpu",
        "device_name": "synthetic",
    }
    scale = [h / hidden for h in hiddens]
    return LatencyTable(
        meta,
        hiddens,
        head_grid,
        widths,
        [[s * n for n in head_grid] for s in scale],
        [[s * 0.1 * w for w in widths] for s in scale],
        [fixed * s for s in scale],
        0.0,
    )


def test_a_path_too_long_for_its_epochs_is_refused_before_the_teacher(
    compose_train, tiny_overrides, tmp_path
):
    """The path's default dwell is one epoch: 48 examples / batch 8 = 6 steps per epoch, so
    pre-pruning 1 + ramps [4, 4] + dwell 6 = 15 steps do not fit a 1-epoch (6-step) stage."""
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), "pruning.targets=[0.2,0.4]", "pruning.epochs=1"]
    message = _refused_at_the_door(
        compose_train, overrides, run_dir, ConfigError, r"pruning.targets: the path needs 15"
    )
    assert "prune stage has 6 (pruning.epochs=1 x 6 steps: 48 training examples" in message


def test_a_warm_up_longer_than_the_prune_stage_is_refused_before_the_teacher(
    compose_train, tiny_overrides, tmp_path
):
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), "pruning.epochs=1", "pruning.lagrangian_warmup_steps=8"]
    _refused_at_the_door(
        compose_train, overrides, run_dir, ConfigError, r"pruning.lagrangian_warmup: .* need 9"
    )


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("pruning.epochs=0", "pruning.epochs is 0, so the prune stage would train nothing"),
        ("pruning.max_steps=0", "pruning.max_steps is 0, so the prune stage"),
        ("pruning.finetune.epochs=0", "pruning.finetune.epochs is 0, so the finetune stage"),
        ("distill.teacher_training.max_steps=0", "distill.teacher_training.max_steps is 0"),
        ("trainer.limit_train_batches=0", "trainer.limit_train_batches is 0"),
        ("pruning.max_steps=-2", "pruning.max_steps must be -1"),
    ],
)
def test_a_stage_that_would_train_nothing_is_refused(
    compose_train, tiny_overrides, tmp_path, override, match
):
    """``pruning.epochs=0`` used to export the untrained masks' structure as a pruned model."""
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), override, "pruning.max_steps=-1"]
    if override.startswith("pruning.max_steps"):
        overrides = [*tiny_overrides(run_dir), override]
    _refused_at_the_door(compose_train, overrides, run_dir, ConfigError, match)


def test_a_stage_outside_stages_or_untrained_may_have_no_length(compose_train, tiny_overrides):
    base = tiny_overrides("unused")
    given = load_config(
        compose_train([*base, "distill.teacher=x/y", "distill.teacher_training.epochs=0"])
    )
    assert given.distill.teacher_training.epochs == 0  # a given teacher is not trained
    uniform = load_config(compose_train([*base, "pruning.method=uniform", "pruning.epochs=0"]))
    assert uniform.pruning.epochs == 0  # the uniform baseline trains nothing in the prune stage
    skipped = load_config(compose_train([*base, "stages=[teacher]", "pruning.finetune.epochs=0"]))
    assert skipped.pruning.finetune.epochs == 0


def test_batch_size_zero_is_a_config_error_naming_the_key(compose_train, tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), "task.datamodule.batch_size=0"]
    _refused_at_the_door(
        compose_train, overrides, run_dir, ConfigError, r"task.datamodule.batch_size must be"
    )


@pytest.mark.parametrize("content", ["{not json", "other model"])
def test_a_corrupt_or_foreign_latency_table_is_refused_before_the_teacher(
    compose_train, tiny_overrides, tmp_path, content
):
    table = tmp_path / "table.json"
    if content == "other model":
        _tiny_table(hidden=64).save(table)
        match = r"pruning.latency_table .* was profiled for .*'hidden_size': 64"
    else:
        table.write_text(content)
        match = r"pruning.latency_table .*not a latency table"
    run_dir = tmp_path / "run"
    overrides = [
        *tiny_overrides(run_dir),
        "pruning.constraint=latency",
        "pruning.target_speedup=1.5",
        f"pruning.latency_table={table}",
    ]
    _refused_at_the_door(compose_train, overrides, run_dir, ConfigError, match)


def test_a_speedup_beyond_the_tables_fixed_cost_is_refused_before_the_teacher(
    compose_train, tiny_overrides, tmp_path
):
    """Layers cost 2 x (4 + 4.8) = 17.6 ms, the fixed part 20 ms: at most (20 + 17.6) / 5 (every
    layer gone at hidden 8, where the fixed part is 5 ms) = 7.52x; 10x can never be reached."""
    table = tmp_path / "table.json"
    _tiny_table(fixed=20.0).save(table)
    run_dir = tmp_path / "run"
    overrides = [
        *tiny_overrides(run_dir),
        "pruning.constraint=latency",
        "pruning.target_speedup=10",
        f"pruning.latency_table={table}",
    ]
    _refused_at_the_door(
        compose_train, overrides, run_dir, ConfigError, r"target_speedup=10 .* at most 7.52x"
    )


def test_the_latency_constraint_on_deberta_is_refused_before_the_teacher(
    compose_train, tiny_deberta_dir, feature_cache, tmp_path
):
    from runs import tiny_run_overrides

    run_dir = tmp_path / "run"
    overrides = tiny_run_overrides(tiny_deberta_dir, run_dir, feature_cache)
    overrides += ["pruning.constraint=latency", "pruning.target_speedup=2"]
    _refused_at_the_door(
        compose_train, overrides, run_dir, ConfigError, "DeBERTa-v2/v3 is not supported yet"
    )


def test_an_invalid_hub_repository_is_refused_before_the_teacher(
    compose_train, tiny_overrides, tmp_path
):
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), "export.push_to_hub=bad//repo"]
    _refused_at_the_door(
        compose_train, overrides, run_dir, ConfigError, r"export.push_to_hub=bad//repo: 'bad//repo'"
    )


def test_a_teacher_without_its_task_head_is_refused(
    compose_train, tiny_overrides, tiny_bert_dir, tmp_path
):
    """A pretrained encoder (no classifier weights) as ``distill.teacher``: its head would be
    initialised at random and the teacher would score at chance (52.3 on SST-2)."""
    import shutil

    from transformers import BertModel

    encoder = tmp_path / "encoder"
    BertModel.from_pretrained(tiny_bert_dir).save_pretrained(encoder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(tiny_bert_dir / name, encoder / name)
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), f"distill.teacher={encoder}"]
    _refused_at_the_door(
        compose_train,
        overrides,
        run_dir,
        ModelSourceError,
        r"not fine-tuned for sst2: .*classifier",
    )


def test_the_task_head_is_read_from_the_checkpoint_header(tiny_bert_dir):
    from cofi_lightning.run.preflight import check_teacher_head

    config = json.loads((tiny_bert_dir / "config.json").read_text())
    check_teacher_head(str(tiny_bert_dir), config, "sst2")  # a classifier: accepted
    with pytest.raises(ModelSourceError, match=r"not fine-tuned for squad: .*qa_outputs"):
        check_teacher_head(str(tiny_bert_dir), config, "squad")  # no span head


def _no_shared_env(tmp_path) -> dict[str, str]:
    """The environment of a machine without ``../shared``, whose hub endpoint refuses
    connections (as without network) and whose Hugging Face caches are empty."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "COFI_"))}
    env.update(
        COFI_SHARED_DIR=str(tmp_path / "no_shared"),
        HF_HUB_CACHE=str(tmp_path / "hub_cache"),
        HF_DATASETS_CACHE=str(tmp_path / "datasets_cache"),
        HF_ENDPOINT="http://127.0.0.1:9",
        WANDB_MODE="offline",
        OMP_NUM_THREADS="1",
    )
    return env


def _train_py(tmp_path, *args: str) -> tuple[str, int, float]:
    """``python train.py experiment=demo logger=csv <args>`` in that environment: its console
    output, exit status and wall seconds."""
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, str(repo / "train.py"), "experiment=demo", "logger=csv", *args]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=repo, env=_no_shared_env(tmp_path), capture_output=True, text=True
    )
    return (proc.stdout + proc.stderr).strip(), proc.returncode, time.perf_counter() - start


@pytest.mark.slow  # a subprocess run of train.py; CI runs the slow tests too
def test_without_shared_assets_or_network_one_line_names_where_it_looked(tmp_path):
    """No ``../shared`` and no network (``HF_HUB_OFFLINE`` unset): one line naming the directory
    and cache looked in and the variable to set, instead of the hub client's 28 s of retries and
    a 93-line traceback. It takes about as long as refusing a bad value (start-up, ~8 s idle)."""
    run_dir = tmp_path / "run"
    out, status, seconds = _train_py(tmp_path, f"run_dir={run_dir}")
    assert status == 1, out[-3000:]
    assert len(out.splitlines()) == 1, out[-3000:]  # no retry warnings, no traceback
    assert "ModelSourceError: model.pretrained=google/bert_uncased_L-2_H-128_A-2" in out
    missing = tmp_path / "no_shared"
    assert str(missing / "models" / "minilm-l2-h384-uncased-sliced") in out
    assert f"COFI_SHARED_DIR={missing}" in out and "Set COFI_SHARED_DIR" in out
    assert "the hub http://127.0.0.1:9 is unreachable" in out
    assert not (run_dir / "teacher").exists()
    _, status, start_up = _train_py(tmp_path, "task.datamodule.batch_size=0", f"run_dir={run_dir}")
    assert status == 1
    assert seconds < start_up + 8  # the retries alone took 28 s


def test_offline_without_shared_assets_names_where_it_looked(compose_train, tmp_path, monkeypatch):
    """``HF_HUB_OFFLINE=1`` without ``../shared``: the message names the shared directory the
    demo's model was looked for in and ``COFI_SHARED_DIR``, not only the hub cache."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("COFI_SHARED_DIR", str(tmp_path / "no_shared"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub_cache"))
    run_dir = tmp_path / "run"
    overrides = ["experiment=demo", "logger=csv", f"run_dir={run_dir}"]
    message = _refused_at_the_door(
        compose_train, overrides, run_dir, ModelSourceError, "HF_HUB_OFFLINE is set and no local"
    )
    assert str(tmp_path / "no_shared" / "models" / "minilm-l2-h384-uncased-sliced") in message
    assert f"COFI_SHARED_DIR={tmp_path / 'no_shared'}" in message


def test_data_without_mirror_or_hub_is_one_line_naming_the_places(
    compose_train, tiny_overrides, tmp_path, monkeypatch
):
    import datasets

    monkeypatch.setenv("COFI_SHARED_DIR", str(tmp_path / "no_shared"))
    monkeypatch.delenv("COFI_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    run_dir = tmp_path / "run"
    message = _refused_at_the_door(
        compose_train,
        tiny_overrides(run_dir),
        run_dir,
        DataError,
        r"split 'train' of task 'sst2' was not found\. Looked in no local mirror",
    )
    assert str(tmp_path / "no_shared" / "data") in message and "COFI_DATA_DIR" in message
    assert "HF_HUB_OFFLINE is set" in message


def test_slurm_tasks_must_be_the_trainer_devices():
    """srun starts ``tasks_per_node`` x ``nodes`` ranks; Lightning needs ``devices`` x
    ``num_nodes`` of them (the SLURM sweep refuses a mismatch before submitting: tests/slurm)."""
    check_slurm_tasks({"tasks_per_node": 2, "nodes": 1}, {"devices": 2, "num_nodes": 1})
    check_slurm_tasks({"tasks_per_node": 4}, {"accelerator": "gpu", "devices": "auto"})  # unknown
    with pytest.raises(
        ConfigError,
        match=r"^hydra.launcher.tasks_per_node=1 \(x nodes=1\) but trainer.devices=2 \(x "
        r"num_nodes=1\): .* set hydra.launcher.tasks_per_node to trainer.devices",
    ):
        check_slurm_tasks({"tasks_per_node": 1, "nodes": 1}, {"devices": 2, "num_nodes": 1})
    with pytest.raises(ConfigError, match=r"tasks_per_node=1 \(x nodes=2\) but trainer.devices=1"):
        check_slurm_tasks({"tasks_per_node": 1, "nodes": 2}, {"devices": 1})
