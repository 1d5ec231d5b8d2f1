"""The CoFi pipeline: stage loop, run-directory ownership, resume bookkeeping and ``results.json``.

This file owns ``train(cfg)`` (what ``train.py`` calls). A stage that finishes writes
``<run_dir>/<stage>/DONE.json`` (its record); a rerun skips it, and an unfinished stage resumes
from its last checkpoint. What each stage does lives in ``cofi_lightning.run.stages``.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from cofi_lightning.config import STAGES, TrainConfig, config_identity, load_config
from cofi_lightning.config.identity import identity_hash
from cofi_lightning.config.stage_configs import METHOD_NAMES
from cofi_lightning.modeling.structure import Structure
from cofi_lightning.run import stages
from cofi_lightning.run.checkpoints import write_text_atomically
from cofi_lightning.run.context import RunContext, seed_stage
from cofi_lightning.run.hub import push_export, repo_ids
from cofi_lightning.run.interrupts import SigtermGuard
from cofi_lightning.run.operating_points import PER_POINT_STAGES, OperatingPoint
from cofi_lightning.run.preflight import preflight
from cofi_lightning.run.ranks import barrier, is_global_zero
from cofi_lightning.run.results import PointResult, Results, result_points
from cofi_lightning.run.rundir import RunLock, check_run_dir, claim, tracker_run_id


def run_stage(
    ctx: RunContext, name: str, point: OperatingPoint | None, guard: SigtermGuard
) -> dict:
    """Run one stage (of one operating point, for the per-point stages) unless its ``DONE.json``
    exists; write it (rank 0) when the stage ends, unless ``guard`` saw a SIGTERM."""
    key = point.stage(name) if point is not None else name  # directory and record name
    done = ctx.run_dir / key / "DONE.json"
    label = f"[{STAGES.index(name) + 1}/{len(STAGES)} {key}]"
    if done.is_file():
        record = json.loads(done.read_text())
        rank_zero_info(f"{label} already done ({done}); skipping")
    else:
        rank_zero_info(f"{label} starting")
        seed_stage(ctx.cfg.seed, key)
        start = ctx.started[key] = time.perf_counter()
        fn = stages.STAGE_FUNCTIONS[name]
        with guard.stage(key):  # until DONE.json exists, an interrupt names this stage
            record = fn(ctx) if point is None else fn(ctx, point)
            attempt = time.perf_counter() - start
            clock = ctx.clocks.get(key)
            earlier = clock.before if clock is not None else 0.0  # attempts cut short by a crash
            record["seconds"] = round(attempt + earlier, 2)
            record["attempt_seconds"] = round(attempt, 2)
            guard.check()  # a trainer call that took a SIGTERM may still have returned
            if is_global_zero():
                write_text_atomically(done, json.dumps(record, indent=2))
        if is_global_zero() and ctx.cfg.cleanup.checkpoints:  # resume files, best weights
            shutil.rmtree(ctx.run_dir / key / "checkpoints", ignore_errors=True)
            (ctx.run_dir / key / "best_student.pt").unlink(missing_ok=True)
        barrier()
        rank_zero_info(f"{label} done in {record['seconds']:.0f} s{_outcome(ctx, record)}")
    ctx.records[key] = record
    return record


def _outcome(ctx: RunContext, record: dict[str, Any]) -> str:
    """``": accuracy 76.72, sparsity 0.482"`` of a stage record (what is there of it)."""
    parts = []
    metric = ctx.task.main_metric_key
    metrics = record.get("metrics", record.get("pruned")) or {}  # an export's: ``pruned``
    if metric in metrics:
        parts.append(f"{metric} {metrics[metric]:.2f}")
    best = record.get("best") or {}
    sparsity = record.get("sparsity", best.get("deterministic_sparsity"))
    if sparsity is not None:
        parts.append(f"sparsity {sparsity:.3f}")
    elif "structure_dirs" in record:  # a path: one best structure per target
        found = [b.get("deterministic_sparsity") for b in best.values()]
        parts.append("sparsities " + " / ".join(f"{s:.3f}" for s in found if s is not None))
    return ": " + ", ".join(parts) if parts else ""


def summary_table(results: dict[str, Any], run_dir: Path) -> str:
    """The end-of-run summary a person reads, one block per operating point of a
    ``results.json``."""
    return "\n\n".join(
        _point_summary(record, point.speed_files(run_dir), point.structure_plot(run_dir), run_dir)
        for point, record in result_points(results)
    )


def _point_summary(results: dict[str, Any], speed: list[Path], plot: Path, run_dir: Path) -> str:
    metric = results["main_metric"]
    teacher = results["teacher"].get(metric)
    params = results["params"]
    latency = results.get("latency") or {}
    target = (  # a latency-constrained run's target is a speedup
        f"target speedup {latency['target_speedup']:g}x"
        if latency.get("target_speedup")
        else f"target sparsity {results['target_sparsity']:g}"
    )
    achieved = []
    if latency:  # what the latency table says the export gained (the bench measures it)
        achieved.append(
            (
                "table speedup",
                f"{latency['table_speedup']:.2f}x ({latency['unpruned_table_ms']:.2f} -> "
                f"{latency['table_ms']:.2f} ms, latency table of {latency['table_device']})",
            )
        )
    rows = [
        ("task", f"{results['task']} ({target})"),
        (f"teacher {metric}", "-" if teacher is None else f"{teacher:.2f}"),
        (f"pruned {metric}", f"{results['pruned'][metric]:.2f}"),
        (
            "sparsity",
            f"{results['sparsity']:.4f} ({params['pruned']:,} of {params['unpruned']:,} "
            "encoder parameters, counted on the export)",
        ),
        ("structure", str(Structure.from_dict(results["structure"]))),
        *achieved,
        ("export", results["export_dir"]),
        ("structure plot", str(plot)),
        (
            "speedup",
            f"{json.loads(speed[0].read_text()).get('speedup', '?')}x ({speed[0].name})"
            if speed
            else "not measured: python -m cofi_lightning.tools.bench "
            + shlex.quote(f"run={run_dir}"),
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def resolve_run_dir(cfg: TrainConfig) -> Path:
    """``run_dir`` if set, else Hydra's output dir (``outputs/<experiment>/<run_name>``)."""
    if cfg.run_dir:
        return Path(cfg.run_dir)
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def train(
    cfg: DictConfig | TrainConfig, extra_callbacks: dict[str, Sequence[L.Callback]] | None = None
) -> dict[str, Any]:
    """Run (or resume) the configured stages and return the ``results.json`` content.

    Raises:
        ConfigError, ModelSourceError, RunDirError: before anything is written.
        RunInterrupted: a SIGTERM arrived before the run finished (calling again resumes).
    """
    cfg = load_config(cfg)
    run_dir = resolve_run_dir(cfg)
    cfg.check_stage_inputs(run_dir)
    structured = OmegaConf.structured(cfg)
    identity = config_identity(structured)
    if is_global_zero():  # a refused run dir: before anything is logged (DDP: rank 0 owns it)
        check_run_dir(run_dir, identity, cfg.resume)
    preflight(cfg, run_dir)  # what the run needs exists and fits, before run_dir is touched
    # DDP ranks > 0 are started by rank 0, which holds the lock
    with RunLock(run_dir) if is_global_zero() else contextlib.nullcontext():
        guard = SigtermGuard()
        if is_global_zero():
            resumed = claim(run_dir, identity, cfg.resume)
            rank_zero_info(f"{'resuming' if resumed else 'starting'} run {run_dir}")
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(structured))
        run_id = tracker_run_id(run_dir, identity_hash(identity))
        bars = cfg.trainer.get("enable_progress_bar", True)
        with guard, contextlib.nullcontext() if bars else _library_bars_off():
            return _run_stages(cfg, run_dir, run_id, extra_callbacks, guard)


