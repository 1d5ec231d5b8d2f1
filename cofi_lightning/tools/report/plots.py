"""The report's PNG plots of the seed-aggregated groups, one pair per task: main metric vs sparsity
and vs speedup. Figures are drawn on an explicit Agg canvas (no pyplot state, no display), so
plotting never changes the process-wide matplotlib backend.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from cofi_lightning.tools.report.tables import Group, ablation_order, summarize


def plot_metric_vs_sparsity(groups: Sequence[Group], out_dir: Path) -> list[Path]:
    """Per task: pruned main metric vs measured sparsity, one line per ablation, ± std error bars
    on both axes (``<task>_metric_vs_sparsity.png``)."""
    paths, colors = [], ablation_colors(groups)
    for task in _tasks(groups):
        mine = [g for g in groups if g.task == task]
        fig, (ax,) = figure(6, 4)
        for ablation in ablation_order(mine):
            points = sorted((g for g in mine if g.ablation == ablation), key=_sparsity)
            ax.errorbar(
                [_sparsity(g) for g in points],
                [g.pruned.mean for g in points],
                xerr=[100 * (g.sparsity.std or 0.0) for g in points],
                yerr=[g.pruned.std or 0.0 for g in points],
                marker="o",
                capsize=3,
                color=colors[ablation],
                label=ablation,
            )
        teacher_line(ax, mine)
        ax.set_xlabel("measured encoder sparsity (%)")
        ax.set_ylabel(f"{mine[0].main_metric} (%)")
        ax.set_title(f"{task}: {mine[0].main_metric} vs sparsity")
        paths.append(save(fig, [ax], out_dir / f"{slug(task)}_metric_vs_sparsity.png"))
    return paths


def plot_metric_vs_speedup(groups: Sequence[Group], out_dir: Path) -> list[Path]:
    """Per task with any speedup: pruned main metric vs speedup, every benchmarked cell a marker,
    one Pareto curve per ablation, the teacher at 1× (``<task>_metric_vs_speedup.png``)."""
    paths, colors = [], ablation_colors(groups)
    for task in _tasks(groups):
        mine = [g for g in groups if g.task == task and g.speedup is not None]
        if not mine:
            continue
        fig, (ax,) = figure(6, 4)
        for ablation in ablation_order(mine):
            points = [(g.speedup.mean, g.pruned.mean) for g in mine if g.ablation == ablation]
            front = pareto_front(points)
            color = colors[ablation]
            ax.plot(*zip(*front, strict=True), marker="o", color=color, label=ablation)
            ax.scatter(*zip(*points, strict=True), facecolors="none", edgecolors=color)
        teacher = summarize(g.teacher.mean for g in groups if g.task == task and g.teacher)
        if teacher is not None:
            ax.scatter([1.0], [teacher.mean], marker="*", s=120, color="black", label="teacher")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("inference speedup (log scale)")
        ax.set_ylabel(f"{mine[0].main_metric} (%)")
        ax.set_title(f"{task}: {mine[0].main_metric} vs speedup")
        paths.append(save(fig, [ax], out_dir / f"{slug(task)}_metric_vs_speedup.png"))
    return paths


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (speedup, metric) points no other point beats on both, by increasing speedup."""
    front, best = [], float("-inf")
    # From the fastest down: a point is on the front iff it is more accurate than every faster one.
    for point in sorted(points, key=lambda p: (-p[0], -p[1])):
        if point[1] > best:
            front.append(point)
            best = point[1]
    return front[::-1]


def ablation_colors(groups: Sequence[Group]) -> dict[str, str]:
    """One colour per ablation across all of a report's plots (matplotlib's C0, C1, ...)."""
    return {name: f"C{i % 10}" for i, name in enumerate(ablation_order(groups))}


def _tasks(groups: Sequence[Group]) -> list[str]:
    return list(dict.fromkeys(g.task for g in groups))


def _sparsity(group: Group) -> float:
    return 100 * group.sparsity.mean


def teacher_line(ax, groups: Sequence[Group]) -> None:
    """The teachers' mean main metric as a dashed horizontal line (nothing without a teacher)."""
    teacher = summarize(g.teacher.mean for g in groups if g.teacher)
    if teacher is not None:
        ax.axhline(teacher.mean, color="black", linestyle="--", linewidth=1, label="teacher")


def figure(width: float, height: float, rows: int = 1) -> tuple[Figure, list]:
    """A figure of ``rows`` gridded panels; several share the optimizer-step axis."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0])
    for ax in axes:
        ax.grid(True, alpha=0.3)
    if rows > 1:
        axes[-1].set_xlabel("optimizer step")
    return fig, axes


def save(fig: Figure, legends: Sequence[object], path: Path) -> Path:
    """Draw the legends of the axes ``legends`` and write ``fig`` to ``path``."""
    for ax in legends:
        ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    return path


def slug(name: str) -> str:
    """A file-name-safe form of ``name`` (every report PNG is named with it)."""
    return re.sub(r"[^\w.-]+", "_", name)
