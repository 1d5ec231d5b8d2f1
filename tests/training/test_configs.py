"""Every experiment x ablation composes and instantiates; invalid values stop with the key named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tiny_bert import tiny_bert_kwargs

from cofi_lightning.config_schema import ABLATIONS, ConfigError, validate_config
from cofi_lightning.lit_module import PruningSchedule
from cofi_lightning.masks import CoFiMasks
from cofi_lightning.modeling import CoFiBertConfig
from cofi_lightning.pipeline import RunContext

CONF = Path(__file__).resolve().parents[2] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
SHORT_SCHEDULES = {"demo", "repro_sst2_cpu"}  # CPU presets with faster multipliers
ABLATION_FILES = sorted(p.stem for p in (CONF / "ablation").glob("*.yaml"))


def test_shipped_files():
    assert set(ABLATION_FILES) == {"full", *ABLATIONS}
    assert {
        "demo",
        "glue_large_s60",
        "glue_large_s95",
        "glue_small_s60",
        "glue_small_s95",
        "squad_s60",
        "squad_s95",
    } <= set(EXPERIMENTS)


@pytest.mark.parametrize("ablation", [None, *ABLATION_FILES])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_x_ablation_instantiates(compose_train, tmp_path, experiment, ablation):
    overrides = [f"experiment={experiment}", f"run_dir={tmp_path}"]
    if ablation:
        overrides.append(f"ablation={ablation}")
    cfg = compose_train(overrides)
    OmegaConf.resolve(cfg)
    validate_config(cfg, tmp_path)
    assert cfg.experiment_name == experiment
    assert cfg.ablation_name == (None if ablation == "full" else ablation)
    ctx = RunContext(cfg, tmp_path)
    trainer = ctx.trainer("prune", max_epochs=1, eval_every_steps=cfg.pruning.eval_every_steps)
    assert trainer.max_epochs == 1
    reg_lr = ctx.optim(cfg.pruning.lr, "linear", cfg.model.freeze_embeddings).reg_lr
    if experiment in SHORT_SCHEDULES:
        assert reg_lr > 0.01  # a few hundred steps need faster masks and multipliers
    else:
        assert reg_lr == 0.01  # the paper's
    ctx.distill_settings()
    PruningSchedule(target_sparsity=cfg.pruning.target_sparsity)
    masks = CoFiMasks(CoFiBertConfig(**tiny_bert_kwargs()), units=list(cfg.pruning.units))
    if ablation == "no_hidden_mask":
        assert "hidden" not in masks.units
    if ablation == "no_layer_masks":
        assert not {"head_layer", "mlp"} & set(masks.units)
    if ablation == "fixed_layer_map":
        assert cfg.distill.layer_mapping == "fixed"
    if ablation == "no_distill":
        assert not cfg.distill.enabled
    if experiment.startswith("squad"):
        assert cfg.task.name == "squad"


def test_command_line_task_wins_over_experiment(compose_train):
    cfg = compose_train(["experiment=glue_small_s95", "task=rte"])
    assert cfg.task.name == "rte" and cfg.pruning.lagrangian_warmup_epochs == 20


def test_full_ablation_equals_no_ablation_so_a_glob_sweep_includes_full_cofi(compose_train):
    assert "full" in ABLATION_FILES
    full = compose_train(["ablation=full", "pruning.target_sparsity=0.6"], hydra_cfg=True)
    unset = compose_train(["pruning.target_sparsity=0.6"], hydra_cfg=True)
    assert full.hydra.run.dir == unset.hydra.run.dir == "outputs/default/sst2_s0.6_full_seed57"
    del full.hydra, unset.hydra
    assert full == unset


def test_run_dir_is_deterministic(compose_train):
    cfg = compose_train(["ablation=no_distill", "pruning.target_sparsity=0.6"], hydra_cfg=True)
    assert cfg.hydra.run.dir == "outputs/default/sst2_s0.6_no_distill_seed57"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("pruning.target_sparsity=1.2", "pruning.target_sparsity must be in [0, 1), got 1.2"),
        ("pruning.target_sparsity=-0.1", "pruning.target_sparsity"),
        ("pruning.units=[hidden,heads]", "pruning.units"),
        ("distill.temperature=0", "distill.temperature"),
        ("distill.layer_mapping=random", "distill.layer_mapping"),
        ("stages=[finetune,export]", "stages"),
        ("stages=[prune,teacher]", "stages"),
        ("+ablation_name=no_heads", "ablation"),
        ("task.name=sst3", "task.name"),
        ("pruning.reg_lr=-1", "pruning.reg_lr"),
    ],
)
def test_invalid_values_name_the_key(compose_train, tmp_path, override, key):
    overrides = [f"run_dir={tmp_path}", override]
    if override.startswith("+ablation_name"):
        overrides = [f"run_dir={tmp_path}", "ablation_name=no_heads"]
    cfg = compose_train(overrides)
    with pytest.raises(ConfigError, match=re.escape(key)):
        validate_config(cfg, tmp_path)


def test_unknown_ablation_or_task_group_fails_at_compose(compose_train):
    with pytest.raises(Exception, match="ablation"):
        compose_train(["ablation=no_heads"])
    with pytest.raises(Exception, match="task"):
        compose_train(["task=sst3"])


def test_shared_teacher_is_ignored_by_no_distill(compose_train, tmp_path, caplog):
    """A sweep passes one `distill.teacher=` to every ablation; no_distill runs without it."""
    cfg = compose_train(
        [f"run_dir={tmp_path}", "ablation=no_distill", f"distill.teacher={tmp_path}"]
    )
    with caplog.at_level("WARNING"):
        validate_config(cfg, tmp_path)
    assert f"distill.teacher={tmp_path} is not used: distill.enabled is false" in caplog.text


def test_teacher_with_wrong_label_count(compose_train, tmp_path):
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "config.json").write_text(json.dumps({"model_type": "bert", "num_labels": 3}))
    cfg = compose_train([f"run_dir={tmp_path}", f"distill.teacher={teacher}"])
    with pytest.raises(ConfigError, match="distill.teacher has 3 labels but task sst2 needs 2"):
        validate_config(cfg, tmp_path)


def test_finetune_only_with_structure_dir(compose_train, tmp_path):
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "masks.pt").write_bytes(b"")
    cfg = compose_train(
        [
            f"run_dir={tmp_path}",
            "stages=[finetune,export]",
            f"pruning.structure_dir={tmp_path / 'best'}",
        ]
    )
    validate_config(cfg, tmp_path)


def test_sweep_over_ablations_composes(compose_train):
    """What `-m ablation='glob(*)'` expands to: full CoFi and one job per ablation file."""
    for name in ABLATION_FILES:
        cfg = compose_train([f"ablation={name}", "experiment=glue_small_s95"])
        assert cfg.ablation_name == (None if name == "full" else name)
        assert cfg.experiment_name == "glue_small_s95"
        assert name in cfg.run_name


@pytest.mark.parametrize("launcher", ["submitit_slurm", "submitit_local"])
def test_launcher_presets_compose(compose_train, launcher):
    cfg = compose_train([f"hydra={launcher}", "experiment=glue_large_s95"], hydra_cfg=True)
    assert "submitit" in cfg.hydra.launcher._target_
    assert cfg.hydra.sweep.subdir == "sst2_s0.95_full_seed57"  # resumable: no timestamp


def test_demo_model_falls_back_to_the_hub_without_shared(tmp_path):
    from cofi_lightning.config_schema import local_or_hub

    assert local_or_hub(str(tmp_path), "google/bert_uncased_L-2_H-128_A-2") == str(tmp_path)
    missing = str(tmp_path / "absent")
    assert local_or_hub(missing, "google/bert_uncased_L-2_H-128_A-2").startswith("google/")