@contextlib.contextmanager
def _library_bars_off():
    """The libraries' own progress bars off, as found afterwards: with the trainer's bars off
    (batch jobs) each would write a screen of carriage returns into the log."""
    import datasets
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on[0]:
            hf_logging.enable_progress_bar()
        if was_on[1]:
            datasets.enable_progress_bars()


def _run_stages(
    cfg: TrainConfig,
    run_dir: Path,
    run_id: str,
    extra_callbacks: dict[str, Sequence[L.Callback]] | None,
    guard: SigtermGuard,
) -> dict[str, Any]:
    ctx = RunContext(cfg, run_dir, extra_callbacks, run_id=run_id)
    results: dict[str, Any] = {}
    # The per-run stages, then each operating point's stages (finetune, export) in turn, so the
    # first point's export exists before the next point starts.
    order = [(name, None) for name in STAGES if name not in PER_POINT_STAGES]
    order += [(name, pt) for pt in ctx.points for name in STAGES if name in PER_POINT_STAGES]
    try:
        for name, point in order:
            key = point.stage(name) if point is not None else name
            done = run_dir / key / "DONE.json"
            if name in cfg.stages:
                run_stage(ctx, name, point, guard)
            elif done.is_file():
                ctx.records[key] = json.loads(done.read_text())
        exports = [pt.stage("export") for pt in ctx.points]
        if all(key in ctx.records for key in exports):
            record = results_from_records(ctx)
            results = record.to_dict()
            if is_global_zero():
                write_text_atomically(run_dir / "results.json", json.dumps(results, indent=2))
            rank_zero_info(f"results: {json.dumps(results)}")
            method = METHOD_NAMES[cfg.pruning.method]
            rank_zero_info(f"{method} run finished\n" + summary_table(results, run_dir))
            if cfg.export.push_to_hub and is_global_zero():
                _push(ctx, record)  # after results.json: a failed upload loses nothing
    except BaseException:
        ctx.finish_trackers(None, exit_code=1)
        raise
    last = ctx.records.get(ctx.points[-1].stage("export"), {})
    ctx.finish_trackers(results, heatmap=last.get("structure_plot"))
    return results


def _push(ctx: RunContext, results: Results) -> None:
    """Upload each operating point's export (``hub.repo_ids``)."""
    repos = repo_ids(str(ctx.cfg.export.push_to_hub), ctx.points)
    for point, result, target_repo in zip(ctx.points, results.operating_points, repos, strict=True):
        url = push_export(
            point.export_dir(ctx.run_dir),
            target_repo,
            private=ctx.cfg.export.private,
            message=f"CoFi {ctx.task.name} at sparsity {result.sparsity:.3f}",
        )
        rank_zero_info(f"uploaded the export to {target_repo}: {url}")


def results_from_records(ctx: RunContext) -> Results:
    """The run's :class:`Results` from the stages' DONE records (each point's: its export's)."""
    return Results(
        task=ctx.task.name,
        teacher=ctx.records.get("teacher", {}).get("metrics", {}),
        main_metric=ctx.task.main_metric_key,
        ablation=ctx.cfg.ablation_name,
        method=ctx.cfg.pruning.method,
        constraint=ctx.cfg.pruning.constraint,
        fidelity=ctx.cfg.fidelity_name,
        seed=int(ctx.cfg.seed),
        stage_seconds={k: r.get("seconds") for k, r in ctx.records.items()},
        operating_points=[
            PointResult.from_dict(ctx.records[point.stage("export")]) for point in ctx.points
        ],
    )
