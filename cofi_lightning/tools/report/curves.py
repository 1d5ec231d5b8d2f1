"""Training curves read back from the runs' CSV logs (``logger=csv``): the prune stage per target,
the teacher. Runs logged to W&B only have no CSV file and are left out.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cofi_lightning.data.tasks import TASKS
from cofi_lightning.tools.report.collect import prune_best
from cofi_lightning.tools.report.diagnose import read_yaml
from cofi_lightning.tools.report.plots import ablation_colors, figure, save, slug, teacher_line
from cofi_lightning.tools.report.tables import Group

LOSS = "train/loss"
EXPECTED, TARGET, REAL = "sparsity/expected", "sparsity/target", "sparsity/deterministic"


@dataclass
class PruneCurve:
    """One run's prune-stage series, each a sorted list of ``(step, value)``: expected sparsity ŝ,
    the Lagrangian's target t, the validation main metric and the deterministic masks' real
    sparsity at each evaluation; ``selected`` is the exported evaluation's ``(step, metric)``."""

    expected: list[tuple[int, float]] = field(default_factory=list)
    target: list[tuple[int, float]] = field(default_factory=list)
    metric: list[tuple[int, float]] = field(default_factory=list)
    real: list[tuple[int, float]] = field(default_factory=list)
    selected: tuple[int, float] | None = None


def read_prune_curve(
    run_dir: Path, main_metric: str, point: str | None = None
) -> PruneCurve | None:
    """The prune stage's curves of ``run_dir``, or None without a CSV log (``point``: the target
    whose selected evaluation is marked, on a sparsity path)."""
    series = _read_logs(Path(run_dir), "prune", main_metric, (EXPECTED, TARGET, REAL))
    if series is None:
        return None
    curve = PruneCurve(*(series[k] for k in (EXPECTED, TARGET, "metric", REAL)))
    curve.selected = _selected(prune_best(Path(run_dir), point))
    return curve


def _read_logs(
    run_dir: Path, stage: str, main_metric: str, columns: Sequence[str]
) -> dict[str, list[tuple[int, float]]] | None:
    """``{column: [(step, value)]}`` of a stage's CSV logs, plus ``"metric"`` (the validation
    main metric); None without a log. A resumed stage logs each attempt into its own
    ``version_<n>`` folder: a later attempt wins for the steps it replays."""
    files = sorted(run_dir.glob(f"{stage}/csv/version_*/metrics.csv"), key=_version)
    if not files:
        return None
    series: dict[str, dict[int, float]] = {key: {} for key in (*columns, "metric")}
    for path in files:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            metric_key = _metric_column(reader.fieldnames or [], main_metric)
            wanted = {**{c: c for c in columns}, "metric": metric_key}
            for row in reader:
                step = _float(row.get("step"))
                if step is None:
                    continue
                for key, column in wanted.items():
                    value = _float(row.get(column)) if column else None
                    if value is not None:
                        series[key][int(step)] = value
    return {key: sorted(values.items()) for key, values in series.items()}


@dataclass
class TeacherCurve:
    """One run's teacher stage: ``(step, value)`` of the validation main metric and of the
    training loss; ``kept`` is the evaluation whose weights the stage kept, if it finished."""

    run_dir: Path
    task: str
    metric_name: str
    metric: list[tuple[int, float]]
    loss: list[tuple[int, float]]
    kept: tuple[int, float] | None = None


def read_teacher_curve(run_dir: str | Path) -> TeacherCurve | None:
    """The teacher stage's curves of ``run_dir`` (its own teacher, or a teacher-only run), or
    None without a teacher CSV log or a known task (``config.yaml``, else ``results.json``)."""
    run_dir = Path(run_dir)
    task = (read_yaml(run_dir / "config.yaml").get("task") or {}).get("name") or _task_of(run_dir)
    if task not in TASKS:
        return None
    main = TASKS[task].main_metric_key
    series = _read_logs(run_dir, "teacher", main, (LOSS,))
    if series is None:
        return None
    curve = TeacherCurve(run_dir, task, main, series["metric"], series[LOSS])
    try:
        done = json.loads((run_dir / "teacher" / "DONE.json").read_text())
        final = float(done["metrics"][main])
    except (OSError, ValueError, KeyError, TypeError):
        return curve
    # the stage reports the kept weights' metric (float64; the log holds it as float32) and
    # keeps the first evaluation that reached the best value
    kept = [
        (step, value) for step, value in curve.metric if math.isclose(value, final, abs_tol=1e-4)
    ]
    curve.kept = kept[0] if kept else None
    return curve


def _task_of(run_dir: Path) -> str | None:
    """The task named by ``results.json`` (a run without its config file)."""
    try:
        return json.loads((run_dir / "results.json").read_text()).get("task")
    except (OSError, ValueError, AttributeError):
        return None


