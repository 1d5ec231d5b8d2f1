"""The CoFi pipeline: stage loop, run-directory ownership, resume bookkeeping and ``results.json``.

This file owns ``train(cfg)`` (what ``train.py`` calls). Before any stage runs, the run directory is
claimed for this config (``cofi_lightning.rundir``: the same identity resumes, another one is
refused with the differing keys) and locked against a second process. A stage that finishes writes
``<run_dir>/<stage>/DONE.json`` (its record: metrics, seconds, outputs); a rerun skips it, and an
unfinished stage resumes from ``<run_dir>/<stage>/checkpoints/last.ckpt``. What each stage does
lives in ``cofi_lightning.stages``; what they share in ``cofi_lightning.context``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from cofi_lightning import stages
from cofi_lightning.config import STAGES, TrainConfig, config_identity, load_config
from cofi_lightning.config.identity import identity_hash
from cofi_lightning.context import RunContext, barrier, is_global_zero
from cofi_lightning.hub import push_export
from cofi_lightning.preflight import preflight
from cofi_lightning.rundir import RunLock, claim

RESULT_KEYS = (
    "task",
    "target_sparsity",
    "sparsity",
    "params",
    "teacher",
    "pruned",
    "main_metric",
    "structure",
    "export_dir",
    "ablation",
    "method",
    "constraint",
    "latency",
    "fidelity",
    "seed",
    "stage_seconds",
)


# --- the stage loop -------------------------------------------------------------------------------


def run_stage(ctx: RunContext, name: str, fn: Callable[[RunContext], dict[str, Any]]) -> dict:
    """Run one stage unless its ``DONE.json`` exists; write it (rank 0) when the stage ends."""
    done = ctx.run_dir / name / "DONE.json"
    label = f"[{STAGES.index(name) + 1}/{len(STAGES)} {name}]"
    if done.is_file():
        record = json.loads(done.read_text())
        rank_zero_info(f"{label} already done ({done}); skipping")
    else:
        rank_zero_info(f"{label} starting")
        start = ctx.started[name] = time.perf_counter()
        record = fn(ctx)
        attempt = time.perf_counter() - start
        clock = ctx.clocks.get(name)
        earlier = clock.before if clock is not None else 0.0  # attempts cut short by a crash
        record["seconds"] = round(attempt + earlier, 2)
        record["attempt_seconds"] = round(attempt, 2)
        if is_global_zero():
            done.parent.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(record, indent=2))
            if ctx.cfg.cleanup.checkpoints:
                remove_checkpoints(ctx.run_dir / name)
        barrier()
        rank_zero_info(f"{label} done in {record['seconds']:.0f} s{_outcome(ctx, record)}")
    ctx.records[name] = record
    return record


def _outcome(ctx: RunContext, record: dict[str, Any]) -> str:
    """``": accuracy 76.72, sparsity 0.482"`` of a stage record (what is there of it)."""
    parts = []
    metric = ctx.task.main_metric_key
    if metric in (record.get("metrics") or {}):
        parts.append(f"{metric} {record['metrics'][metric]:.2f}")
    sparsity = record.get("sparsity", (record.get("best") or {}).get("deterministic_sparsity"))
    if sparsity is not None:
        parts.append(f"sparsity {sparsity:.3f}")
    return ": " + ", ".join(parts) if parts else ""


def summary_table(results: dict[str, Any], run_dir: Path) -> str:
    """The end-of-run summary a person reads: teacher vs pruned, sparsity, structure, where."""
    metric = results["main_metric"]
    teacher = results["teacher"].get(metric)
    params = results["params"]
    st = results["structure"]
    speed = sorted(run_dir.glob("speed_*.json"))
    rows = [
        ("task", f"{results['task']} (target sparsity {results['target_sparsity']:g})"),
        (f"teacher {metric}", "-" if teacher is None else f"{teacher:.2f}"),
        (f"pruned {metric}", f"{results['pruned'][metric]:.2f}"),
        (
            "sparsity",
            f"{results['sparsity']:.4f} ({params['pruned']:,} of {params['unpruned']:,} "
            "encoder parameters, counted on the export)",
        ),
        (
            "structure",
            f"hidden {st['hidden_size']}; heads {st['num_heads']}; FFN {st['intermediate_sizes']}",
        ),
        ("export", results["export_dir"]),
        ("structure plot", str(run_dir / "structure.png")),
        (
            "speedup",
            f"{json.loads(speed[0].read_text()).get('speedup', '?')}x ({speed[0].name})"
            if speed
            else f"not measured: python -m cofi_lightning.bench run={run_dir}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def remove_checkpoints(stage_dir: Path) -> None:
    """Delete a finished stage's resume checkpoints and best-weights snapshot."""
    shutil.rmtree(stage_dir / "checkpoints", ignore_errors=True)
    (stage_dir / "best_student.pt").unlink(missing_ok=True)


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

    Args:
        cfg: The composed ``conf/train.yaml`` (or its typed :class:`TrainConfig`).
        extra_callbacks: ``{stage: [callbacks]}`` added to that stage's trainer.

    Raises:
        ConfigError: an invalid value (naming the key), before anything is written.
        ModelSourceError: a model, tokenizer or teacher that does not exist or does not fit.
        RunDirError: the run directory belongs to another config or another live process.
    """
    cfg = load_config(cfg)
    run_dir = resolve_run_dir(cfg)
    cfg.check_stage_inputs(run_dir)
    preflight(cfg)  # models exist and fit together, before the run directory is touched
    structured = OmegaConf.structured(cfg)
    identity = config_identity(structured)
    lock = contextlib.nullcontext()
    if is_global_zero():  # DDP ranks > 0 are started by rank 0, which holds the lock
        lock = RunLock(run_dir)
        lock.acquire()
    try:
        if is_global_zero():
            resumed = claim(run_dir, identity, cfg.resume)
            rank_zero_info(f"{'resuming' if resumed else 'starting'} run {run_dir}")
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(structured))
        # A tracker run id per (identity, directory): a resumed job continues its W&B run, and
        # the same config run again elsewhere gets a run of its own.
        config_id = identity_hash(identity)
        place = f"{config_id}:{run_dir.resolve()}"
        run_id = f"{config_id}-{hashlib.sha256(place.encode()).hexdigest()[:6]}"
        return _run_stages(cfg, run_dir, run_id, extra_callbacks)
    finally:
        if isinstance(lock, RunLock):
            lock.release()


def _run_stages(
    cfg: TrainConfig,
    run_dir: Path,
    run_id: str,
    extra_callbacks: dict[str, Sequence[L.Callback]] | None,
) -> dict[str, Any]:
    L.seed_everything(cfg.seed, workers=True)
    ctx = RunContext(cfg, run_dir, extra_callbacks, run_id=run_id)
    results: dict[str, Any] = {}
    try:
        for name in STAGES:
            done = run_dir / name / "DONE.json"
            if name in cfg.stages:
                run_stage(ctx, name, stages.STAGE_FUNCTIONS[name])
            elif done.is_file():
                ctx.records[name] = json.loads(done.read_text())
        if "export" in ctx.records:
            results = results_from_records(ctx)
            if is_global_zero():
                (run_dir / "results.json").write_text(json.dumps(results, indent=2))
            rank_zero_info(f"results: {json.dumps(results)}")
            rank_zero_info("CoFi run finished\n" + summary_table(results, run_dir))
            repo = cfg.export.push_to_hub
            if repo and is_global_zero():  # after results.json: a failed upload loses nothing
                url = push_export(
                    run_dir / "pruned_model",
                    repo,
                    private=cfg.export.private,
                    message=f"CoFi {ctx.task.name} at sparsity {results['sparsity']:.3f}",
                )
                rank_zero_info(f"uploaded the export to {repo}: {url}")
    except BaseException:
        ctx.finish_trackers(None, exit_code=1)
        raise
    ctx.finish_trackers(results, heatmap=ctx.records.get("export", {}).get("structure_plot"))
    return results


def results_from_records(ctx: RunContext) -> dict[str, Any]:
    """The ``results.json`` dict (keys: :data:`RESULT_KEYS`) from the stages' DONE records."""
    export = ctx.records["export"]
    teacher = ctx.records.get("teacher", {})
    results = {
        "task": ctx.task.name,
        "target_sparsity": float(ctx.cfg.pruning.target_sparsity),
        "sparsity": export["sparsity"],
        "params": export["params"],
        "teacher": teacher.get("metrics", {}),
        "pruned": export["metrics"],
        "main_metric": ctx.task.main_metric_key,
        "structure": export["structure"],
        "export_dir": export["export_dir"],
        "ablation": ctx.cfg.ablation_name,
        "method": ctx.cfg.pruning.method,
        "constraint": ctx.cfg.pruning.constraint,
        "latency": export.get("latency"),
        "fidelity": ctx.cfg.fidelity_name,
        "seed": int(ctx.cfg.seed),
        "stage_seconds": {k: r.get("seconds") for k, r in ctx.records.items()},
    }
    assert tuple(results) == RESULT_KEYS
    return results
