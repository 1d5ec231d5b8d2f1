"""Write a sweep's report directory: the layout of ``report.md`` (which sections, in which order),
``results.csv`` and the plots.
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
    """Write ``report.md``, ``results.csv`` and the plots into ``out_dir`` (created if needed);
    ``sources`` (the directories given) are named in the header. Returns ``report.md``'s path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = aggregate(runs)
    write_csv(runs, out / CSV_FILE)
    plots = plot_metric_vs_sparsity(groups, out) + plot_metric_vs_speedup(groups, out)
    # teachers trained by the runs themselves, and teacher-only runs named as sources
    teachers = plot_teacher_curves([r.run_dir for r in runs] + list(map(Path, sources)), out)
    curves = teachers + plot_prune_curves(groups, out)
    text = _markdown(groups, problems, plots, sources, runs, curves)
    path = out / REPORT_FILE
    path.write_text(text)
    return path


def _markdown(
    groups: Sequence[Group],
    problems: Sequence[Problem],
    plots: Sequence[Path],
    sources: Sequence[str | Path],
    runs: Sequence[Run],
    curves: Sequence[Path],
) -> str:
    """The text of ``report.md`` (figures linked by file name, relative to the report)."""
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
    parts += [line for plot in plots for line in (f"![{plot.stem}]({plot.name})", "")]
    parts += [] if plots else ["No plots.", ""]
    parts += _speedup_notes(groups)
    if curves:
        parts += [
            "## Training curves",
            "",
            "From the runs' CSV logs, per optimizer step: the teacher's validation metric and "
            "training loss; in the prune stage, expected sparsity against the target schedule, "
            "and the validation metric.",
            "",
        ]
        parts += [line for curve in curves for line in (f"![{curve.stem}]({curve.name})", "")]
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
