"""Checks of a composed training config, run before anything is built; errors name the key.

This file owns the rules a ``conf/train.yaml`` composition must satisfy (value ranges, known names,
stage prerequisites, teacher/task agreement) and the OmegaConf resolvers the training configs use
(``cofi.shared_dir``, ``cofi.default``). It does not build objects (``cofi_lightning.pipeline``).
Each check raises :class:`ConfigError` with the offending key first, e.g.
``pruning.target_sparsity must be in [0, 1), got 1.2``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cofi_lightning.data.tasks import TASKS
from cofi_lightning.masks import UNIT_NAMES

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]

STAGES: tuple[str, ...] = ("teacher", "prune", "finetune", "export")
ABLATIONS: tuple[str, ...] = ("no_hidden_mask", "no_layer_masks", "fixed_layer_map", "no_distill")


def shared_dir() -> str:
    """``$COFI_SHARED_DIR``, else ``<repo>/../shared`` (the read-only models and data)."""
    return os.environ.get("COFI_SHARED_DIR") or str(REPO_ROOT.parent / "shared")


def local_or_hub(local: str, hub_name: str) -> str:
    """``local`` if that directory exists, else the hub name (for users without ``../shared``)."""
    return local if Path(local).is_dir() else hub_name


OmegaConf.register_new_resolver("cofi.shared_dir", shared_dir, replace=True)
OmegaConf.register_new_resolver("cofi.local_or_hub", local_or_hub, replace=True)
OmegaConf.register_new_resolver(
    "cofi.default", lambda value, default: default if value is None else value, replace=True
)


class ConfigError(ValueError):
    """A config value is invalid; the message starts with the key."""


def _require(ok: bool, key: str, message: str, value=None) -> None:
    if not ok:
        suffix = "" if value is None else f", got {value!r}"
        raise ConfigError(f"{key} {message}{suffix}")


def _non_negative(cfg: DictConfig, *keys: str) -> None:
    for key in keys:
        value = OmegaConf.select(cfg, key)
        if value is not None:
            _require(value >= 0, key, "must be >= 0", value)


def _teacher_num_labels(teacher: str) -> int | None:
    """``num_labels`` of a local HF checkpoint (None if it cannot be read locally)."""
    config = Path(teacher) / "config.json"
    if not config.is_file():
        return None
    values = json.loads(config.read_text())
    if "num_labels" in values:
        return int(values["num_labels"])
    return len(values.get("id2label", {})) or 2  # transformers' default when neither is stored


def validate_config(cfg: DictConfig, run_dir: str | Path | None = None) -> None:
    """Stop early on an invalid training config.

    Args:
        cfg: The composed ``train.yaml``.
        run_dir: The run directory, to check that a ``finetune`` stage without ``prune`` finds a
            pruned structure there (``prune/best``) or in ``pruning.structure_dir``.

    Raises:
        ConfigError: naming the key.
    """
    task = cfg.task.name
    _require(task in TASKS, "task.name", f"must be one of {sorted(TASKS)}", task)
    _require(
        cfg.task.num_labels == TASKS[task].num_labels,
        "task.num_labels",
        f"must be {TASKS[task].num_labels} for {task}",
        cfg.task.num_labels,
    )
    p = cfg.pruning
    for key in ("target_sparsity", "start_sparsity"):
        _require(0.0 <= p[key] < 1.0, f"pruning.{key}", "must be in [0, 1)", p[key])
    units = list(p.units)
    unknown = sorted(set(units) - set(UNIT_NAMES))
    _require(not unknown, "pruning.units", f"has unknown units {unknown}; known {UNIT_NAMES}")
    _require(bool(units), "pruning.units", "must name at least one unit")
    _non_negative(
        cfg,
        "pruning.epochs",
        "pruning.lr",
        "pruning.reg_lr",
        "pruning.sparsity_epsilon",
        "pruning.lagrangian_warmup_epochs",
        "pruning.lagrangian_warmup_steps",
        "pruning.pre_pruning_epochs",
        "pruning.pre_pruning_steps",
        "pruning.finetune.epochs",
        "pruning.finetune.lr",
        "distill.teacher_training.epochs",
        "distill.teacher_training.lr",
        "distill.alpha_pred",
        "distill.alpha_layer",
    )
    for key in ("pruning.eval_every_steps", "pruning.finetune.eval_every_steps"):
        value = OmegaConf.select(cfg, key)
        _require(value is None or value >= 1, key, "must be null or >= 1", value)
    d = cfg.distill
    _require(d.temperature > 0, "distill.temperature", "must be > 0", d.temperature)
    mapping = d.layer_mapping
    _require(
        mapping in ("dynamic", "fixed"), "distill.layer_mapping", "must be dynamic|fixed", mapping
    )
    ablation = cfg.get("ablation_name")
    _require(
        ablation is None or ablation in ABLATIONS,
        "ablation",
        f"must be one of {ABLATIONS}",
        ablation,
    )

    stages = list(cfg.stages)
    _require(bool(stages), "stages", "must list at least one stage")
    bad = [s for s in stages if s not in STAGES]
    _require(not bad, "stages", f"has unknown stages {bad}; known {STAGES}")
    _require(
        stages == [s for s in STAGES if s in stages], "stages", f"must follow {STAGES}", stages
    )
    if "finetune" in stages and "prune" not in stages:
        candidates = [p.get("structure_dir")]
        if run_dir is not None:
            candidates.append(str(Path(run_dir) / "prune" / "best"))
        found = any(c and (Path(c) / "masks.pt").is_file() for c in candidates)
        _require(
            found,
            "stages",
            "has 'finetune' without 'prune' but no pruned structure: set "
            "pruning.structure_dir=<dir with masks.pt> or run the prune stage",
        )
    if "export" in stages and "finetune" not in stages and run_dir is not None:
        done = (Path(run_dir) / "finetune" / "DONE.json").is_file()
        _require(done, "stages", "has 'export' without 'finetune' and no finished finetune stage")

    if d.teacher is not None and not d.enabled:
        # Not an error: a sweep shares `distill.teacher=<dir>` across ablations, no_distill too.
        log.warning("distill.teacher=%s is not used: distill.enabled is false", d.teacher)
    elif d.teacher is not None:
        labels = _teacher_num_labels(d.teacher)
        _require(
            labels is None or labels == cfg.task.num_labels,
            "distill.teacher",
            f"has {labels} labels but task {task} needs {cfg.task.num_labels}",
            d.teacher,
        )