def plot_teacher_curves(run_dirs: Sequence[str | Path], out_dir: Path) -> list[Path]:
    """Per task, one line per run that trained a teacher: its validation metric (top, a star at
    the kept evaluation) and training loss (bottom) per step (``<task>_teacher_curves.png``)."""
    # a run named as a source is also among the collected runs (by its resolved path): once
    unique = dict.fromkeys(Path(d).resolve() for d in run_dirs)
    curves = [c for c in map(read_teacher_curve, unique) if c]
    paths = []
    for task in dict.fromkeys(c.task for c in curves):
        mine = [c for c in curves if c.task == task and c.metric]
        if not mine:
            continue
        fig, (top, bottom) = figure(7, 5, rows=2)
        named = len(mine) <= 8  # a legend per run only while it stays readable
        for k, curve in enumerate(mine):
            color = f"C{k % 10}"
            label = curve.run_dir.name if named else None
            top.plot(*_xy(curve.metric), color=color, marker=".", linewidth=1, label=label)
            if curve.kept is not None:
                top.scatter(*zip(curve.kept, strict=True), marker="*", s=150, color=color, zorder=3)
            if curve.loss:
                bottom.plot(*_xy(_running_mean(curve.loss)), color=color, linewidth=1)
        top.scatter([], [], marker="*", s=80, color="gray", label="kept weights")
        top.set_ylabel(f"validation {mine[0].metric_name} (%)")
        top.set_title(f"{task}: teacher")
        bottom.set_ylabel("training loss (running mean)")
        paths.append(save(fig, [top], out_dir / f"{slug(task)}_teacher_curves.png"))
    return paths


def _running_mean(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """``points`` smoothed by a trailing mean over ~2% of them (the loss is logged per batch)."""
    width = max(1, len(points) // 50)
    values = [v for _, v in points]
    return [
        (step, sum(values[max(0, i - width + 1) : i + 1]) / (i + 1 - max(0, i - width + 1)))
        for i, (step, _) in enumerate(points)
    ]


def plot_prune_curves(groups: Sequence[Group], out_dir: Path) -> list[Path]:
    """Per (task, target sparsity): ŝ, t and the real sparsity (top) and the validation metric
    (bottom) per step, one colour per ablation; a star marks the exported evaluation
    (``<task>_s<target>_prune_curves.png``)."""
    colors = ablation_colors(groups)
    paths = []
    for task, target in dict.fromkeys((g.task, g.target_sparsity) for g in groups):
        cell = [g for g in groups if (g.task, g.target_sparsity) == (task, target)]
        mine = [r for g in cell for r in g.runs]
        curves = [(r, read_prune_curve(r.run_dir, r.main_metric, r.point)) for r in mine]
        curves = [(r, c) for r, c in curves if c is not None and c.expected]
        if not curves:
            continue
        fig, (top, bottom) = figure(7, 6, rows=2)
        labelled: set[str] = set()
        for run, curve in curves:
            color = colors[run.ablation]
            label = None if run.ablation in labelled else run.ablation
            labelled.add(run.ablation)
            top.plot(*_xy(curve.expected, 100), color=color, linewidth=1, label=label)
            if curve.real:  # what the export would hold, at each evaluation
                top.plot(*_xy(curve.real, 100), color=color, linestyle="none", marker="x", ms=3)
            if curve.metric:
                bottom.plot(*_xy(curve.metric), color=color, marker=".", linewidth=1, label=label)
            if curve.selected is not None:
                step, value = curve.selected
                bottom.scatter([step], [value], marker="*", s=150, color=color, zorder=3)
                top.axvline(step, color=color, linestyle=":", linewidth=1)
        _plot_targets(top, curves, colors)
        teacher_line(bottom, cell)
        top.plot([], [], "kx", ms=3, label="real sparsity at evaluations")
        top.set_ylabel("expected sparsity ŝ (%)")
        top.set_title(f"{task}, target {100 * target:g}%: prune stage")
        bottom.set_ylabel(f"validation {mine[0].main_metric} (%)")
        paths.append(
            save(fig, [top, bottom], out_dir / f"{slug(task)}_s{target:g}_prune_curves.png")
        )
    return paths


def _plot_targets(ax, curves: Sequence[tuple[object, PruneCurve]], colors: dict[str, str]) -> None:
    """The target t: one black dashed line when every run followed the same schedule, else each
    schedule (a sparsity path's, a different budget's) in the colour of its first run."""
    schedules: dict[tuple, str] = {}
    for run, curve in curves:
        if curve.target:
            schedules.setdefault(tuple(curve.target), run.ablation)
    if len(schedules) == 1:
        ax.plot(*_xy(list(next(iter(schedules))), 100), "k--", linewidth=1, label="target t")
        return
    for target, ablation in schedules.items():
        xy = _xy(list(target), 100)
        ax.plot(
            *xy, color=colors[ablation], linestyle="--", linewidth=1, label=f"target t ({ablation})"
        )


def _metric_column(columns: Sequence[str], main_metric: str) -> str | None:
    """``val/<metric>``, or with several evaluation sets the first ``val/<name>/<metric>``."""
    if f"val/{main_metric}" in columns:
        return f"val/{main_metric}"
    nested = (c for c in columns if c.startswith("val/") and c.endswith(f"/{main_metric}"))
    return next(nested, None)


def _selected(best: dict) -> tuple[int, float] | None:
    """``(step, metric)`` of the prune stage's ``best`` record, if it has both."""
    try:
        return int(best["step"]), float(best["metric"])
    except (ValueError, KeyError, TypeError):
        return None


def _version(path: Path) -> int:
    match = re.search(r"version_(\d+)", path.parent.name)
    return int(match.group(1)) if match else -1


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _xy(points: list[tuple[int, float]], scale: float = 1.0) -> tuple[list[int], list[float]]:
    return [s for s, _ in points], [scale * v for _, v in points]
