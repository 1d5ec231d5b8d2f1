"""Aggregate runs over seeds (mean ± sample std per task, ablation and target sparsity) and render
the report's Markdown tables and ``results.csv``."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cofi_lightning.tools.report.collect import CSV_COLUMNS, Problem, Run

MISSING = "–"  # an empty cell (no run, no speedup)
FULL = "full"  # ablation name of full CoFi (results.json: null)
MISSED = " †"  # marks a sparsity whose prune stage never evaluated within epsilon of the target
MISSED_NOTE = (
    "† No evaluation of the prune stage had its expected sparsity within epsilon of the target "
    "(in some seed); the closest one was exported, so the measured sparsity is off target."
)


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (n - 1; None with one value) over seeds."""

    mean: float
    std: float | None

    def format(self, digits: int = 1, scale: float = 1.0, unit: str = "") -> str:
        """``"85.3 ± 0.4"``, or ``"85.3"`` from a single seed (never ``"± nan"``)."""
        text = f"{self.mean * scale:.{digits}f}"
        if self.std is not None:
            text += f" ± {self.std * scale:.{digits}f}"
        return text + unit


def summarize(values: Iterable[float | None]) -> Stat | None:
    """The :class:`Stat` of the values that are not ``None``; ``None`` if there are none."""
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return None
    std = statistics.stdev(kept) if len(kept) > 1 else None
    return Stat(statistics.fmean(kept), std)


@dataclass(frozen=True)
class Group:
    """The runs of one (task, ablation, target sparsity) cell (one per seed), aggregated;
    ``teacher`` / ``speedup`` are None when no run evaluated a teacher / was benchmarked."""

    task: str
    ablation: str
    target_sparsity: float
    main_metric: str
    runs: tuple[Run, ...]
    sparsity: Stat
    teacher: Stat | None
    pruned: Stat
    speedup: Stat | None

    @property
    def n_seeds(self) -> int:
        return len(self.runs)

    @property
    def missed_target(self) -> bool:
        """Some run's prune stage never evaluated within epsilon of the target."""
        return any(r.reached_target is False for r in self.runs)


def aggregate(runs: Sequence[Run]) -> list[Group]:
    """Group runs by (task, ablation, target sparsity); groups keep the order of ``runs``."""
    cells: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        cells[(run.task, run.ablation, run.target_sparsity)].append(run)
    return [
        Group(
            task=task,
            ablation=ablation,
            target_sparsity=target,
            main_metric=members[0].main_metric,
            runs=tuple(members),
            sparsity=summarize(r.sparsity for r in members),
            teacher=summarize(r.teacher for r in members),
            pruned=summarize(r.pruned for r in members),
            speedup=summarize(r.speedup for r in members),
        )
        for (task, ablation, target), members in cells.items()
    ]


def ablation_order(groups: Iterable[Group]) -> list[str]:
    """Full CoFi first, then the ablations alphabetically."""
    names = {g.ablation for g in groups}
    return sorted(names, key=lambda name: (name != FULL, name))


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def summary_table(groups: Sequence[Group]) -> str:
    """One row per (task, ablation, target): sparsities, main metrics, speedup, seeds."""
    header = ["task", "ablation", "target (%)", "sparsity (%)", "metric", "teacher", "pruned"]
    header += ["of teacher (%)", "speedup", "seeds"]
    rows = [
        [
            g.task,
            g.ablation,
            f"{g.target_sparsity * 100:g}",
            g.sparsity.format(1, scale=100) + (MISSED if g.missed_target else ""),
            g.main_metric,
            g.teacher.format(1) if g.teacher else MISSING,
            g.pruned.format(1),
            _of_teacher(g),
            g.speedup.format(2, unit="×") if g.speedup else MISSING,
            str(g.n_seeds),
        ]
        for g in groups
    ]
    return markdown_table(header, rows)


def _of_teacher(group: Group) -> str:
    """The pruned metric's mean as a share of the teacher's (how the paper's goals are stated)."""
    if not group.teacher or not group.teacher.mean:
        return MISSING
    return f"{100 * group.pruned.mean / group.teacher.mean:.1f}"


def ablation_table(groups: Sequence[Group], task: str) -> str:
    """The paper's ablation layout for one task: a row per ablation, a column per target, the
    pruned main metric with its difference to full CoFi's mean at that target."""
    mine = [g for g in groups if g.task == task]
    targets = sorted({g.target_sparsity for g in mine})
    cell = {(g.ablation, g.target_sparsity): g for g in mine}
    header = [f"{task} ({mine[0].main_metric})"] + [f"{t * 100:g}%" for t in targets]
    rows = []
    for ablation in ablation_order(mine):
        row = [ablation]
        for target in targets:
            group, full = cell.get((ablation, target)), cell.get((FULL, target))
            if group is None:
                row.append(MISSING)
                continue
            text = group.pruned.format(1) + (MISSED if group.missed_target else "")
            if full is not None and ablation != FULL:
                text += f" ({group.pruned.mean - full.pruned.mean:+.1f})"
            row.append(text)
        rows.append(row)
    return markdown_table(header, rows)


def structure_table(runs: Sequence[Run]) -> str:
    """The exported structure of every run: hidden size, heads and FFN dims kept per layer (from
    layer 0; 0: the sublayer was removed)."""
    rows = []
    for run in runs:
        heads, ffn = run.structure.get("num_heads"), run.structure.get("intermediate_sizes")
        rows.append(
            [
                run.task,
                run.ablation,
                f"{run.target_sparsity * 100:g}",
                str(run.seed) if run.seed is not None else MISSING,
                f"{run.sparsity * 100:.1f}",
                str(run.structure.get("hidden_size", MISSING)),
                " ".join(map(str, heads)) if heads else MISSING,
                " ".join(map(str, ffn)) if ffn else MISSING,
            ]
        )
    header = ["task", "ablation", "target (%)", "seed", "sparsity (%)", "hidden"]
    return markdown_table(header + ["heads per layer", "FFN dims per layer"], rows)


def problems_table(problems: Sequence[Problem]) -> str:
    """The missing / failed jobs: directory, status, stages done, overrides, reason, SLURM logs."""
    rows = [
        [
            f"`{p.job_dir}`",
            p.status,
            ", ".join(p.stages_done) or MISSING,
            " ".join(p.overrides) or MISSING,
            p.reason,
            "<br>".join(f"`{log}`" for log in p.logs) or MISSING,
        ]
        for p in problems
    ]
    header = ["job", "status", "stages done", "overrides", "reason", "SLURM log"]
    return markdown_table(header, rows)


def write_csv(runs: Sequence[Run], path: Path) -> Path:
    """``results.csv``: one row per run (:meth:`Run.row`); empty cells for missing values."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for run in runs:
            writer.writerow({k: "" if v is None else v for k, v in run.row().items()})
    return path
