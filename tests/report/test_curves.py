"""Training curves read back from CSV logs (prune stage, teacher), their plots, the report's
structure table, and runs whose prune stage never reached the target window."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from matplotlib.image import imread

from cofi_lightning.tools.report import collect_runs, curves
from cofi_lightning.tools.report.curves import read_prune_curve, read_teacher_curve
from cofi_lightning.tools.report.write import write_report

COLUMNS = [
    "epoch",
    "step",
    "sparsity/expected",
    "sparsity/target",
    "sparsity/deterministic",
    "train/loss",
    "val/accuracy",
]


def write_log(run_dir: Path, version: int, rows: list[dict], stage: str = "prune") -> None:
    """A Lightning CSVLogger file: one metric per row, the others empty (as Lightning writes)."""
    path = run_dir / stage / "csv" / f"version_{version}" / "metrics.csv"
    path.parent.mkdir(parents=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def write_run(root: Path, name: str, ablation: str | None, target: float, heads: list[int]) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    results = {
        "task": "mrpc",
        "target_sparsity": target,
        "sparsity": target + 0.003,
        "pruned": {"accuracy": 80.0},
        "teacher": {"accuracy": 83.0},
        "main_metric": "accuracy",
        "structure": {"hidden_size": 300, "num_heads": heads, "intermediate_sizes": [512, 0]},
        "ablation": ablation,
        "seed": 57,
    }
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


def test_resumed_attempts_merge_and_the_later_attempt_wins(tmp_path):
    run = write_run(tmp_path, "full", None, 0.6, [4, 2])
    # Attempt 0 logged steps 0..29 and was lost after its checkpoint at step 20; attempt 1 replays
    # steps 20..29 (different samples) and continues. Evaluations log on their own rows.
    first = [
        {"step": s, "sparsity/expected": 0.01 * s, "sparsity/target": 0.02 * s} for s in range(30)
    ]
    first += [{"step": 19, "val/accuracy": 70.0, "sparsity/deterministic": 0.21}]
    second = [
        {"step": s, "sparsity/expected": 0.5 + 0.001 * s, "sparsity/target": 0.02 * s}
        for s in range(20, 40)
    ]
    second += [{"step": 39, "val/accuracy": 75.5}, {"step": 40, "train/loss": 0.3}]
    write_log(run, 0, first)
    write_log(run, 1, second)
    assert read_prune_curve(run, "accuracy").selected is None  # prune stage not finished
    best = {"step": 39, "metric": 75.5, "reached_target": True}
    (run / "prune" / "DONE.json").write_text(json.dumps({"best": best}))

    curve = read_prune_curve(run, "accuracy")
    assert curve.selected == (39, 75.5)
    assert [s for s, _ in curve.expected] == list(range(40))
    assert dict(curve.expected)[25] == 0.5 + 0.025  # replayed step: the later attempt's value
    assert dict(curve.expected)[10] == 0.1
    assert curve.metric == [(19, 70.0), (39, 75.5)]
    assert curve.real == [(19, 0.21)]  # the export's sparsity at that evaluation
    assert dict(curve.target)[39] == 0.78
    assert read_prune_curve(tmp_path / "no_logs", "accuracy") is None


def test_report_has_curves_per_target_and_every_structure(tmp_path):
    root = tmp_path / "sweep"
    logged = {
        "full": write_run(root, "a", None, 0.6, [4, 2]),
        "no_hidden_mask": write_run(root, "b", "no_hidden_mask", 0.6, [3, 0]),
    }
    for i, run in enumerate(logged.values()):
        rows = [
            {"step": s, "sparsity/expected": 0.01 * s + i, "sparsity/target": 0.01 * s}
            for s in range(60)
        ]
        write_log(run, 0, rows + [{"step": 59, "val/accuracy": 79.0 + i}])
    write_run(root, "c", None, 0.9, [1, 1])  # no CSV log (a W&B-only run): no curve for 0.9

    runs, problems = collect_runs(root)
    report = write_report(runs, problems, root / "report")
    text = report.read_text()
    png = report.parent / "mrpc_s0.6_prune_curves.png"
    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert "(mrpc_s0.6_prune_curves.png)" in text
    assert not (report.parent / "mrpc_s0.9_prune_curves.png").exists()

    structures = text[text.index("## Structures") :].splitlines()
    rows = [line for line in structures if line.startswith("| mrpc")]
    assert len(rows) == 3
    cells = {(r.split(" | ")[1], r.split(" | ")[2]): r for r in rows}
    assert cells[("full", "60")].endswith("| 300 | 4 2 | 512 0 |")
    assert cells[("no_hidden_mask", "60")].endswith("| 300 | 3 0 | 512 0 |")
    assert "| 90.3 |" in cells[("full", "90")]


def test_runs_that_missed_the_target_window_are_marked(tmp_path):
    root = tmp_path / "sweep"
    for name, ablation, reached in (("a", None, True), ("b", "no_hidden_mask", False)):
        run = write_run(root, name, ablation, 0.6, [4, 2])
        (run / "prune").mkdir()
        done = {"best": {"step": 40, "metric": 70.0, "reached_target": reached}}
        (run / "prune" / "DONE.json").write_text(json.dumps(done))
    write_run(root, "c", "no_distill", 0.6, [4, 2])  # no prune/DONE.json: unknown, not marked

    runs, problems = collect_runs(root)
    assert {r.ablation: r.reached_target for r in runs} == {
        "full": True,
        "no_hidden_mask": False,
        "no_distill": None,
    }
    report = write_report(runs, problems, root / "report")
    rows = [ln for ln in report.read_text().splitlines() if ln.startswith("| mrpc |")]
    marked = {ln.split(" | ")[1] for ln in rows[:3] if "60.3 †" in ln}
    assert marked == {"no_hidden_mask"}
    assert "the closest one was exported" in report.read_text()
    csv_rows = list(csv.DictReader((report.parent / "results.csv").open()))
    assert {r["ablation"]: r["reached_target"] for r in csv_rows} == {
        "full": "True",
        "no_hidden_mask": "False",
        "no_distill": "",
    }


def test_a_path_beside_single_target_runs_gets_its_own_target_line():
    from types import SimpleNamespace

    from matplotlib.figure import Figure

    from cofi_lightning.tools.report.curves import PruneCurve, _plot_targets

    ramp = [(s, min(0.006 * s, 0.6)) for s in range(200)]
    path = [(s, min(0.003 * s, 0.6)) for s in range(200)]
    colors = {"full": "C0", "full path": "C1"}

    def run(ablation):
        return SimpleNamespace(ablation=ablation)

    ax = Figure().subplots()
    seeds = [(run("full"), PruneCurve(target=list(ramp))) for _ in range(3)]
    _plot_targets(ax, seeds, colors)
    assert ax.get_legend_handles_labels()[1] == ["target t"]  # three seeds, one schedule

    ax = Figure().subplots()
    _plot_targets(ax, seeds + [(run("full path"), PruneCurve(target=path))], colors)
    handles, labels = ax.get_legend_handles_labels()
    assert labels == ["target t (full)", "target t (full path)"]
    assert [h.get_color() for h in handles] == ["C0", "C1"]
    assert list(handles[1].get_ydata()) == [100 * t for _, t in path]


def write_teacher_run(root: Path, kept: float | None) -> Path:
    """A teacher-only run (``stages=[teacher]``): evaluations every 10 steps, the loss per step,
    and, if it finished, ``DONE.json`` with the kept weights' metric."""
    run = root / "teacher_run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("task:\n  name: sst2\n")
    rows = [{"step": s, "train/loss": 1.0 / (s + 1)} for s in range(60)]
    # the log holds float32 values, DONE.json the float64 metric
    rows += [{"step": s, "val/accuracy": v} for s, v in [(9, 80.0), (19, 88.49999), (29, 87.0)]]
    write_log(run, 0, rows, stage="teacher")
    write_log(run, 1, [{"step": 39, "val/accuracy": 86.0}], stage="teacher")  # a resumed attempt
    if kept is not None:
        (run / "teacher" / "DONE.json").write_text(json.dumps({"metrics": {"accuracy": kept}}))
    return run


