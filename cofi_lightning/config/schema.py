"""The training config's one schema: every key of ``conf/train.yaml``'s composition, its type, its
default and its rules, as typed dataclasses registered in Hydra's ConfigStore.

Hydra refuses unknown keys and wrong types at compose time; :func:`load_config` builds the
dataclasses, whose ``__post_init__`` checks ranges and names. Nodes built with
``hydra.utils.instantiate`` (``trainer``, ``logger.*``, ``callbacks.*``, ``task.datamodule``) stay
free-form dicts whose keys are checked against the target's signature.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cofi_lightning.config.checks import (
    ConfigError,
    at_least,
    check_target_kwargs,
    fractions,
    one_of,
    require,
)
from cofi_lightning.config.stage_configs import DistillConfig, PruningConfig
from cofi_lightning.data.base import SIZE_ARGUMENTS, check_sizes
from cofi_lightning.data.tasks import TASKS

log = logging.getLogger(__name__)

#: The pipeline's stages, in order (one source for the config check and the stage loop).
STAGES: tuple[str, ...] = ("teacher", "prune", "finetune", "export")
ABLATIONS: tuple[str, ...] = ("no_hidden_mask", "no_layer_masks", "fixed_layer_map", "no_distill")
RESUME_MODES: tuple[str, ...] = ("auto", "never", "must")
CLIP_OVER: tuple[str, ...] = ("optimized", "model")
FIDELITIES: tuple[str, ...] = ("ours", "original")
QUANTIZE: tuple[str | None, ...] = (None, "int8")

# --- model, task, optimizer, paths --------------------------------------------------------------


@dataclass
class ModelConfig:
    """The model to prune.

    Attributes:
        pretrained: A Hugging Face BERT (hub name or directory); the student starts from it.
        tokenizer: A directory or hub name with the matching fast tokenizer.
        freeze_embeddings: Keep the embedding tables out of the optimizer in the prune and
            finetune stages, as the original code (the teacher stage always trains them).
    """

    pretrained: str = "bert-base-uncased"
    tokenizer: str = "${model.pretrained}"
    freeze_embeddings: bool = True


@dataclass
class TaskConfig:
    """A GLUE task or SQuAD v1.1 (values in ``conf/task/<name>.yaml``; its metrics and evaluation
    splits are in the registry ``cofi_lightning.data.tasks.TASKS``).

    Attributes:
        name: The task (a key of ``TASKS``: the 8 GLUE tasks and ``squad``).
        num_labels: Classes of the task head (1 for STS-B's regression); must match the task.
        max_seq_length: Tokens per example after truncation (384 for SQuAD, with a stride).
        datamodule: The DataModule node (``_target_``, ``_partial_: true``; built with the
            tokenizer and the run's seed).
    """

    name: str = "sst2"
    num_labels: int = 2
    max_seq_length: int = 128
    datamodule: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(self.name in TASKS, "task.name", f"must be one of {sorted(TASKS)}", self.name)
        spec = TASKS[self.name]
        require(
            self.num_labels == spec.num_labels,
            "task.num_labels",
            f"must be {spec.num_labels} for {self.name}",
            self.num_labels,
        )
        check_target_kwargs(self.datamodule, "task.datamodule", ("tokenizer", "seed"))
        sizes = {k: v for k, v in self.datamodule.items() if k in SIZE_ARGUMENTS}
        try:
            check_sizes(**sizes)
        except ValueError as err:
            raise ConfigError(f"task.datamodule.{err}") from None


@dataclass
class OptimConfig:
    """Optimizer settings shared by every stage (each stage has its own lr and schedule).

    Attributes:
        weight_decay: AdamW decay of the weight matrices (not biases / LayerNorm); CoFi: 0.
        warmup_ratio: Fraction of a stage's steps warming the weight lr up.
        max_grad_norm: Clip norm of the weight gradients (None or <= 0: no clipping); CoFi: 1.0.
        clip_over: Whose gradient norm is clipped: ``optimized`` (the weights in the optimizer) or
            ``model`` (every student parameter, frozen ones too, as the original; docs/method.md).
        adam_eps: AdamW epsilon.
    """

    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = 1.0
    clip_over: str = "optimized"
    adam_eps: float = 1.0e-8

    def __post_init__(self) -> None:
        fractions(self, "optim", ("warmup_ratio",))
        at_least(self, "optim", ("weight_decay",), 0, strict=False)
        at_least(self, "optim", ("adam_eps",), 0, strict=True)
        one_of(self, "optim", {"clip_over": CLIP_OVER})


@dataclass
class PathsConfig:
    """Where data and caches live.

    Attributes:
        data_dir: A local Parquet mirror (``python -m cofi_lightning.tools.prepare`` writes one):
            ``$COFI_DATA_DIR``, else ``<shared dir>/data`` if it exists, else None (the hub).
        cache_dir: Tokenized features (``$COFI_CACHE_DIR``, else ``~/.cache/cofi_lightning``).
    """

    data_dir: str | None = "${cofi.data_dir:}"
    cache_dir: str | None = "${cofi.cache_dir:}"


@dataclass
class ExportConfig:
    """The exported model's shape and where it goes.

    Attributes:
        round_to: Round every layer's kept FFN width to a multiple of this before the finetune
            stage (``cofi_lightning.core.rounding``; 1 = as pruned). Part of the run's identity.
        round_hidden: Round the kept hidden size too.
        push_to_hub: A hub repository id (``user/name``) to upload ``pruned_model/`` to once
            ``results.json`` is written; None keeps it local.
        private: Create that repository private.
        onnx: Also write ``model.onnx`` (ONNX Runtime, fp32, dynamic batch and length) beside
            the export and re-evaluate it (``cofi_lightning.deploy``; the ``deploy`` extra).
        quantize: ``int8``: also write ``model.int8.onnx`` (dynamic INT8 quantization of
            ``model.onnx``) and re-evaluate it; None: no quantized model.
    """

    push_to_hub: str | None = None
    private: bool = True
    round_to: int = 1
    round_hidden: bool = False
    onnx: bool = False
    quantize: str | None = None

    def __post_init__(self) -> None:
        at_least(self, "export", ("round_to",), 1, strict=False)
        require(
            self.quantize in QUANTIZE, "export.quantize", f"must be in {QUANTIZE}", self.quantize
        )
        require(
            self.quantize is None or self.onnx,
            "export.quantize",
            "quantizes the ONNX model: set export.onnx=true too",
            self.quantize,
        )


@dataclass
class CleanupConfig:
    """What a finished stage deletes (after its ``DONE.json``; never results or exports).

    Attributes:
        checkpoints: Delete the stage's Lightning checkpoints and ``best_student.pt`` (a finished
            stage is never resumed; what later stages read stays). False keeps them.
    """

    checkpoints: bool = True


# --- the whole config -------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """``conf/train.yaml``: CoFi end to end (teacher -> prune -> finetune -> export).

    Attributes:
        seed: Seed of weights init, data order, dropout and mask noise (CoFi's scripts: 57).
        stages: The stages to run, in :data:`STAGES` order; a prefix may be dropped once its
            ``DONE.json`` exists.
        experiment_name: Output folder and W&B group (set by ``conf/experiment``).
        ablation_name: Set by ``conf/ablation``; recorded in ``results.json``.
        fidelity_name: ``ours`` or ``original`` (set by ``conf/fidelity``); recorded in
            ``results.json``.
        run_name: Readable run name + a short hash of the config's identity, so different
            configs never share a run dir.
        run_dir: The run directory (None: Hydra's output dir, ``outputs/<experiment>/<run_name>``).
        resume: ``auto`` (resume a run dir of the same config, refuse one of another), ``must``
            (also refuse to start from nothing) or ``never`` (refuse any existing run).
        trainer: Lightning ``Trainer`` arguments (``conf/trainer``: cpu, gpu, ddp).
        logger: Loggers by name (``conf/logger``: wandb, wandb_csv, csv, none).
        callbacks: Extra callbacks by name (``conf/callbacks``).
    """

    seed: int = 57
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    experiment_name: str = "default"
    ablation_name: str | None = None
    fidelity_name: str = "ours"
    run_name: str = (
        "${task.name}_${cofi.target_label:${pruning.target_sparsity},${pruning.targets},"
        "${pruning.constraint},${pruning.target_speedup}}_"
        "${cofi.default:${ablation_name},full}"
        "_seed${seed}_${cofi.config_hash:}"
    )
    run_dir: str | None = None
    resume: str = "auto"
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: dict[str, Any] = field(default_factory=dict)
    logger: dict[str, Any] = field(default_factory=dict)
    callbacks: dict[str, Any] = field(default_factory=dict)
    paths: PathsConfig = field(default_factory=PathsConfig)
    cleanup: CleanupConfig = field(default_factory=CleanupConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def __post_init__(self) -> None:
        for key, value, allowed in (
            ("resume", self.resume, RESUME_MODES),
            ("ablation", self.ablation_name, ABLATIONS),
            ("fidelity", self.fidelity_name, FIDELITIES),
        ):
            ok = value in allowed or (key == "ablation" and value is None)  # None: the full model
            require(ok, key, f"must be one of {allowed}", value)
        stages = list(self.stages)
        require(bool(stages), "stages", "must list at least one stage")
        bad = [s for s in stages if s not in STAGES]
        require(not bad, "stages", f"has unknown stages {bad}; known {STAGES}")
        require(
            stages == [s for s in STAGES if s in stages], "stages", f"must follow {STAGES}", stages
        )
        self._check_stage_lengths(stages)
        require(
            self.export.round_to == 1 or self.pruning.method == "cofi",
            "export.round_to",
            f"rounds widths by CoFi's gate scores, which pruning.method={self.pruning.method} "
            "does not learn: set export.round_to=1",
            self.export.round_to,
        )
        check_target_kwargs(self.trainer, "trainer", TRAINER_PIPELINE_KWARGS)
        for group, passed in (("logger", LOGGER_PIPELINE_KWARGS), ("callbacks", ())):
            for name, node in getattr(self, group).items():
                if isinstance(node, dict) and "_target_" in node:
                    check_target_kwargs(node, f"{group}.{name}", passed)
        self._check_teacher()

    def _check_stage_lengths(self, stages: list[str]) -> None:
        """Every training stage the run includes trains at least one step (a teacher given by
        ``distill.teacher``, the ``uniform`` and ``posttrain`` prune stages and a finetune stage
        of ``max_steps=0`` train nothing, whatever their length)."""
        trained = {
            "teacher": self.distill.teacher_training
            if self.distill.enabled and self.distill.teacher is None
            else None,
            "prune": self.pruning if self.pruning.method == "cofi" else None,
            "finetune": self.pruning.finetune if self.pruning.finetune.max_steps else None,
        }
        training = [s for s in stages if trained.get(s) is not None]
        for stage in training:
            trained[stage].check_trains(stage)
        p = self.pruning
        if "prune" in training and p.max_steps > 0:
            # lengths all in steps: known now; in epochs: at the door (``preflight``)
            p.check_fits(None, p.max_steps, f"pruning.max_steps={p.max_steps}")
        if training:
            require(
                self.trainer.get("limit_train_batches") != 0,
                "trainer.limit_train_batches",
                "is 0, so no stage would train; set null (all batches) or a count >= 1",
            )

    def _check_teacher(self) -> None:
        d = self.distill
        if d.teacher is not None and not d.enabled:
            # Not an error: a sweep shares `distill.teacher=<dir>` across ablations, no_distill too.
            log.warning("distill.teacher=%s is not used: distill.enabled is false", d.teacher)
        elif d.teacher is not None:
            labels = _teacher_num_labels(d.teacher)
            require(
                labels is None or labels == self.task.num_labels,
                "distill.teacher",
                f"has {labels} labels but task {self.task.name} needs {self.task.num_labels}",
                d.teacher,
            )

    def check_stage_inputs(self, run_dir: str | Path) -> None:
        """Stages that start midway find what the skipped stages leave in ``run_dir``."""
        from cofi_lightning.run.operating_points import operating_points

        stages = list(self.stages)
        points = operating_points(self.pruning.target_list)
        require(
            len(points) == 1 or not self.pruning.structure_dir,
            "pruning.structure_dir",
            "names one structure but pruning.targets has several; run the path's prune stage in "
            "this run directory, or finetune each structure in a run of its own (one target)",
        )
        if "finetune" in stages and "prune" not in stages:
            for point in points:
                candidates = [self.pruning.structure_dir, str(point.best_dir(run_dir))]
                found = any(c and (Path(c) / "masks.pt").is_file() for c in candidates)
                require(
                    found,
                    "stages",
                    "has 'finetune' without 'prune' but no pruned structure: "
                    "set pruning.structure_dir=<dir with masks.pt> or run the prune stage",
                )
        if "export" in stages and "finetune" not in stages:
            done = all(
                (Path(run_dir) / point.stage("finetune") / "DONE.json").is_file()
                for point in points
            )
            require(
                done, "stages", "has 'export' without 'finetune' and no finished finetune stage"
            )


#: Arguments the pipeline passes itself when it instantiates a node (not config keys).
TRAINER_PIPELINE_KWARGS = ("max_epochs", "max_steps", "logger", "callbacks", "default_root_dir")
LOGGER_PIPELINE_KWARGS = ("save_dir", "name", "run_dir", "run_id", "config")


def _teacher_num_labels(teacher: str) -> int | None:
    """``num_labels`` of a local HF checkpoint (None if it cannot be read locally)."""
    config = Path(teacher) / "config.json"
    if not config.is_file():
        return None
    values = json.loads(config.read_text())
    if "num_labels" in values:
        return int(values["num_labels"])
    return len(values.get("id2label", {})) or 2  # transformers' default when neither is stored


def load_config(cfg: DictConfig | TrainConfig) -> TrainConfig:
    """The typed, validated config of a composed ``conf/train.yaml`` (a bad value or an
    interpolation that does not resolve raises :class:`ConfigError` naming the key)."""
    if isinstance(cfg, TrainConfig):
        return cfg
    try:
        out = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "config"
        raise ConfigError(f"{key}: {getattr(err, 'msg', err)}") from None
    if not isinstance(out, TrainConfig):
        raise ConfigError(
            "config: not a TrainConfig composition (conf/train.yaml's defaults list "
            "must start with train_schema)"
        )
    return out


ConfigStore.instance().store(name="train_schema", node=TrainConfig)
