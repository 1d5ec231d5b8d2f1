"""Checks at the door: the models a run names exist and fit together, before any stage starts.

This file owns the checks that need the file system or the Hugging Face cache rather than the
config alone (those live in ``cofi_lightning.config``):

* ``model.pretrained``, ``model.tokenizer`` and ``distill.teacher`` are each an existing model
  directory or a well-formed hub name; offline (``HF_HUB_OFFLINE=1``) a hub name must be in the
  local cache, otherwise the error says where the local copy was looked for instead of a long retry
  loop ending in "couldn't connect";
* the student is of a supported encoder family (``cofi_lightning.modeling.families``);
* a teacher can be distilled into the student: the same family, the same hidden size (one
  ``[H, H]`` projection), unpruned, and deep enough for the fixed layer mapping.

Every failure is a :class:`ModelSourceError` naming the key and the value.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cofi_lightning.config import TrainConfig


class ModelSourceError(ValueError):
    """A model or tokenizer setting names nothing usable; the message starts with the key."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _hub_config(name: str) -> Path | None:
    """``config.json`` of a hub model in the local HF cache, if there."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(name, "config.json")
    return Path(hit) if isinstance(hit, str) else None


def check_source(key: str, value: str, need: str | None = "config.json") -> dict[str, Any] | None:
    """Check one model setting; return its ``config.json`` content when it can be read locally.

    Args:
        key: The config key (``model.pretrained``, ``distill.teacher``, ``model.tokenizer``).
        value: Its value: a directory or a hub name.
        need: A file the directory must hold (``config.json``; None for tokenizers, whose files
            vary).

    Raises:
        ModelSourceError: naming the key and the value.
    """
    path = Path(value).expanduser()
    if path.is_dir():
        if need is not None and not (path / need).is_file():
            raise ModelSourceError(f"{key}={value} is a directory without {need}")
        config = path / "config.json"
        return json.loads(config.read_text()) if config.is_file() else None
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    looks_like_path = value.startswith((".", "/", "~")) or value.count("/") > 1
    try:
        if looks_like_path:
            raise HFValidationError("a path")
        validate_repo_id(value)
    except HFValidationError:
        raise ModelSourceError(
            f"{key}={value} is neither an existing directory nor a Hugging Face hub name "
            f"(no directory {path.resolve()}; hub names look like 'bert-base-uncased' or "
            "'org/name')"
        ) from None
    if _offline():
        cached = _hub_config(value)
        if cached is None:
            from huggingface_hub.constants import HF_HUB_CACHE

            raise ModelSourceError(
                f"{key}={value}: HF_HUB_OFFLINE is set and no local copy was found (no directory "
                f"{path.resolve()}, not in the Hugging Face cache {HF_HUB_CACHE}). Point {key} at "
                "a local model directory, or download it where there is network "
                "(huggingface-cli download) and copy the cache here."
            )
        return json.loads(cached.read_text())
    return None  # online: the hub answers when the stage loads it


def _depth(config: dict[str, Any]) -> int | None:
    return config.get("num_hidden_layers")


def _pruned(config: dict[str, Any]) -> bool:
    """A CoFi config whose layers keep fewer heads or FFN dims than the architecture has."""
    heads, ffn = config.get("num_heads"), config.get("intermediate_sizes")
    full_heads, full_ffn = config.get("num_attention_heads"), config.get("intermediate_size")
    return any(n != full_heads for n in heads or ()) or any(m != full_ffn for m in ffn or ())


def check_family(key: str, value: str, config: dict[str, Any]):
    """The encoder family of a model's ``config.json``.

    Raises:
        ModelSourceError: the family is not supported (listing the supported ones).
    """
    from cofi_lightning.modeling import UnsupportedModelError, family_of

    try:
        return family_of(str(config.get("model_type")))
    except UnsupportedModelError as err:
        raise ModelSourceError(f"{key}={value}: {err}") from None


def check_teacher_fits(student: dict[str, Any], teacher: dict[str, Any], mapping: str) -> None:
    """A teacher that layer distillation can use with this student.

    Raises:
        ModelSourceError: naming both shapes (or both families).
    """
    families = [check_family(k, "", c) for k, c in (("model", student), ("teacher", teacher))]
    if families[0] != families[1]:
        raise ModelSourceError(
            f"distill.teacher is a {families[1].name} model and model.pretrained a "
            f"{families[0].name} one; the teacher is loaded with the student's classes: "
            "fine-tune the teacher from model.pretrained (or train one: distill.teacher=null)"
        )
    shapes = (
        f"teacher hidden {teacher.get('hidden_size')} x {_depth(teacher)} layers, student hidden "
        f"{student.get('hidden_size')} x {_depth(student)} layers"
    )
    if teacher.get("hidden_size") != student.get("hidden_size"):
        raise ModelSourceError(
            f"distill.teacher cannot be distilled into model.pretrained: {shapes}; the layer loss "
            "projects student states onto teacher states of the same hidden size. Use a teacher "
            "fine-tuned from model.pretrained (or train one: distill.teacher=null)."
        )
    if _pruned(teacher):
        raise ModelSourceError(
            f"distill.teacher is a pruned model ({shapes}; heads per layer "
            f"{teacher.get('num_heads')}, FFN sizes {teacher.get('intermediate_sizes')}); "
            "distil from the unpruned fine-tuned teacher (its <run>/teacher/model)."
        )
    if mapping == "fixed" and (_depth(teacher) or 0) > (_depth(student) or 0):
        raise ModelSourceError(
            f"distill.layer_mapping=fixed needs a student at least as deep as the teacher: {shapes}"
        )


def preflight(cfg: TrainConfig) -> None:
    """Run every check of this file on a config (once, at the start of a run)."""
    student = check_source("model.pretrained", cfg.model.pretrained)
    if student is not None:
        check_family("model.pretrained", cfg.model.pretrained, student)
    if cfg.model.tokenizer != cfg.model.pretrained:
        check_source("model.tokenizer", cfg.model.tokenizer, need=None)
    if cfg.distill.enabled and cfg.distill.teacher is not None:
        teacher = check_source("distill.teacher", cfg.distill.teacher)
        if student is not None and teacher is not None:
            check_teacher_fits(student, teacher, cfg.distill.layer_mapping)