def test_teacher_curve_marks_the_kept_evaluation(tmp_path):
    assert read_teacher_curve(write_run(tmp_path, "full", None, 0.6, [4, 2])) is None  # no log
    unfinished = read_teacher_curve(write_teacher_run(tmp_path / "a", kept=None))
    assert unfinished.kept is None
    assert unfinished.metric == [(9, 80.0), (19, 88.49999), (29, 87.0), (39, 86.0)]
    assert len(unfinished.loss) == 60 and unfinished.metric_name == "accuracy"
    curve = read_teacher_curve(write_teacher_run(tmp_path / "b", kept=88.5))
    assert curve.kept == (19, 88.49999)  # the best evaluation, not the last


def test_report_draws_the_teacher_of_a_teacher_only_source(tmp_path, monkeypatch):
    run = write_run(tmp_path / "runs", "full", None, 0.6, [4, 2])
    teacher = write_teacher_run(tmp_path, kept=88.5)
    path = write_report(*collect_runs([run, teacher]), tmp_path / "report", sources=[run, teacher])
    text = path.read_text()
    assert "![sst2_teacher_curves](sst2_teacher_curves.png)" in text
    image = imread(tmp_path / "report" / "sst2_teacher_curves.png")
    assert image.shape[0] > 100 and image[..., :3].std() > 0.01  # a drawn figure, not blank
    # without the teacher-only source there is no teacher figure
    path = write_report(*collect_runs([run]), tmp_path / "report2", sources=[run])
    assert "teacher_curves" not in path.read_text()
    # a run that trained its own teacher (the whole pipeline in one run directory) draws it
    write_log(run, 0, [{"step": 9, "val/accuracy": 81.0}], stage="teacher")
    read, reader = [], curves.read_teacher_curve
    monkeypatch.setattr(curves, "read_teacher_curve", lambda d: read.append(d) or reader(d))
    relative = Path(os.path.relpath(run))  # as typed on the command line
    path = write_report(*collect_runs([relative]), tmp_path / "report3", sources=[relative])
    assert "![mrpc_teacher_curves](mrpc_teacher_curves.png)" in path.read_text()
    assert read == [run.resolve()]  # the source and its collected run: one curve, drawn once
