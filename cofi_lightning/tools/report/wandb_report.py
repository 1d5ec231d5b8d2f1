"""A sweep's report as one W&B run (``python -m cofi_lightning.tools.report <dir> --wandb``): the
rows of ``results.csv`` as the table ``results``, per task (tasks have different main metrics) a
scatter of the pruned main metric against sparsity and, where measured, speedup, the report's PNG
plots (``plots/<name>``) and the run / problem counts; online, it uses the model artifacts of the
exports it summarises (``WandbRun.log_export``), so W&B links them. ``wandb`` is imported only when
used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cofi_lightning.tools.report.collect import CSV_COLUMNS, Problem, Run

AXES = {"sparsity": ("sparsity (%)", 100.0), "speedup": ("speedup (×)", 1.0)}  # x: column, scale
POINT_COLUMNS = ("ablation", "target (%)", "seed")  # carried with each scatter point


def log_report(
    runs: Sequence[Run],
    problems: Sequence[Problem],
    report_dir: str | Path,
    *,
    group: str,
    project: str = "cofi-lightning",
    entity: str | None = None,
) -> Path:
    """Log the report of ``runs`` into one new W&B run (job type ``report``) in ``group`` (the
    sweep's, so it sits with the sweep's jobs) under ``<report_dir>/wandb``; returns the run's
    local directory (offline: ``wandb/offline-run-*``, for ``wandb sync``)."""
    import wandb

    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        dir=str(out),
        project=project,
        entity=entity,
        group=group,
        job_type="report",
        name=f"report/{group}",
        mode=os.environ.get("WANDB_MODE", "offline"),
        config={"report_dir": str(out), "runs": len(runs)},
    )
    rows = [run_.row() for run_ in runs]
    media: dict[str, Any] = {
        "results": wandb.Table(
            columns=list(CSV_COLUMNS), data=[[r[k] for k in CSV_COLUMNS] for r in rows]
        )
    }
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        y = f"{mine[0]['main_metric']} (%)"
        for name, (x, scale) in AXES.items():
            points = [_point(r, name, scale) for r in mine if r[name] is not None]
            if not points:  # no run of this task was benchmarked
                continue
            table = wandb.Table(columns=[x, y, *POINT_COLUMNS], data=points)
            title = f"{task}: pruned {y} vs {x}"
            media[f"{task}/metric_vs_{name}"] = wandb.plot.scatter(table, x, y, title=title)
    for png in sorted(out.glob("*.png")):
        media[f"plots/{png.stem}"] = wandb.Image(str(png))
    run.log(media)
    used = use_exports(run, runs)
    run.summary.update({"runs": len(runs), "problems": len(problems), "artifacts_used": used})
    local = Path(run.dir).parent
    run.finish()
    return local


def _point(row: dict[str, Any], x: str, scale: float) -> list[Any]:
    """``scale * row[x]``, the pruned main metric, then :data:`POINT_COLUMNS`."""
    target = round(100 * row["target_sparsity"], 6)
    return [scale * row[x], row["pruned"], row["ablation"], target, row["seed"]]


def export_artifact(run_: Run) -> str | None:
    """The model artifact a job logged for this export (``<name>:<target alias>``), from its
    ``config.yaml``; None without one."""
    from cofi_lightning.config.resolvers import target_label
    from cofi_lightning.tools.report.diagnose import read_yaml
    from cofi_lightning.training.tracking import artifact_name

    cfg = read_yaml(Path(run_.run_dir) / "config.yaml")
    pruning = cfg.get("pruning") or {}
    if not cfg.get("run_name"):
        return None
    constraint = pruning.get("constraint", "params")
    target = target_label(run_.target_sparsity, None, constraint, pruning.get("target_speedup"))
    return f"{artifact_name(cfg['run_name'], target)}:{target}"


def use_exports(run, runs: Sequence[Run]) -> list[str]:
    """Declare the exports' model artifacts as inputs of the report ``run`` (online only: an
    offline run cannot use artifacts); returns those used (a job logged without W&B has none)."""
    import wandb

    used = []
    for ref in dict.fromkeys(filter(None, map(export_artifact, runs))) if not run.offline else ():
        try:
            run.use_artifact(ref, type="model")
        except wandb.errors.CommError:  # never logged, or logged offline and not synced
            continue
        used.append(ref)
    return used
