"""The four CoFi stages: teacher, prune, finetune, export. Each returns its DONE record.

This file owns what each stage builds and trains and which files it leaves in the run directory:
``teacher/model`` (unless ``distill.teacher`` is given or distillation is off; a finished teacher
of the same teacher identity in a run directory beside this one is linked or copied instead,
``distill.reuse_teacher``),
``prune/best`` (best deterministic masks and full-size student weights), ``finetune/model`` and
``pruned_model`` (loadable with the Auto classes). As in the paper, the prune stage's student
starts from the *pretrained* model, not from the teacher, unless ``pruning.student_init=teacher``;
``pruning.method=posttrain`` prunes the fine-tuned teacher itself, and
``pruning.mask_init=posttrain`` starts CoFi's gates from the structure it would keep.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import OmegaConf
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

from cofi_lightning.config import ConfigError, config_identity
from cofi_lightning.config.identity import teacher_identity
from cofi_lightning.core.constraint import LatencyConstraint, ParamsConstraint, check_latency_family
from cofi_lightning.core.distillation import LayerDistiller
from cofi_lightning.core.masks import CoFiMasks, Masks
from cofi_lightning.latency import structure_latency
from cofi_lightning.modeling.structure import Structure
from cofi_lightning.run.checkpoints import resume_checkpoint, save_model
from cofi_lightning.run.context import RunContext
from cofi_lightning.run.model_card import write_card
from cofi_lightning.run.operating_points import OperatingPoint, recorded_target
from cofi_lightning.run.ranks import barrier, is_global_zero
from cofi_lightning.run.results import PointResult
from cofi_lightning.run.teacher_cache import run_cache
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
from cofi_lightning.training.parts import Distillation, Pruning


def _objective(
    ctx: RunContext, structure: Path | None = None, masks: Masks | None = None
) -> Distillation | None:
    """The prune / finetune stages' distillation from the frozen teacher (None without one).

    Args:
        structure: The finetune stage's structure directory: the layer distillation keeps the
            prune stage's projection, its input columns cut to the hidden dims ``masks`` keep
            (the compact model's states equal the masked model's on them: the loss is unchanged).
    """
    path = ctx.records.get("teacher", {}).get("teacher_dir")
    if path is None:
        return None
    teacher, d = ctx.load_model(path), ctx.cfg.distill
    distiller = None
    if d.alpha_layer > 0:
        distiller = LayerDistiller(teacher.config.hidden_size)
        saved = None if structure is None else structure / "layer_distiller.pt"
        if saved is not None and saved.is_file():
            distiller.load_state_dict(torch.load(saved, weights_only=True))
        if masks is not None and masks.hidden is not None:
            distiller.prune_hidden(torch.nonzero(masks.hidden != 0).flatten())
    distillation = Distillation(teacher, d, distiller)
    distillation.cache = run_cache(ctx, distillation)
    return distillation


def _fit(
    ctx: RunContext, stage: str, system: CoFiSystem, trainer, best: BestWeights | None = None
) -> dict[str, float]:
    """Fit (resuming if possible), restore the best weights if kept, then validate once more so
    the record has the metrics of the weights the stage saves (logged only when it adds a point
    to the curves)."""
    last = ctx.run_dir / stage / "checkpoints" / "last.ckpt"
    resume = resume_checkpoint(last, fix=is_global_zero())  # the newest that loads, or None
    if resume is not None:
        rank_zero_info(f"[{stage}] resuming from {resume}")
    trainer.fit(system, datamodule=ctx.datamodule, ckpt_path=resume)
    barrier()  # rank 0 wrote the best weights
    restored = best is not None and best.restore(system)
    if restored:
        rank_zero_info(f"[{stage}] keeping the best weights (step {best.best_step})")
    system.log_val = not restored and system.last_val_step != trainer.global_step
    trainer.validate(system, datamodule=ctx.datamodule, verbose=False)
    for logger in trainer.loggers:  # job trackers stay open for the next stage
        logger.finalize("success")
    return system.recorded_metrics()


def _train_and_save(ctx: RunContext, stage: str, system: CoFiSystem) -> tuple[Path, dict]:
    """Train ``system`` for one stage (its settings: ``system.stage``) and save its student to
    ``<run_dir>/<stage>/model``; returns the directory and the final validation metrics."""
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
    save_model(system.student, ctx.tokenizer, out)
    barrier()
    return out, metrics


#: The teacher stage's files in a run directory.
TEACHER_DONE = Path("teacher") / "DONE.json"
TEACHER_MODEL = Path("teacher") / "model"


def as_recorded(identity: dict[str, Any]) -> dict[str, Any]:
    """``identity`` as ``teacher/DONE.json`` records it (and reads it back): plain JSON values."""
    return json.loads(json.dumps(identity, sort_keys=True, default=str))


def find_teacher(run_dir: Path, identity: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """``(model directory, its teacher/DONE.json record)`` of the first finished teacher of
    ``identity`` (by directory name) beside ``run_dir``, or None."""
    here = Path(run_dir).resolve()
    wanted = as_recorded(identity)
    for done in sorted(here.parent.glob(f"*/{TEACHER_DONE}")):
        if done.parents[1] == here:
            continue
        try:
            record = json.loads(done.read_text())
        except (OSError, ValueError):
            continue  # being written, or not ours: not a finished teacher
        model = done.parents[1] / TEACHER_MODEL
        if record.get("teacher_identity") == wanted and (model / "config.json").is_file():
            return model, record
    return None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def copy_teacher(src: Path, dst: Path) -> None:
    """Copy a teacher's model directory to ``dst`` through a temporary directory renamed into
    place (the run's lock makes any other temporary one beside it a killed attempt's)."""
    for stale in dst.parent.glob(f"{dst.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    shutil.copytree(src, tmp, copy_function=_link_or_copy)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.replace(dst)


def reuse_teacher(ctx: RunContext, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The teacher stage's record of a matching teacher beside this run, copied into
    ``teacher/model`` (None when there is none: the stage trains one)."""
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


