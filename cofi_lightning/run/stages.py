"""The four CoFi stages: teacher, prune, finetune, export. Each returns its DONE record.

This file owns what each stage builds and trains and which files it leaves in the run directory:

* ``teacher/model``: the fine-tuned teacher (HF format + tokenizer), unless ``distill.teacher`` is
  given (then only evaluated) or distillation is off (skipped); a finished teacher of the same
  teacher identity beside the run is copied instead of trained (``distill.reuse_teacher``);
* ``prune/best``: the best deterministic masks and full-size student weights
  (:class:`~cofi_lightning.training.callbacks.BestMasksCheckpoint`); ``prune/structure``:
  tables/heatmaps;
* ``finetune/model``: the compact model after fine-tuning with distillation;
* ``pruned_model``: the exported compact model + tokenizer, loadable with the Auto classes.

The student starts from the *pretrained* model in the prune stage (as in the paper), not from the
teacher. For the finetune stage the layer-distillation projection keeps the prune stage's weights
with its input columns cut to the kept hidden dims: the compact model's hidden states equal the
masked model's on those dims (the soft hidden mask is folded into the weights), so the loss is
unchanged.
The stage order is ``cofi_lightning.config.STAGES``; resume and records live in
``cofi_lightning.run.pipeline``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from omegaconf import OmegaConf
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

from cofi_lightning.config import ConfigError, config_identity
from cofi_lightning.config.identity import teacher_identity
from cofi_lightning.core.constraint import (
    LatencyConstraint,
    ParamsConstraint,
    check_latency_family,
    load_latency_table,
)
from cofi_lightning.core.distillation import LayerDistiller
from cofi_lightning.core.masks import CoFiMasks, Masks
from cofi_lightning.latency import LatencyTable, structure_latency
from cofi_lightning.modeling.structure import Structure
from cofi_lightning.run.context import RunContext, barrier, is_global_zero
from cofi_lightning.run.model_card import write_card
from cofi_lightning.run.operating_points import OperatingPoint, recorded_target
from cofi_lightning.run.teacher_reuse import TEACHER_MODEL, as_recorded, copy_teacher, find_teacher
from cofi_lightning.training.callbacks import (
    BestMasksCheckpoint,
    BestWeights,
    EvaluateOnWindowEntry,
    StructureLogger,
    load_masks,
)
from cofi_lightning.training.callbacks.best_masks import save_structure
from cofi_lightning.training.callbacks.structure import save_heatmap
from cofi_lightning.training.lit_module import CoFiSystem


def _teacher(ctx: RunContext) -> torch.nn.Module | None:
    """The frozen teacher of the prune / finetune stages (None without distillation)."""
    record = ctx.records.get("teacher", {})
    path = record.get("teacher_dir")
    return None if path is None else ctx.load_model(path)


def _attach_teacher_cache(ctx: RunContext, system: CoFiSystem) -> None:
    """Serve the teacher's training outputs from the on-disk cache (``distill.teacher_cache``).

    Built on first use by the job that needs it (rank 0 under DDP; the others wait at the
    barrier) and shared by every later job with the same teacher, features and layers."""
    d = ctx.cfg.distill
    if system.teacher is None or not d.teacher_cache:
        return
    if ctx.task.family == "squad":
        rank_zero_info("teacher cache: not used for QA (its padding logits depend on the batch)")
        return
    from cofi_lightning.run.teacher_cache import open_or_build

    dm = ctx.datamodule
    dm.setup("fit")
    accelerator = str(ctx.cfg.trainer.get("accelerator", "auto"))
    if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda"):
        system.teacher.to(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")  # build on the GPU
    depth = system.teacher.config.num_hidden_layers
    layers = system.layer_distiller.distilled_layers(depth) if system.layer_distiller else []
    kwargs = dict(
        features_key=dm.feature_keys[f"{ctx.task.train_split}/{dm.family}"],
        layers=layers,
        root=Path(dm.cache_dir) / "teacher_outputs",
        pad_token_id=ctx.tokenizer.pad_token_id,
        batch_size=max(dm.eval_batch_size, dm.batch_size),
    )
    if is_global_zero():
        system.teacher_cache = open_or_build(system.teacher, dm.train_dataset, **kwargs)
    barrier()
    if not is_global_zero():
        system.teacher_cache = open_or_build(system.teacher, dm.train_dataset, **kwargs)


def _fit(
    ctx: RunContext, stage: str, system: CoFiSystem, trainer, best: BestWeights | None = None
) -> dict[str, float]:
    """Fit (resuming if possible), restore the best weights if kept, then validate once more so
    the record has the metrics of the weights the stage saves.

    That last validation reaches the loggers only when it adds a point to the curves: not for
    restored best weights (an earlier step's model), nor at a step that was just evaluated."""
    trainer.fit(system, datamodule=ctx.datamodule, ckpt_path=ctx.resume_path(stage))
    barrier()  # rank 0 wrote the best weights
    restored = best is not None and best.restore(system)
    if restored:
        rank_zero_info(f"[{stage}] keeping the best weights (step {best.best_step})")
    system.log_val = not restored and system.last_val_step != trainer.global_step
    trainer.validate(system, datamodule=ctx.datamodule, verbose=False)
    ctx.close_loggers(trainer.loggers)
    return dict(system.last_val_metrics)


def _save(model: torch.nn.Module, ctx: RunContext, path: Path) -> None:
    """Model + tokenizer in HF format, readable by others as the umask allows (safetensors
    writes its file 0600 via a temporary file: shared-cluster colleagues could not read it)."""
    if is_global_zero():
        model.save_pretrained(path)
        ctx.tokenizer.save_pretrained(path)
        umask = os.umask(0)
        os.umask(umask)
        for file in path.rglob("*"):
            if file.is_file():
                file.chmod(0o666 & ~umask)


def _train_and_save(ctx: RunContext, stage: str, system: CoFiSystem) -> tuple[Path, dict]:
    """Train ``system`` for one stage and save its student to ``<run_dir>/<stage>/model``.

    The stage's length, evaluation cadence and ``select_best`` (keep the weights of the best
    validation instead of the last ones) come from ``system.stage``.

    Returns:
        The model directory and the final validation metrics (without the ``val/`` prefix).
    """
    settings = system.stage
    best = BestWeights(ctx.run_dir / stage / "best_student.pt") if settings.select_best else None
    trainer = ctx.trainer(
        stage,
        max_epochs=settings.epochs,
        max_steps=settings.max_steps,
        eval_every_steps=settings.eval_every_steps,
        callbacks=[best] if best is not None else [],
    )
    metrics = _fit(ctx, stage, system, trainer, best)
    out = ctx.run_dir / stage / "model"
    _save(system.student, ctx, out)
    barrier()
    return out, _strip(metrics)


def teacher_stage(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.cfg
    if not cfg.distill.enabled:
        return {"skipped": "distill.enabled is false", "teacher_dir": None, "metrics": {}}
    if cfg.distill.teacher is not None:
        model = ctx.load_model(cfg.distill.teacher)
        return {"teacher_dir": str(cfg.distill.teacher), "metrics": ctx.evaluate(model)}
    identity = as_recorded(teacher_identity(config_identity(OmegaConf.structured(cfg))))
    if cfg.distill.reuse_teacher:
        reused = _reuse_teacher(ctx, identity)
        if reused is not None:
            return reused
    system = CoFiSystem(
        ctx.load_model(cfg.model.pretrained),
        task=ctx.task.name,
        stage=cfg.distill.teacher_training,
        optim=cfg.optim,
        seed=cfg.seed,
    )
    out, metrics = _train_and_save(ctx, "teacher", system)
    return {"teacher_dir": str(out), "metrics": metrics, "teacher_identity": identity}


def _reuse_teacher(ctx: RunContext, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The teacher record of a finished teacher of the same teacher identity beside this run,
    copied into ``teacher/model`` (None when there is none: the stage trains one)."""
    found = find_teacher(ctx.run_dir, identity)
    if found is None:
        return None
    src, record = found
    out = ctx.run_dir / TEACHER_MODEL
    if is_global_zero():
        copy_teacher(src, out)
    barrier()
    rank_zero_info(
        f"[teacher] reusing the finished teacher of {src.parents[1]} (same teacher identity; "
        "distill.reuse_teacher=false trains one here)"
    )
    return {
        "teacher_dir": str(out),
        "metrics": record["metrics"],
        "teacher_identity": identity,
        "reused_from": str(src),
    }


def _uniform_structure(ctx: RunContext, student: torch.nn.Module) -> dict[str, Any]:
    """``pruning.method=uniform``: write the baseline's structure of every target where the prune
    stage writes CoFi's best one (``prune/best``), with the pretrained weights; nothing is
    trained."""
    from cofi_lightning.core.uniform import uniform_masks

    p = ctx.cfg.pruning
    bests, metrics = {}, {}
    gates = CoFiMasks(student.config, units=list(p.units))  # shapes and the parameter formula
    for point in ctx.points:
        masks, sparsity = uniform_masks(student, gates, point.target)
        metrics = ctx.evaluate(student.prune(masks))
        bests[point.label] = meta = {
            "step": 0,
            "metric": metrics.get(ctx.task.main_metric_key),
            "main_metric": f"val/{ctx.task.main_metric_key}",
            "expected_sparsity": sparsity,
            "deterministic_sparsity": sparsity,
            "reached_target": abs(sparsity - point.target) <= p.sparsity_epsilon,
            "method": "uniform",
        }
        if is_global_zero():
            save_structure(point.best_dir(ctx.run_dir), masks, student, meta)
        barrier()
        rank_zero_info(f"[prune] uniform structure at sparsity {sparsity:.3f}: nothing to train")
    return _prune_record(ctx, bests, metrics)


def _prune_record(ctx: RunContext, bests: dict[str, dict], metrics: dict) -> dict[str, Any]:
    """The prune stage's DONE record: ``structure_dir`` and ``best`` (the selected evaluation's
    meta) of a single target; ``structure_dirs`` and ``best`` keyed by target on a path."""
    if len(ctx.points) == 1:
        point = ctx.points[0]
        return {
            "structure_dir": str(point.best_dir(ctx.run_dir)),
            "best": bests[point.label],
            "metrics": metrics,
        }
    return {
        "structure_dirs": {pt.label: str(pt.best_dir(ctx.run_dir)) for pt in ctx.points},
        "best": bests,
        "metrics": metrics,
    }


def latency_table(ctx: RunContext, config) -> LatencyTable:
    """The latency table of ``pruning.constraint=latency``: read, or profiled here when missing.

    Raises:
        ConfigError: the table cannot serve the run (:func:`load_latency_table`; checked at the
            door already when the file existed then).
    """
    from cofi_lightning.latency.profile import profile
    from cofi_lightning.latency.timing import device_name

    p = ctx.cfg.pruning
    path = Path(p.latency_table or ctx.run_dir / "prune" / "latency_table.json")
    if not path.is_file():
        rank_zero_info(
            f"pruning.latency_table: {path} does not exist; profiling this machine (cpu, fp32, "
            "batch 32 x 128) into it"
        )
        if is_global_zero():
            profile(config).save(path)
        barrier()
    table = load_latency_table(path, config, p.target_speedup, "hidden" in p.units)
    here = device_name(torch.device("cpu"))
    if table.meta.get("device") == "cpu" and table.meta.get("device_name") != here:
        rank_zero_warn(
            f"pruning.latency_table {path} was profiled on {table.meta.get('device_name')}, this "
            f"machine is {here}: the constraint targets the speed of the table's device"
        )
    return table


def _constraint(ctx: RunContext, config):
    p = ctx.cfg.pruning
    if p.constraint == "latency":
        check_latency_family(ctx.family)
        return LatencyConstraint(latency_table(ctx, config), p.target_speedup)
    return ParamsConstraint(p.target_list)


def prune_stage(ctx: RunContext) -> dict[str, Any]:
    cfg, p = ctx.cfg, ctx.cfg.pruning
    student = ctx.load_model(cfg.model.pretrained)
    if p.method == "uniform":
        return _uniform_structure(ctx, student)
    constraint = _constraint(ctx, student.config)
    system = CoFiSystem(
        student,
        task=ctx.task.name,
        stage=p,
        optim=cfg.optim,
        freeze_embeddings=cfg.model.freeze_embeddings,
        masks=CoFiMasks(student.config, units=list(p.units)),
        teacher=_teacher(ctx),
        distill=cfg.distill,
        seed=cfg.seed,
        constraint=constraint,
    )
    _attach_teacher_cache(ctx, system)
    eps = p.sparsity_epsilon
    # One best structure per target (a path names each callback, so their checkpointed states
    # stay apart); the constraint's targets are the points' (latency: the target reduction).
    path = len(ctx.points) > 1
    bests = [
        BestMasksCheckpoint(
            point.best_dir(ctx.run_dir),
            target,
            eps,
            p.select_on,
            prefix=constraint.prefix,
            name=point.label if path else None,
        )
        for point, target in zip(ctx.points, constraint.targets, strict=True)
    ]
    window = EvaluateOnWindowEntry(list(constraint.targets), eps, p.select_on)
    every = (cfg.callbacks.get("structure") or {}).get("heatmap_every_n_evals", 1)
    heatmap_target = None if p.constraint == "latency" else p.target_list[-1]  # not a sparsity
    structure = StructureLogger(ctx.run_dir / "prune" / "structure", every, heatmap_target)
    trainer = ctx.trainer(
        "prune",
        max_epochs=p.epochs,
        max_steps=p.max_steps,
        eval_every_steps=p.eval_every_steps,
        callbacks=[window, *bests, structure],
    )
    metrics = _fit(ctx, "prune", system, trainer)
    for best in bests:
        best.finalize(trainer, system)
    barrier()
    metas = {
        point.label: json.loads((point.best_dir(ctx.run_dir) / "meta.json").read_text())
        for point in ctx.points
    }
    return _prune_record(ctx, metas, _strip(metrics))


def _structure_dir(ctx: RunContext, point: OperatingPoint) -> Path:
    """The point's structure: this run's ``prune/best[_<t>]``, or ``pruning.structure_dir`` of a
    finetune-only run."""
    if "prune" in ctx.records:
        return point.best_dir(ctx.run_dir)
    return Path(ctx.cfg.pruning.structure_dir or point.best_dir(ctx.run_dir))


def finetune_stage(ctx: RunContext, point: OperatingPoint) -> dict[str, Any]:
    cfg, f = ctx.cfg, ctx.cfg.pruning.finetune
    src = _structure_dir(ctx, point)
    student = ctx.load_model(cfg.model.pretrained)
    student.load_state_dict(torch.load(src / "student.pt", weights_only=True))
    masks = load_masks(src)
    if cfg.export.round_to > 1:
        from cofi_lightning.core.rounding import round_widths

        if not (src / "scores.pt").is_file():
            raise ConfigError(
                f"export.round_to needs the gates' scores ({src / 'scores.pt'}), which this "
                "structure predates; re-run the prune stage or set export.round_to=1"
            )
        scores = Masks(**torch.load(src / "scores.pt", weights_only=True))
        masks = round_widths(masks, scores, cfg.export.round_to, cfg.export.round_hidden)
    compact = student.prune(masks)
    teacher = _teacher(ctx)
    if f.batch_size:  # the paper's finetune script used 64 (pruning: 32)
        ctx.datamodule.batch_size = int(f.batch_size)
    distiller = None
    if teacher is not None and cfg.distill.alpha_layer > 0:
        distiller = LayerDistiller(teacher.config.hidden_size)
        if (src / "layer_distiller.pt").is_file():
            distiller.load_state_dict(torch.load(src / "layer_distiller.pt", weights_only=True))
        if masks.hidden is not None:
            distiller.prune_hidden(torch.nonzero(masks.hidden != 0).flatten())
    system = CoFiSystem(
        compact,
        task=ctx.task.name,
        stage=f,
        optim=cfg.optim,
        freeze_embeddings=cfg.model.freeze_embeddings,
        teacher=teacher,
        distill=cfg.distill,
        layer_distiller=distiller,
        seed=cfg.seed,
    )
    _attach_teacher_cache(ctx, system)
    out, metrics = _train_and_save(ctx, point.stage("finetune"), system)
    target = recorded_target(point, cfg.pruning.constraint)
    return {"model_dir": str(out), "metrics": metrics, "target_sparsity": target}


def export_stage(ctx: RunContext, point: OperatingPoint) -> dict[str, Any]:
    src = Path(ctx.records[point.stage("finetune")]["model_dir"])
    out = point.export_dir(ctx.run_dir)
    _save(ctx.load_model(src), ctx, out)
    barrier()
    auto = (
        AutoModelForQuestionAnswering
        if ctx.task.family == "squad"
        else (AutoModelForSequenceClassification)
    )
    model = auto.from_pretrained(out)  # proves the export loads through the Auto classes
    full = unpruned_config(ctx)
    with torch.device("meta"):  # counted on real (meta-device) tensors of the unpruned shape
        unpruned = ctx.model_class(full).num_encoder_params()
    pruned = model.num_encoder_params()
    metrics = ctx.evaluate(model)
    structure = Structure.from_config(model.config)
    sparsity = 1.0 - pruned / unpruned
    latency = None
    if ctx.cfg.pruning.constraint == "latency":
        table = latency_table(ctx, full)
        ms = structure_latency(table, structure)
        latency = {
            "target_speedup": ctx.cfg.pruning.target_speedup,
            "table_ms": ms,
            "unpruned_table_ms": table.full_ms(),
            "table_speedup": table.full_ms() / ms,
            "table_device": table.meta.get("device_name"),
        }
    plot = point.structure_plot(ctx.run_dir)
    target = recorded_target(point, ctx.cfg.pruning.constraint)
    record = {
        "target_sparsity": target,
        "sparsity": sparsity,
        "params": {"unpruned": unpruned, "pruned": pruned},
        "structure": structure.as_dict(),
        "pruned": metrics,
        "teacher": ctx.records.get("teacher", {}).get("metrics", {}),
        "main_metric": ctx.task.main_metric_key,
        "latency": latency,
    }
    if is_global_zero():
        title = f"exported: sparsity {sparsity:.3f}"
        save_heatmap(plot, structure, Structure.from_config(full), title, target)
        write_card(out, ctx.run_dir, ctx.task, str(ctx.cfg.model.pretrained), record, point)
    return {
        "target_sparsity": target,
        "export_dir": str(out),
        "metrics": metrics,
        "params": {"unpruned": unpruned, "pruned": pruned},
        "sparsity": sparsity,
        "structure": structure.as_dict(),
        "structure_plot": str(plot),
        "latency": latency,
    }


def unpruned_config(ctx: RunContext):
    """The CoFi config of ``model.pretrained`` (unpruned), of its family's config class."""
    from transformers import AutoConfig

    source = AutoConfig.from_pretrained(ctx.cfg.model.pretrained)
    config_class = ctx.family.config_class
    return (
        source if isinstance(source, config_class) else config_class.from_pretrained_config(source)
    )


def _strip(metrics: dict[str, float]) -> dict[str, float]:
    return {k.removeprefix("val/"): v for k, v in metrics.items()}


STAGE_FUNCTIONS = {
    "teacher": teacher_stage,
    "prune": prune_stage,
    "finetune": finetune_stage,
    "export": export_stage,
}
