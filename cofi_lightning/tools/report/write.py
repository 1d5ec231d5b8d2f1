"""Write a sweep's report directory: ``report.md``, ``results.csv`` and the PNG plots.

This file owns the layout of ``report.md`` (which sections, in which order) and nothing else: the
numbers and tables come from ``tables.py``, the figures from ``plots.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cofi_lightning.tools.report.collect import Problem, Run
from cofi_lightning.tools.report.curves import plot_prune_curves, plot_teacher_curves
from cofi_lightning.tools.report.plots import plot_metric_vs_sparsity, plot_metric_vs_speedup
from cofi_lightning.tools.report.tables import (
    MISSED_NOTE,
    Group,
    ablation_table,
    aggregate,
    problems_table,
    structure_table,
    summary_table,
    write_csv,
)

REPORT_FILE = "report.md"
CSV_FILE = "results.csv"


def write_report(
    runs: Sequence[Run],
    problems: Sequence[Problem],
    out_dir: str | Path,
    sources: Sequence[str | Path] = (),
) -> Path:
    """Write ``report.md``, ``results.csv`` and the plots into ``out_dir`` (created if needed).

    Args:
        runs: The valid runs (:func:`~cofi_lightning.tools.report.collect_runs`).
        problems: The missing, failed and malformed jobs, listed in the report.
        out_dir: The report directory.
        sources: The directories the runs were collected from, named in the report's header.

    Returns:
        The path of ``report.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = aggregate(runs)
    write_csv(runs, out / CSV_FILE)
    plots = plot_metric_vs_sparsity(groups, out) + plot_metric_vs_speedup(groups, out)
    # teachers trained by the runs themselves, and teacher-only runs named as sources
    teachers = plot_teacher_curves([r.run_dir for r in runs] + list(map(Path, sources)), out)
    curves = teachers + plot_prune_curves(groups, out)
    text = render_markdown(
        groups, problems, [p.name for p in plots], sources, runs, [p.name for p in curves]
    )
    path = out / REPORT_FILE
    path.write_text(text)
    return path


def render_markdown(
    groups: Sequence[Group],
    problems: Sequence[Problem],
    plot_names: Sequence[str] = (),
    sources: Sequence[str | Path] = (),
    runs: Sequence[Run] = (),
    curve_names: Sequence[str] = (),
) -> str:
    """The text of ``report.md`` (plots are linked by file name, relative to the report).

    ``runs`` fill the per-run structure table and ``curve_names`` the training curves (teacher,
    prune stage); both sections are left out when empty.
    """
    n_runs = sum(g.n_seeds for g in groups)
    parts = ["# CoFi sweep report", ""]
    if sources:
        parts += ["Collected from " + ", ".join(f"`{s}`" for s in sources) + ".", ""]
    parts += [
        f"{n_runs} runs in {len(groups)} (task, ablation, target) groups; "
        f"{len(problems)} missing or failed jobs. Values are mean ± sample std over seeds "
        "(just the value with one seed); metrics are in %; speedup is the measured inference "
        "speedup over the unpruned model (`speedup` in results.json or the run's "
        "`speed_<device>_<dtype>.json`). "
        f"One row per run: `{CSV_FILE}`.",
        "",
        "## Results",
        "",
        summary_table(groups) if groups else "No results.",
        "",
        *([MISSED_NOTE, ""] if any(g.missed_target for g in groups) else []),
        "## Ablations",
        "",
        "Pruned main metric, mean ± std over seeds; in parentheses the difference to full CoFi's "
        "mean at the same target sparsity.",
        "",
    ]
    for task in dict.fromkeys(g.task for g in groups):
        parts += [f"### {task}", "", ablation_table(groups, task), ""]
        if any(g.missed_target for g in groups if g.task == task):
            parts += [MISSED_NOTE, ""]
    parts += ["## Plots", ""]
    for name in plot_names:
        parts += [f"![{name.removesuffix('.png')}]({name})", ""]
    parts += [] if plot_names else ["No plots.", ""]
    parts += _speedup_notes(groups)
    if curve_names:
        parts += [
            "## Training curves",
            "",
            "From the runs' CSV logs, per optimizer step: the teacher's validation metric and "
            "training loss; in the prune stage, expected sparsity against the target schedule, "
            "and the validation metric.",
            "",
        ]
        parts += [line for name in curve_names for line in (f"![{name[:-4]}]({name})", "")]
    if runs:
        parts += ["## Structures", "", structure_table(runs), ""]
    parts += ["## Missing or failed jobs", ""]
    parts += [problems_table(problems) if problems else "None.", ""]
    return "\n".join(parts)


def _speedup_notes(groups: Sequence[Group]) -> list[str]:
    """Say which tasks have no metric-vs-speedup plot, and why."""
    tasks = list(dict.fromkeys(g.task for g in groups))
    unmeasured = [t for t in tasks if not any(g.speedup for g in groups if g.task == t)]
    if not unmeasured:
        return []
    which = "any run" if len(unmeasured) == len(tasks) else "task " + ", ".join(unmeasured)
    return [
        f"Metric-vs-speedup plot skipped: no speedup measured for {which} (no `speedup` in "
        "results.json, no `speed_<device>_<dtype>.json`; see "
        "`python -m cofi_lightning.tools.bench`).",
        "",
    ]
