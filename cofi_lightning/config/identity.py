"""A config's identity: the resolved values that change what a run computes, and their hash.

A run directory belongs to one identity: the default ``run_name`` ends in its short hash, so a sweep
over any key gets one directory per value, and ``cofi_lightning.run.rundir`` refuses to resume a
directory whose stored identity differs. The teacher's identity is the part the teacher stage
computes from (runs that share it may reuse one teacher). See ``docs/running.md``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from cofi_lightning.data.tasks import TASKS

#: Dotted keys (and whole subtrees) outside the identity.
NON_IDENTITY_KEYS: frozenset[str] = frozenset(
    {
        "hydra",
        "logger",
        "paths",
        "stages",
        "run_dir",
        "run_name",
        "resume",
        "cleanup",
        "export.push_to_hub",
        "export.private",
        "export.onnx",
        "export.quantize",
        "experiment_name",
        "callbacks.progress_bar",
        "callbacks.lr_monitor",
        "callbacks.structure",
        "trainer.enable_progress_bar",
        "trainer.enable_model_summary",
        "trainer.log_every_n_steps",
        "pruning.checkpoint_every_steps",
        "distill.reuse_teacher",
        "task.datamodule.num_workers",
        "task.datamodule.data_dir",
        "task.datamodule.cache_dir",
    }
)

#: Keys added after runs existed, each with the value that reproduces the runs made before it: at
#: that value a key is left out of the identity, so a new option never orphans a run directory
#: (``tests/training/identity_keys.txt`` records the identity's keys).
LATER_KEYS: dict[str, Any] = {
    "pruning.student_init": "pretrained",
    "pruning.mask_init": "default",
    "pruning.posttrain.num_samples": 2048,
    "pruning.posttrain.batch_size": 32,
    "pruning.posttrain.rearrange": True,
    "pruning.posttrain.rescale": "auto",
}

#: Keys the task config once repeated from the registry (``TASKS``); identities keep them, with the
#: registry's values, so runs made while they were config keys keep their hash.
TASK_REGISTRY_KEYS: tuple[str, ...] = ("metrics", "main_metric", "eval_splits", "eval_names")

#: Identity keys (and subtrees) that only the stages after the teacher read, except
#: :data:`TEACHER_STAGE_KEYS`; any other key, a new one too, is in the teacher's identity, so an
#: unclassified key can only prevent a reuse, never allow a wrong one.
AFTER_TEACHER_KEYS: tuple[str, ...] = (
    "pruning",
    "export",
    "distill",
    "model.freeze_embeddings",
    "ablation_name",
    "fidelity_name",
)
#: The keys under :data:`AFTER_TEACHER_KEYS` that the teacher stage reads.
TEACHER_STAGE_KEYS: tuple[str, ...] = (
    "distill.enabled",
    "distill.teacher",
    "distill.teacher_training",
)

HASH_LENGTH = 8


def _leaves(tree: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves of an unresolved container (lists count as leaves)."""
    if not isinstance(tree, dict):
        return [prefix]
    out = []
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if path not in NON_IDENTITY_KEYS:
            out.extend(_leaves(value, path))
    return out


def config_identity(cfg: DictConfig) -> dict[str, Any]:
    """``{dotted key: resolved value}`` of every key in the identity, sorted by key (``run_name``
    is never resolved, so the resolver that builds it may call this)."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    out: dict[str, Any] = {}
    for path in sorted(_leaves(raw)):
        value = OmegaConf.select(cfg, path, throw_on_missing=False)
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if path in LATER_KEYS and value == LATER_KEYS[path]:
            continue  # the behaviour from before the key existed: the old identity
        out[path] = value
    spec = TASKS.get(OmegaConf.select(cfg, "task.name", default=None))
    for key in TASK_REGISTRY_KEYS if spec is not None else ():
        value = getattr(spec, key)
        out[f"task.{key}"] = list(value) if isinstance(value, tuple) else value
    return dict(sorted(out.items()))


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(f"{p}.") for p in prefixes)


def teacher_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """The keys of a :func:`config_identity` that can change what the teacher stage computes
    (model, task and data, optimizer, trainer, seed, ``distill.teacher_training``...): runs that
    share them train the same teacher, whatever their prune, finetune and export settings."""
    return {
        key: value
        for key, value in identity.items()
        if _under(key, TEACHER_STAGE_KEYS) or not _under(key, AFTER_TEACHER_KEYS)
    }


def identity_hash(identity: dict[str, Any]) -> str:
    """A short, stable hash of an identity (sha256 of its sorted JSON)."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def config_hash(cfg: DictConfig) -> str:
    """:func:`identity_hash` of :func:`config_identity`."""
    return identity_hash(config_identity(cfg))


def identity_diff(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Lines ``key: stored -> current`` for every key whose value differs (or exists in one)."""
    lines = []
    for key in sorted(set(stored) | set(current)):
        old, new = stored.get(key, "<absent>"), current.get(key, "<absent>")
        if old != new:
            lines.append(f"{key}: {old!r} -> {new!r}")
    return lines
