"""The typed config: every experiment x ablation composes and builds; bad keys, types and values
fail when the config is composed or loaded, naming the key; run names carry the identity hash."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from cofi_lightning.config import (
    ABLATIONS,
    ConfigError,
    PruningConfig,
    TrainConfig,
    config_hash,
    load_config,
    local_or_hub,
)
from cofi_lightning.run.context import RunContext

CONF = Path(__file__).resolve().parents[2] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
ABLATION_FILES = sorted(p.stem for p in (CONF / "ablation").glob("*.yaml"))
HASH = re.compile(r"_[0-9a-f]{8}$")


def test_shipped_files():
    assert set(ABLATION_FILES) == {"full", *ABLATIONS}
    assert {"demo", "glue_large_s60", "glue_small_s95", "squad_s60", "squad_s95"} <= set(
        EXPERIMENTS
    )


@pytest.mark.parametrize("ablation", [None, *ABLATION_FILES])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_x_ablation_loads_and_builds_a_trainer(
    compose_train, tmp_path, experiment, ablation
):
    overrides = [f"experiment={experiment}", f"run_dir={tmp_path}"]
    if ablation:
        overrides.append(f"ablation={ablation}")
    cfg = load_config(compose_train(overrides))
    assert isinstance(cfg, TrainConfig) and isinstance(cfg.pruning, PruningConfig)
    assert cfg.experiment_name == experiment
    assert cfg.ablation_name == (None if ablation in (None, "full") else ablation)
    trainer = RunContext(cfg, tmp_path).trainer(
        "prune", max_epochs=cfg.pruning.epochs, eval_every_steps=cfg.pruning.eval_every_steps
    )
    # The preset's trainer settings reach the Trainer (the composed node, not a copy of it).
    assert trainer.precision == str(cfg.trainer["precision"])
    assert trainer.val_check_interval == (cfg.pruning.eval_every_steps or 1.0)
    units = set(cfg.pruning.units)
    assert ("hidden" in units) == (ablation != "no_hidden_mask")
    assert bool({"head_layer", "mlp"} & units) == (ablation != "no_layer_masks")
    assert (cfg.distill.layer_mapping == "fixed") == (ablation == "fixed_layer_map")
    assert cfg.distill.enabled == (ablation != "no_distill")
    assert (cfg.task.name == "squad") == experiment.startswith("squad")


def test_command_line_task_wins_over_experiment_values_stay(compose_train):
    cfg = load_config(compose_train(["experiment=glue_small_s95", "task=rte"]))
    assert cfg.task.name == "rte" and cfg.task.datamodule["task"] == "rte"
    assert cfg.pruning.lagrangian_warmup_epochs == 20  # from the experiment, not the default 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("pruning.target_sparsty=0.5", "pruning.target_sparsty"),  # unknown key
        ("pruning.target_sparsity=abc", "pruning.target_sparsity=abc"),  # wrong type
        ("seed=abc", "seed=abc"),
        ("pruning.finetune.epochs=1.5", "pruning.finetune.epochs"),
        ("trainer.precison=bf16-mixed", "trainer.precison"),  # unknown key of a dict node
    ],
)
def test_unknown_keys_and_wrong_types_fail_at_compose(compose_train, override, message):
    with pytest.raises(ConfigCompositionException, match=re.escape(message)) as err:
        compose_train([override])
    if "=abc" in override:  # Hydra's cause names the full key and the type
        assert "could not be converted" in str(err.value.__cause__)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("pruning.target_sparsity=1.2", "pruning.target_sparsity must be in [0, 1), got 1.2"),
        ("pruning.target_sparsity=-0.1", "pruning.target_sparsity must be in [0, 1)"),
        ("pruning.units=[hidden,heads]", "pruning.units has unknown units ['heads']"),
        ("distill.temperature=0", "distill.temperature must be > 0"),
        ("distill.layer_mapping=random", "distill.layer_mapping must be in"),
        ("stages=[prune,teacher]", "stages must follow"),
        ("stages=[teacher,distill]", "stages has unknown stages ['distill']"),
        ("ablation_name=no_heads", "ablation must be one of"),
        ("task.name=sst3", "task.name must be one of"),
        ("pruning.reg_lr=-1", "pruning.reg_lr must be >= 0"),
        ("pruning.finetune.schedule=cosine", "pruning.finetune.schedule must be in"),
        ("distill.teacher_training.eval_every_steps=0", "distill.teacher_training.eval_every_st"),
        ("optim.warmup_ratio=1.0", "optim.warmup_ratio must be in [0, 1)"),
        ("resume=sometimes", "resume must be one of"),
        ("pruning.select_on=best", "pruning.select_on must be in"),
        ("+trainer.precison=bf16-mixed", "trainer.precison is not an argument of"),
        ("+task.datamodule.batch_sise=8", "task.datamodule.batch_sise is not an argument of"),
        ("+logger.csv.save_dir=/tmp", "logger.csv.save_dir is set by the pipeline"),
        ("trainer._target_=lightning.Trainerr", "trainer._target_ cannot be imported"),
    ],
)
def test_impossible_values_fail_at_load_naming_the_key(compose_train, override, message):
    cfg = compose_train(["logger=csv", override])  # composes: the type is right
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(cfg)


def test_unknown_group_option_fails_at_compose(compose_train):
    with pytest.raises(ConfigCompositionException, match="ablation"):
        compose_train(["ablation=no_heads"])
    with pytest.raises(ConfigCompositionException, match="task"):
        compose_train(["task=sst3"])


def test_run_name_carries_the_identity_hash(compose_train):
    """A sweep over any key gets one run directory per value; keys that do not change results
    (logger, progress bar, stages, checkpoint cadence) keep the directory."""

    def run_dir(*overrides: str) -> str:
        cfg = compose_train(["pruning.target_sparsity=0.6", *overrides], hydra_cfg=True)
        return cfg.hydra.run.dir

    base = run_dir()
    assert re.fullmatch(r"outputs/default/sst2_s0\.6_full_seed57_[0-9a-f]{8}", base)
    changed = {
        run_dir("pruning.lr=1e-5"),
        run_dir("pruning.lr=3e-5", "distill.temperature=4"),
        run_dir("model.pretrained=/elsewhere/bert"),
        run_dir("distill.teacher=/some/teacher"),
        run_dir("trainer.precision=bf16-mixed"),
        run_dir("distill.teacher_cache=false"),  # fp16 teacher outputs: another computation
        run_dir("export.round_to=8"),  # another exported shape
    }
    assert base not in changed and len(changed) == 7
    for same in (
        ["logger=csv"],
        ["stages=[teacher]"],
        ["trainer.enable_progress_bar=false"],
        ["pruning.checkpoint_every_steps=7"],
        ["paths.cache_dir=/tmp/elsewhere"],
        ["export.push_to_hub=me/model", "export.private=false"],
        ["ablation=full"],  # what `ablation=glob(*)` sweeps beside the ablations
    ):
        assert run_dir(*same) == base, same
    assert run_dir("ablation=no_distill").startswith("outputs/default/sst2_s0.6_no_distill_seed57_")


def test_run_dir_moves_hydra_files_and_the_log(compose_train, tmp_path):
    cfg = compose_train([f"run_dir={tmp_path / 'mine'}"], hydra_cfg=True)
    assert cfg.hydra.run.dir == str(tmp_path / "mine")


def test_the_job_computes_the_hash_the_run_dir_was_named_with(compose_train):
    composed = compose_train(["experiment=demo", "pruning.lr=1e-4"], hydra_cfg=True)
    job = compose_train(["experiment=demo", "pruning.lr=1e-4"])  # what main() receives
    typed = load_config(job)
    assert composed.hydra.run.dir.endswith(typed.run_name)
    assert typed.run_name.endswith(config_hash(OmegaConf.structured(typed)))


def test_launcher_presets_keep_readable_resumable_subdirs(compose_train):
    for launcher in ("submitit_slurm", "submitit_local"):
        cfg = compose_train([f"hydra={launcher}", "experiment=glue_large_s95"], hydra_cfg=True)
        assert "submitit" in cfg.hydra.launcher._target_
        assert HASH.sub("", cfg.hydra.sweep.subdir) == "sst2_s0.95_full_seed57"  # no timestamp


def test_shared_teacher_is_ignored_by_no_distill(compose_train, tmp_path, caplog):
    """A sweep passes one `distill.teacher=` to every ablation; no_distill runs without it."""
    cfg = compose_train(["ablation=no_distill", f"distill.teacher={tmp_path}"])
    with caplog.at_level("WARNING"):
        assert not load_config(cfg).distill.enabled
    assert f"distill.teacher={tmp_path} is not used: distill.enabled is false" in caplog.text


def test_teacher_with_wrong_label_count(compose_train, tmp_path):
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "config.json").write_text(json.dumps({"model_type": "bert", "num_labels": 3}))
    cfg = compose_train([f"distill.teacher={teacher}"])
    with pytest.raises(ConfigError, match="distill.teacher has 3 labels but task sst2 needs 2"):
        load_config(cfg)


def test_finetune_only_needs_a_pruned_structure(compose_train, tmp_path):
    best = tmp_path / "best"
    cfg = load_config(compose_train(["stages=[finetune,export]", f"pruning.structure_dir={best}"]))
    with pytest.raises(ConfigError, match="has 'finetune' without 'prune' but no pruned structure"):
        cfg.check_stage_inputs(tmp_path / "run")
    best.mkdir()
    torch.save({"head": torch.ones(2, 4)}, best / "masks.pt")
    cfg.check_stage_inputs(tmp_path / "run")  # found: no error
    export_only = load_config(compose_train(["stages=[export]"]))
    with pytest.raises(ConfigError, match="'export' without 'finetune'"):
        export_only.check_stage_inputs(tmp_path / "run")


def test_demo_model_falls_back_to_the_hub_without_shared(tmp_path):
    assert local_or_hub(str(tmp_path), "google/bert_uncased_L-2_H-128_A-2") == str(tmp_path)
    missing = str(tmp_path / "absent")
    assert local_or_hub(missing, "google/bert_uncased_L-2_H-128_A-2").startswith("google/")