def teacher_stage(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.cfg
    if not cfg.distill.enabled:
        return {"skipped": "distill.enabled is false", "teacher_dir": None, "metrics": {}}
    if cfg.distill.teacher is not None:
        model = ctx.load_model(cfg.distill.teacher)
        return {"teacher_dir": str(cfg.distill.teacher), "metrics": ctx.evaluate(model)}
    identity = as_recorded(teacher_identity(config_identity(OmegaConf.structured(cfg))))
    reused = reuse_teacher(ctx, identity) if cfg.distill.reuse_teacher else None
    if reused is not None:
        return reused
    system = CoFiSystem(
        ctx.load_model(cfg.model.pretrained),
        task=ctx.task.name,
        stage=cfg.distill.teacher_training,
        optim=cfg.optim,
    )
    out, metrics = _train_and_save(ctx, "teacher", system)
    return {"teacher_dir": str(out), "metrics": metrics, "teacher_identity": identity}


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
        reached = abs(sparsity - point.target) <= p.sparsity_epsilon
        bests[point.label], metrics = _save_untrained(ctx, student, point, masks, sparsity, reached)
    return _prune_record(ctx, bests, metrics)


def _save_untrained(ctx, student, point, masks: Masks, sparsity: float, reached: bool, **extra):
    """Evaluate a structure chosen without training (``pruning.method`` uniform or posttrain) and
    write it where CoFi writes its best one (``prune/best``; ``extra``: more of its meta);
    returns its meta and metrics."""
    method = ctx.cfg.pruning.method
    metrics = ctx.evaluate(student.prune(masks))
    meta = {
        "step": 0,
        "metric": metrics.get(ctx.task.main_metric_key),
        "main_metric": f"val/{ctx.task.main_metric_key}",
        "expected_sparsity": sparsity,
        "deterministic_sparsity": sparsity,
        "reached_target": reached,
        "method": method,
        **extra,
    }
    if is_global_zero():
        save_structure(point.best_dir(ctx.run_dir), masks, student, meta)
    barrier()
    rank_zero_info(f"[prune] {method} structure at sparsity {sparsity:.3f}: nothing trained")
    return meta, metrics


def _calibration(ctx: RunContext) -> list[dict]:
    """``pruning.posttrain``'s calibration batches: the first ``num_samples`` training examples
    in the run's seeded training order."""
    settings, dm = ctx.cfg.pruning.posttrain, ctx.datamodule
    dm.setup("fit")
    size, dm.batch_size = dm.batch_size, settings.batch_size
    loader = dm.train_dataloader()  # in calibration batches; the stages keep their size
    dm.batch_size = size
    batches, left = [], settings.num_samples
    for batch in loader:
        batches.append({k: v[:left] for k, v in batch.items()})
        left -= len(batches[-1]["input_ids"])
        if left <= 0:
            break
    return batches


def _fits(constraint, gates: CoFiMasks) -> list:
    """Per target of the run's ``constraint``, whether 0/1 masks meet it (``constraint.real``:
    the exact sparsity or table latency of the export, as CoFi's selection counts it)."""
    return [lambda z, t=t: constraint.real(gates, z) >= t for t in constraint.targets]


def _warm_start(ctx: RunContext, gates: CoFiMasks, constraint, teacher: str) -> None:
    """``pruning.mask_init=posttrain``: start ``gates`` from the structure post-training pruning
    keeps of the fine-tuned teacher at the run's final target (searched by the Fisher importance
    on the calibration batches of ``method=posttrain``; not rearranged, not rescaled)."""
    from cofi_lightning.core.posttrain import posttrain_masks, warm_start_

    fits = _fits(constraint, gates)[-1:]  # the final target
    model, batches = ctx.load_model(teacher), _calibration(ctx)
    kept = posttrain_masks(model, batches, fits, rearranged=False, rescaled="never")[0]
    warm_start_(gates, kept)
    s_hat = float(gates.expected_sparsity().detach())
    rank_zero_info(
        f"[prune] gates warm-started from the posttrain structure of sparsity "
        f"{gates.sparsity(kept):.3f}; expected sparsity at step 0: {s_hat:.3f}"
    )


def _posttrain_structure(ctx: RunContext, student: torch.nn.Module) -> dict[str, Any]:
    """``pruning.method=posttrain``: prune the fine-tuned ``student`` for every target of the
    run's constraint without training (``cofi_lightning.core.posttrain``) and write each
    structure where CoFi writes its best one, with the fine-tuned weights."""
    from cofi_lightning.core.posttrain import posttrain_masks

    p = ctx.cfg.pruning
    constraint = _constraint(ctx, student.config)
    gates = CoFiMasks(student.config, units=("head", "intermediate"))  # the parameter formula
    targets = list(constraint.targets)
    fits = _fits(constraint, gates)
    batches = _calibration(ctx)
    all_masks = posttrain_masks(student, batches, fits, p.posttrain.rearrange, p.posttrain.rescale)
    bests, metrics = {}, {}
    for point, target, masks in zip(ctx.points, targets, all_masks, strict=True):
        reached = constraint.real(gates, masks) >= target
        tuned = any(((z != 0) & (z != 1)).any() for _, z in masks.items())
        bests[point.label], metrics = _save_untrained(
            ctx, student, point, masks, gates.sparsity(masks), reached, rescaled=bool(tuned)
        )
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


def _constraint(ctx: RunContext, config):
    p = ctx.cfg.pruning
    if p.constraint == "latency":
        check_latency_family(ctx.family)
        return LatencyConstraint(ctx.latency_table(config), p.target_speedup)
    return ParamsConstraint(p.target_list)


def prune_stage(ctx: RunContext) -> dict[str, Any]:
    cfg, p = ctx.cfg, ctx.cfg.pruning
    fine_tuned = p.method == "posttrain" or p.student_init == "teacher"
    teacher = ctx.records.get("teacher", {}).get("teacher_dir")
    if (fine_tuned or p.mask_init == "posttrain") and teacher is None:
        raise ConfigError(
            "the prune stage needs the fine-tuned teacher (pruning.method=posttrain, "
            "pruning.student_init=teacher or pruning.mask_init=posttrain) and this run has none: "
            "include the teacher stage in stages or set distill.teacher"
        )
    student = ctx.load_model(teacher if fine_tuned else cfg.model.pretrained)
    if p.method == "uniform":
        return _uniform_structure(ctx, student)
    if p.method == "posttrain":
        return _posttrain_structure(ctx, student)
    constraint = _constraint(ctx, student.config)
    gates = CoFiMasks(student.config, units=list(p.units))
    if p.mask_init == "posttrain":
        _warm_start(ctx, gates, constraint, teacher)
    pruning = Pruning(gates, p, constraint, cfg.seed)
    system = CoFiSystem(
        student,
        task=ctx.task.name,
        stage=p,
        optim=cfg.optim,
        freeze_embeddings=cfg.model.freeze_embeddings,
        objective=_objective(ctx),
        pruning=pruning,
    )
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
    return _prune_record(ctx, metas, metrics)


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
    target = recorded_target(point, cfg.pruning.constraint)
    if f.max_steps == 0:  # no finetune: the pruned structure as the prune stage left it
        out = ctx.run_dir / point.stage("finetune") / "model"
        save_model(compact, ctx.tokenizer, out)
        barrier()
        return {"model_dir": str(out), "metrics": ctx.evaluate(compact), "target_sparsity": target}
    if f.batch_size:  # the paper's finetune script used 64 (pruning: 32)
        ctx.datamodule.batch_size = int(f.batch_size)
    system = CoFiSystem(
        compact,
        task=ctx.task.name,
        stage=f,
        optim=cfg.optim,
        freeze_embeddings=cfg.model.freeze_embeddings,
        objective=_objective(ctx, src, masks),
    )
    out, metrics = _train_and_save(ctx, point.stage("finetune"), system)
    return {"model_dir": str(out), "metrics": metrics, "target_sparsity": target}


def export_stage(ctx: RunContext, point: OperatingPoint) -> dict[str, Any]:
    """Save the point's compact model as its export and measure what was saved (with
    ``export.onnx``, through ONNX Runtime too: ``cofi_lightning.deploy``); log the export as a
    model artifact of the job's W&B run, if any; returns the point's
    :class:`~cofi_lightning.run.results.PointResult` and ``structure_plot``."""
    src = Path(ctx.records[point.stage("finetune")]["model_dir"])
    out = point.export_dir(ctx.run_dir)
    save_model(ctx.load_model(src), ctx.tokenizer, out)
    barrier()
    squad = ctx.task.family == "squad"
    auto = AutoModelForQuestionAnswering if squad else AutoModelForSequenceClassification
    model = auto.from_pretrained(out)  # proves the export loads through the Auto classes
    full = ctx.unpruned_config()
    with torch.device("meta"):  # counted on real (meta-device) tensors of the unpruned shape
        unpruned = ctx.model_class(full).num_encoder_params()
    pruned = model.num_encoder_params()
    structure = Structure.from_config(model.config)
    sparsity = 1.0 - pruned / unpruned
    latency = None
    if ctx.cfg.pruning.constraint == "latency":
        latency = _table_latency(ctx, full, structure)
    metrics, runtimes = ctx.evaluate(model), []
    if ctx.cfg.export.onnx:
        from cofi_lightning.deploy.measure import deploy_export

        seq = ctx.cfg.task.max_seq_length
        runtimes = deploy_export(model, out, ctx.cfg.export.quantize, ctx.evaluate, metrics, seq)
    result = PointResult(
        target_sparsity=recorded_target(point, ctx.cfg.pruning.constraint),
        sparsity=sparsity,
        params={"unpruned": unpruned, "pruned": pruned},
        pruned=metrics,
        structure=structure.as_dict(),
        export_dir=str(out),
        latency=latency,
        runtimes=runtimes,
    )
    plot = point.structure_plot(ctx.run_dir)
    if is_global_zero():
        title = f"exported: sparsity {sparsity:.3f}"
        save_heatmap(plot, structure, Structure.from_config(full), title, result.target_sparsity)
        teacher = ctx.records.get("teacher", {}).get("metrics", {})
        card = {**result.to_dict(), "teacher": teacher, "main_metric": ctx.task.main_metric_key}
        write_card(out, ctx.run_dir, ctx.task, str(ctx.cfg.model.pretrained), card, point)
        ctx.log_export(out, result.label)  # after the card and ONNX files: all of it
    return {**result.to_dict(), "structure_plot": str(plot)}


def _table_latency(ctx: RunContext, full, structure: Structure) -> dict[str, Any]:
    """What the run's latency table says of the exported ``structure`` against the unpruned
    model (``full``)."""
    table = ctx.latency_table(full)
    ms = structure_latency(table, structure)
    return {
        "target_speedup": ctx.cfg.pruning.target_speedup,
        "table_ms": ms,
        "unpruned_table_ms": table.full_ms(),
        "table_speedup": table.full_ms() / ms,
        "table_device": table.meta.get("device_name"),
    }


STAGE_FUNCTIONS = {
    "teacher": teacher_stage,
    "prune": prune_stage,
    "finetune": finetune_stage,
    "export": export_stage,
}
