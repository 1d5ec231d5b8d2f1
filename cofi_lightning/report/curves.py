"""The prune stage's training curves, read back from the runs' CSV logs and plotted per target.

This file owns reading ``<run_dir>/prune/csv/version_*/metrics.csv`` (written with ``logger=csv``)
and the figure drawn from it: expected sparsity ŝ against the Lagrangian's target t (linearly
warmed up) and the validation main metric, against the optimizer step, one colour per ablation.
Runs logged to W&B only have no CSV file and are left out (their curves are on the W&B
dashboard). It does not compute anything the training did not log.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cofi_lightning.report.collect import prune_best
from cofi_lightning.report.plots import ablation_colors, slug, teacher_line
from cofi_lightning.report.tables import Group

LOG_GLOB = "prune/csv/version_*/metrics.csv"
EXPECTED, TARGET, REAL = "sparsity/expected", "sparsity/target", "sparsity/deterministic"


@dataclass
class PruneCurve:
    """One run's prune-stage series, each a sorted list of ``(step, value)``.

    Attributes:
        expected: Expected encoder sparsity ŝ of the sampled masks (fraction).
        target: The Lagrangian's target t at that step (fraction).
        metric: Validation main metric (%), at each evaluation.
        real: Real sparsity of the deterministic masks (what would be exported), at each
            evaluation.
        selected: ``(step, metric)`` of the evaluation whose masks were exported (the prune
            stage's ``DONE.json``), if known.
    """

    expected: list[tuple[int, float]] = field(default_factory=list)
    target: list[tuple[int, float]] = field(default_factory=list)
    metric: list[tuple[int, float]] = field(default_factory=list)
    real: list[tuple[int, float]] = field(default_factory=list)
    selected: tuple[int, float] | None = None


def read_prune_curve(
    run_dir: Path, main_metric: str, point: str | None = None
) -> PruneCurve | None:
    """The prune stage's curves of ``run_dir``, or None without a CSV log (``point``: the target
    whose selected evaluation is marked, on a sparsity path).

    A resumed stage logs each attempt into its own ``version_<n>`` folder; later attempts win for
    the steps they repeat (the replayed steps after the last checkpoint).
    """
    files = sorted(Path(run_dir).glob(LOG_GLOB), key=_version)
    if not files:
        return None
    series: dict[str, dict[int, float]] = {EXPECTED: {}, TARGET: {}, "metric": {}, REAL: {}}
    for path in files:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            metric_key = _metric_column(reader.fieldnames or [], main_metric)
            for row in reader:
                step = _float(row.get("step"))
                if step is None:
                    continue
                columns = {EXPECTED: EXPECTED, TARGET: TARGET, "metric": metric_key, REAL: REAL}
                for key, column in columns.items():
                    value = _float(row.get(column)) if column else None
                    if value is not None:
                        series[key][int(step)] = value
    curve = PruneCurve(*(sorted(series[k].items()) for k in (EXPECTED, TARGET, "metric", REAL)))
    curve.selected = _selected(prune_best(Path(run_dir), point))
    return curve


def plot_prune_curves(groups: Sequence[Group], out_dir: Path) -> list[Path]:
    """Per (task, target sparsity): ŝ, t and the real sparsity at each evaluation (top) and the
    validation metric (bottom) per step.

    One colour per ablation, as in the other plots (every seed drawn, thin); the teacher's metric
    is the dashed line; a star (and a dotted line above it) marks the evaluation whose masks were
    exported. Returns the written PNGs (``<task>_s<target>_prune_curves.png``); targets whose runs
    have no CSV log get none.
    """
    colors = ablation_colors(groups)
    paths = []
    for task, target in dict.fromkeys((g.task, g.target_sparsity) for g in groups):
        cell = [g for g in groups if (g.task, g.target_sparsity) == (task, target)]
        mine = [r for g in cell for r in g.runs]
        curves = [(r, read_prune_curve(r.run_dir, r.main_metric, r.point)) for r in mine]
        curves = [(r, c) for r, c in curves if c is not None and c.expected]
        if not curves:
            continue
        fig = Figure(figsize=(7, 6), layout="constrained")
        FigureCanvasAgg(fig)
        top, bottom = fig.subplots(2, 1, sharex=True)
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
        bottom.set_xlabel("optimizer step")
        for ax in (top, bottom):
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small")
        path = out_dir / f"{slug(task)}_s{target:g}_prune_curves.png"
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths


def _plot_targets(ax, curves: Sequence[tuple[object, PruneCurve]], colors: dict[str, str]) -> None:
    """The target t: one black dashed line when every run followed the same schedule; otherwise
    (a sparsity path beside single-target runs, or different budgets) each distinct schedule
    dashed in the colour of the first run that followed it."""
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
