"""The schema of the training stages (teacher, prune, finetune) and of distillation; part of the
one config schema that ``schema.py`` assembles."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from cofi_lightning.config.checks import (
    ConfigError,
    at_least,
    counts_or_null,
    fractions,
    one_of,
    require,
)
from cofi_lightning.core.masks import UNIT_NAMES

SCHEDULES: tuple[str, ...] = ("linear", "constant")
LAYER_MAPPINGS: tuple[str, ...] = ("dynamic", "fixed")
LAYER_LOSS_TOKENS: tuple[str, ...] = ("real", "all")
SELECT_ON: tuple[str, ...] = ("deterministic", "expected")
#: ``pruning.method``'s values and how logs name them.
METHOD_NAMES: dict[str, str] = {
    "cofi": "CoFi",
    "uniform": "Uniform-width baseline",
    "posttrain": "Post-training pruning",
}
METHODS: tuple[str, ...] = tuple(METHOD_NAMES)
STUDENT_INITS: tuple[str, ...] = ("pretrained", "teacher")
MASK_INITS: tuple[str, ...] = ("default", "posttrain")
CONSTRAINTS: tuple[str, ...] = ("params", "latency")
RESCALE_MODES: tuple[str, ...] = ("auto", "always", "never")


@dataclass
class StageConfig:
    """Length, learning rate and evaluation cadence of one training stage.

    Attributes:
        epochs: Passes over the training data.
        max_steps: > 0 caps the stage in optimizer steps (-1: epochs decide).
        lr: Learning rate of the weights (paper: 2e-5 GLUE, 3e-5 SQuAD).
        schedule: ``linear`` (warm-up, then linear decay to 0) or ``constant``.
        eval_every_steps: Validate every n optimizer steps (None: once per epoch).
    """

    KEY: ClassVar[str] = "stage"

    epochs: int = 1
    max_steps: int = -1
    lr: float = 2.0e-5
    schedule: str = "linear"
    eval_every_steps: int | None = None

    def __post_init__(self) -> None:
        at_least(self, self.KEY, ("epochs", "lr"), 0, strict=False)
        require(
            self.max_steps >= -1,
            f"{self.KEY}.max_steps",
            "must be -1 (epochs decide) or >= 0",
            self.max_steps,
        )
        one_of(self, self.KEY, {"schedule": SCHEDULES})
        counts_or_null(self, self.KEY, ("eval_every_steps",))

    def check_trains(self, stage: str) -> None:
        """A stage that runs trains at least one step (Lightning stops at once on a length of 0,
        and the stage would save its untrained model as if trained)."""
        for name in ("epochs", "max_steps"):
            require(
                getattr(self, name) != 0,
                f"{self.KEY}.{name}",
                f"is 0, so the {stage} stage would train nothing; give it a length or remove "
                f"'{stage}' from stages",
            )


@dataclass
class TeacherTrainingConfig(StageConfig):
    """The teacher stage (CoFi's run_FT.sh: 5 epochs, lr 2e-5, batch 32).

    Attributes:
        select_best: Keep the weights of the best validation instead of the last ones.
    """

    KEY: ClassVar[str] = "distill.teacher_training"

    epochs: int = 3
    select_best: bool = True


@dataclass
class FinetuneConfig(StageConfig):
    """The finetune stage of the compact model (CoFi's finetune script: no scheduler, batch 64).
    ``max_steps=0`` skips it: the export is the pruned structure as the prune stage left it.

    Attributes:
        batch_size: Training batch size of this stage (None: ``task.datamodule.batch_size``).
        select_best: Export the weights of the best validation (as CoFi), not the last ones.
    """

    KEY: ClassVar[str] = "pruning.finetune"

    epochs: int = 20
    lr: float = 3.0e-5  # paper searched {1, 2, 3}e-5
    schedule: str = "constant"
    batch_size: int | None = None
    select_best: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        counts_or_null(self, self.KEY, ("batch_size",))


@dataclass
class PosttrainConfig:
    """``pruning.method=posttrain`` (Kwon et al. 2022; ``cofi_lightning.core.posttrain``).

    Attributes:
        num_samples: Training examples (the first of the seeded training order) of the Fisher
            importance and of the rescaling (paper: 2048).
        batch_size: Examples per calibration batch (the Fisher sums squared per-batch gradients).
        rearrange: Rearrange each layer's kept heads / FFN dims by the layer's Fisher block.
        rescale: Tune the kept units' mask values by least squares, layer by layer: ``auto``
            keeps the tuned values only if they lower the task loss on the calibration
            examples (tuning can raise it at moderate sparsity: docs/results/posttrain);
            ``always`` keeps them (the paper's code); ``never`` does not tune.
    """

    num_samples: int = 2048
    batch_size: int = 32
    rearrange: bool = True
    rescale: str = "auto"

    def __post_init__(self) -> None:
        at_least(self, "pruning.posttrain", ("num_samples", "batch_size"), 1, strict=False)
        one_of(self, "pruning.posttrain", {"rescale": RESCALE_MODES})


@dataclass
class PathConfig:
    """The schedule of a sparsity path (``pruning.targets`` with several targets): ramp to each
    target, hold it for a dwell, ramp to the next; the last is held to the end (steps win over
    epochs).

    Attributes:
        ramp_epochs / ramp_steps: Length of each ramp between consecutive targets (None: at the
            first ramp's rate, i.e. ``lagrangian_warmup × (t_k − t_{k−1}) / (t_1 − start)``).
        dwell_epochs / dwell_steps: Steps held at each target but the last before ramping on;
            the best structure of a target is chosen among the evaluations of this dwell.
    """

    ramp_epochs: float | None = None
    ramp_steps: int | None = None
    dwell_epochs: float = 1.0
    dwell_steps: int | None = None

    def __post_init__(self) -> None:
        lengths = ("ramp_epochs", "ramp_steps", "dwell_epochs", "dwell_steps")
        at_least(self, "pruning.path", lengths, 0, strict=False)


@dataclass
class PruningConfig(StageConfig):
    """The prune stage (masks + Lagrangian, Xia et al. 2022 Sec. 3) and the finetune stage after it
    (a length in steps, when given, wins over one in epochs).

    Attributes:
        method: ``cofi`` learns the structure; ``uniform`` is the simple baseline: every layer
            keeps the same number of heads and FFN dims, those of largest weight norm, at the
            target sparsity (``cofi_lightning.core.uniform``), and the prune stage trains nothing;
            ``posttrain`` prunes the fine-tuned teacher's heads and FFN dims without training
            (Kwon et al. 2022; settings in ``posttrain``; ``units`` does not apply).
        student_init: What the prune stage's student starts from: ``pretrained``
            (``model.pretrained``, as the paper) or ``teacher`` (the fine-tuned teacher, of the
            same family and shape).
        mask_init: The initial log-alphas of ``method=cofi``'s gates: ``default`` (CoFi's,
            :data:`~cofi_lightning.core.masks.COFI_INIT_LOG_ALPHA`) or ``posttrain`` (the head and
            FFN-dim gates start from the fine-tuned teacher's Fisher importance on ``posttrain``'s
            calibration examples: ``cofi_lightning.core.posttrain.warm_start_``).
        target_sparsity: Final target t of the encoder parameters, in [0, 1) (ignored when
            ``targets`` is set).
        targets: A sparsity path: ascending targets in [0, 1) pruned to one after the other in
            one prune stage (``path`` sets the schedule), each with its own best structure,
            finetune and export. None: the single ``target_sparsity``.
        constraint: What the Lagrangian constrains: ``params`` (CoFi: the expected encoder
            parameters, to ``target_sparsity``) or ``latency`` (the expected latency on a device,
            to ``target_speedup``; ``cofi_lightning.core.constraint``).
        target_speedup: With ``constraint=latency``: x > 1, the target is the unpruned latency / x.
        latency_table: With ``constraint=latency``: the device's latency table, profiled on this
            machine into this file when missing (None: ``<run_dir>/prune/latency_table.json``).
        start_sparsity: t at the first pruning step (0 in CoFi).
        units: Mask types (``hidden``, ``head``, ``head_layer``, ``intermediate``, ``mlp``).
        reg_lr: Learning rate of the mask log-alphas and the multipliers (paper: 0.01).
        pre_pruning_epochs / pre_pruning_steps: Distillation-only warm-up before the masks and the
            Lagrangian switch on (CoFi README: 1 epoch large GLUE, 4 small).
        lagrangian_warmup_epochs / lagrangian_warmup_steps: Linear ramp of t from
            ``start_sparsity`` to the target (paper: 2 epochs large GLUE, 20 small).
        multiplier_reset: Anti-windup of the Lagrangian (docs/method.md); False is the original's
            plain ascent.
        sparsity_epsilon: An evaluation competes for "best" when |s − t| <= epsilon.
        select_on: Which sparsity s that window reads: ``deterministic`` (the real sparsity of the
            deterministic masks, i.e. of the export) or ``expected`` (the gates' ŝ, as CoFi).
        checkpoint_every_steps: Resume granularity (``last.ckpt``) of every stage.
        restart_optimizer: When the masks switch on, restart the weights' AdamW state and schedule
            as the original; False keeps one optimizer and schedule for the whole stage.
        structure_dir: Finetune-only runs: a ``prune/best`` dir (``masks.pt``, ``student.pt``).
        path: Ramp and dwell lengths of a sparsity path (``targets``).
        posttrain: The settings of ``method=posttrain``.
        finetune: The finetune stage.
    """

    KEY: ClassVar[str] = "pruning"

    epochs: int = 20
    eval_every_steps: int | None = 500
    method: str = "cofi"
    student_init: str = "pretrained"
    mask_init: str = "default"
    target_sparsity: float = 0.95
    targets: list[float] | None = None
    constraint: str = "params"
    target_speedup: float | None = None
    latency_table: str | None = None
    start_sparsity: float = 0.0
    units: list[str] = field(default_factory=lambda: list(UNIT_NAMES))
    reg_lr: float = 0.01
    pre_pruning_epochs: float = 1.0
    pre_pruning_steps: int | None = None
    lagrangian_warmup_epochs: float = 2.0
    lagrangian_warmup_steps: int | None = None
    multiplier_reset: bool = True
    sparsity_epsilon: float = 0.01
    select_on: str = "deterministic"
    checkpoint_every_steps: int = 200
    restart_optimizer: bool = False
    structure_dir: str | None = None
    path: PathConfig = field(default_factory=PathConfig)
    posttrain: PosttrainConfig = field(default_factory=PosttrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        fractions(self, "pruning", ("target_sparsity", "start_sparsity"))
        self._check_targets()
        units = list(self.units)
        unknown = sorted(set(units) - set(UNIT_NAMES))
        require(not unknown, "pruning.units", f"has unknown units {unknown}; known {UNIT_NAMES}")
        require(bool(units), "pruning.units", "must name at least one unit")
        lengths = ("pre_pruning_epochs", "pre_pruning_steps")
        lengths += ("lagrangian_warmup_epochs", "lagrangian_warmup_steps")
        at_least(self, "pruning", ("reg_lr", "sparsity_epsilon", *lengths), 0, strict=False)
        at_least(self, "pruning", ("checkpoint_every_steps",), 1, strict=False)
        one_of(
            self,
            "pruning",
            {
                "method": METHODS,
                "student_init": STUDENT_INITS,
                "mask_init": MASK_INITS,
                "constraint": CONSTRAINTS,
            },
        )
        require(
            self.mask_init == "default" or self.method == "cofi",
            "pruning.mask_init",
            f"is posttrain, which warm-starts CoFi's gates; pruning.method={self.method} trains "
            "none: set pruning.mask_init=default",
        )
        if self.constraint == "latency":
            require(
                self.target_speedup is not None and self.target_speedup > 1,
                "pruning.target_speedup",
                "must be > 1 with pruning.constraint=latency (the unpruned latency / target)",
                self.target_speedup,
            )
        one_of(self, "pruning", {"select_on": SELECT_ON})

    def _check_targets(self) -> None:
        if self.targets is None:
            return
        targets = [float(t) for t in self.targets]
        require(bool(targets), "pruning.targets", "must list at least one target (or be null)")
        ok = all(0.0 <= t < 1.0 for t in targets)
        require(ok, "pruning.targets", "must all be in [0, 1)", targets)
        require(
            targets[0] > self.start_sparsity,
            "pruning.targets",
            f"must start above pruning.start_sparsity ({self.start_sparsity})",
            targets,
        )
        gaps = [b - a for a, b in zip(targets, targets[1:], strict=False)]
        require(
            all(g > 2 * self.sparsity_epsilon for g in gaps),
            "pruning.targets",
            "must be ascending, consecutive targets more than 2 x pruning.sparsity_epsilon "
            f"({self.sparsity_epsilon}) apart so their selection windows do not overlap",
            targets,
        )
        require(
            self.constraint == "params" or len(targets) == 1,
            "pruning.targets",
            "with several targets needs pruning.constraint=params (a latency path is not "
            "supported yet)",
            targets,
        )

    def check_fits(self, steps_per_epoch: int | None, total: int | None, stage: str = "") -> None:
        """Pre-pruning + the ramps (+ the dwells of a path) end before the prune stage does, so it
        spends at least one step at its (last) target. Called by the config (lengths in steps),
        the door and the stage itself, whichever knows the lengths.

        Args:
            steps_per_epoch: Optimizer steps per epoch; None: only lengths all in steps are checked.
            total: Optimizer steps of the stage (None: nothing is checked).
            stage: How ``total`` was counted, for the message (``"pruning.max_steps=10"``).
        """
        p, path = self.path, len(self.target_list) > 1
        in_epochs = [self.pre_pruning_steps, self.lagrangian_warmup_steps]
        if path:
            in_epochs.append(p.dwell_steps)
            in_epochs.append(p.ramp_steps if p.ramp_epochs is not None else 0)
        if total is None or (steps_per_epoch is None and None in in_epochs):
            return
        pre = self.steps(steps_per_epoch or 1)[0]
        ramps, dwells = self.path_steps(steps_per_epoch or 1)
        needed = pre + sum(ramps) + sum(dwells)
        if needed < total:
            return
        has = f"the prune stage has {total}" + (f" ({stage})" if stage else "")
        if path:
            raise ConfigError(
                f"pruning.targets: the path needs {needed} steps to reach "
                f"{self.target_list[-1]} (pre-pruning {pre}, ramps {ramps}, dwells {dwells}) but "
                f"{has}; lengthen pruning.max_steps / pruning.epochs or shorten "
                "pruning.path.dwell_* / pruning.path.ramp_* / pruning.lagrangian_warmup_*"
            )
        raise ConfigError(
            f"pruning.lagrangian_warmup: pre-pruning ({pre} steps) and the warm-up to the target "
            f"({ramps[0]} steps) need {needed} steps but {has}, so the target would never be "
            "held; lengthen pruning.max_steps / pruning.epochs or shorten "
            "pruning.pre_pruning_* / pruning.lagrangian_warmup_*"
        )

    @property
    def target_list(self) -> list[float]:
        """The operating targets: ``targets``, or ``[target_sparsity]`` (one source for both)."""
        if self.targets is None:
            return [float(self.target_sparsity)]
        return [float(t) for t in self.targets]

    def steps(self, steps_per_epoch: int) -> tuple[int, int]:
        """``(pre_pruning_steps, lagrangian_warmup_steps)`` in optimizer steps."""
        return (
            _resolve(self.pre_pruning_steps, self.pre_pruning_epochs, steps_per_epoch),
            _resolve(self.lagrangian_warmup_steps, self.lagrangian_warmup_epochs, steps_per_epoch),
        )

    def path_steps(self, steps_per_epoch: int) -> tuple[list[int], list[int]]:
        """``(ramps, dwells)`` of the target path in optimizer steps: ``ramps[k]`` reaches
        ``target_list[k]`` (``ramps[0]`` is the Lagrangian warm-up), ``dwells[k]`` holds it before
        ``ramps[k + 1]`` (one fewer dwell than targets: the last target is held to the end)."""
        targets, p = self.target_list, self.path
        first = self.steps(steps_per_epoch)[1]
        ramps = [first]
        for a, b in zip(targets, targets[1:], strict=False):
            if p.ramp_steps is not None or p.ramp_epochs is not None:
                ramps.append(_resolve(p.ramp_steps, p.ramp_epochs or 0.0, steps_per_epoch))
            else:  # at the first ramp's rate (steps per unit of sparsity)
                ramps.append(round(first / (targets[0] - self.start_sparsity) * (b - a)))
        dwell = _resolve(p.dwell_steps, p.dwell_epochs, steps_per_epoch)
        return ramps, [dwell] * (len(targets) - 1)


def steps_per_epoch(
    examples: int,
    batch_size: int,
    world_size: int = 1,
    limit_batches: int | float | None = None,
    accumulate: int = 1,
) -> int:
    """Optimizer steps in one epoch of ``examples`` training rows: each rank's shard (the
    sampler pads shards to equal size) in batches, cut by Lightning's ``limit_train_batches`` (a
    count, or a fraction), over gradient accumulation; at least 1."""
    batches = math.ceil(math.ceil(examples / world_size) / batch_size)
    if isinstance(limit_batches, int):
        batches = min(batches, limit_batches)
    elif limit_batches is not None:
        batches = int(batches * limit_batches)
    return max(1, math.ceil(batches / accumulate))


def stage_total(per_epoch: int, max_epochs: int | None, max_steps: int | None) -> int:
    """Optimizer steps of a stage: ``max_epochs`` epochs, capped by ``max_steps`` when > 0 (a
    trainer with ``max_epochs=-1`` runs ``max_steps`` alone)."""
    total = per_epoch * max(1, max_epochs or 1)
    if max_steps is not None and max_steps > 0:
        total = max_steps if max_epochs == -1 else min(total, max_steps)
    return total


def _resolve(steps: int | None, epochs: float, steps_per_epoch: int) -> int:
    """A length in optimizer steps: ``steps`` if given, else ``epochs`` converted."""
    return int(steps) if steps is not None else round(epochs * steps_per_epoch)


@dataclass
class DistillConfig:
    """Distillation from a fine-tuned teacher: prediction KL at temperature T + layer MSE.

    Attributes:
        enabled: False trains on the task loss (CE, MSE for STS-B); the teacher stage is skipped.
        teacher: A fine-tuned HF model dir (or hub name); None fine-tunes one in the teacher stage.
        temperature: T of the prediction KL (paper: 2).
        alpha_pred / alpha_layer: Loss weights (paper pairs (layer, pred): (0.9, 0.1), (0.7, 0.3),
            (0.5, 0.5)); ``alpha_layer=0`` turns layer distillation off.
        layer_mapping: ``dynamic`` (CoFi) or ``fixed`` teacher -> student layer matching.
        layer_loss_tokens: Which positions the layer MSE averages over: ``real`` tokens, or
            ``all`` positions of the batch (padding included, as the original).
        teacher_cache: Read the teacher's logits and hidden states from an on-disk cache shared
            by every job that needs it instead of running the teacher at every step
            (``cofi_lightning.run.teacher_cache``; needs ``layer_loss_tokens=real``).
        reuse_teacher: Copy a finished teacher of the same teacher identity from a run directory
            beside this one into ``teacher/model`` instead of training one
            (``docs/running.md``; not part of the run's identity).
        teacher_training: The teacher stage.
    """

    KEY: ClassVar[str] = "distill"

    enabled: bool = True
    teacher: str | None = None
    temperature: float = 2.0
    alpha_pred: float = 0.1
    alpha_layer: float = 0.9
    layer_mapping: str = "dynamic"
    layer_loss_tokens: str = "real"
    teacher_cache: bool = True
    reuse_teacher: bool = True
    teacher_training: TeacherTrainingConfig = field(default_factory=TeacherTrainingConfig)

    def __post_init__(self) -> None:
        at_least(self, "distill", ("temperature",), 0, strict=True)
        at_least(self, "distill", ("alpha_pred", "alpha_layer"), 0, strict=False)
        one_of(
            self,
            "distill",
            {"layer_mapping": LAYER_MAPPINGS, "layer_loss_tokens": LAYER_LOSS_TOKENS},
        )
        require(
            not (self.teacher_cache and self.layer_loss_tokens == "all"),
            "distill.teacher_cache",
            "needs distill.layer_loss_tokens=real (the teacher's states at padding positions "
            "depend on the batch, so they cannot be cached); set distill.teacher_cache=false",
        )
