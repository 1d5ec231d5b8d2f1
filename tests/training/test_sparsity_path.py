"""A sparsity path (``pruning.targets``): one prune stage, one best structure, finetune and export
per target, each resumable on its own; results, report and schedule of the path."""

from __future__ import annotations

import csv
import json

import pytest
from transformers import AutoModelForSequenceClassification

from cofi_lightning.config import ConfigError, load_config
from cofi_lightning.core.lagrangian import TargetPath
from cofi_lightning.run.pipeline import train
from cofi_lightning.run.results import Results
from cofi_lightning.tools.report import collect_runs

from runs import POINT_KEYS, RESULT_KEYS, Crash

# 48 sentences / batch 8 = 6 steps an epoch; 4 epochs = 24 pruning steps. The path: 1 step
# distillation only, ramp to 0.2 over 4 steps, dwell 6, ramp to 0.4 at the same rate (4 steps).
PATH = [
    "pruning.targets=[0.2,0.4]",
    "pruning.epochs=4",
    "pruning.path.dwell_steps=6",
    "pruning.eval_every_steps=2",
    "trainer.log_every_n_steps=1",
]


def _csv_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_path_runs_every_target_and_reports_each(compose_train, tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_train(tiny_overrides(run_dir) + PATH)
    with pytest.raises(RuntimeError, match="simulated crash"):  # killed in the 2nd point's finetune
        train(cfg, extra_callbacks={"finetune_0.4": [Crash(step=2)]})
    assert (run_dir / "pruned_model_0.2" / "model.safetensors").is_file()  # first point exported
    assert not (run_dir / "finetune_0.4" / "DONE.json").exists()
    finetune_02 = (run_dir / "finetune_0.2" / "DONE.json").stat().st_mtime_ns
    results = train(cfg)
    assert (run_dir / "finetune_0.2" / "DONE.json").stat().st_mtime_ns == finetune_02  # not re-run

    # results.json: shared keys at the top, one entry per target in operating_points
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk == results
    assert set(results) == {*RESULT_KEYS, "operating_points"}
    points = results["operating_points"]
    assert [p["target_sparsity"] for p in points] == [0.2, 0.4]
    for point, label in zip(points, ("0.2", "0.4"), strict=True):
        assert set(point) == set(POINT_KEYS)
        assert point["export_dir"] == str(run_dir / f"pruned_model_{label}")
        model = AutoModelForSequenceClassification.from_pretrained(point["export_dir"])
        params = model.num_encoder_params()  # the sparsity is counted on the export's tensors
        assert point["params"]["pruned"] == params
        assert point["sparsity"] == pytest.approx(1 - params / point["params"]["unpruned"])
        best = json.loads((run_dir / "prune" / f"best_{label}" / "meta.json").read_text())
        assert best["target"] == float(label)
        assert (run_dir / f"pruned_model_{label}" / "README.md").is_file()  # a card per export
        assert (run_dir / f"structure_{label}.png").is_file()
    assert {"finetune_0.2", "finetune_0.4", "export_0.2", "export_0.4"} <= set(
        results["stage_seconds"]
    )

    # the target followed the path: ramp, dwell at 0.2, ramp at the same rate, 0.4 to the end
    rows = _csv_rows(next((run_dir / "prune" / "csv").rglob("metrics.csv")))
    target = {int(r["step"]): float(r["sparsity/target"]) for r in rows if r["sparsity/target"]}
    expected = TargetPath((0.2, 0.4), (4, 4), (6,))
    for step, t in target.items():  # pruning starts after 1 distillation-only step
        assert t == pytest.approx(expected(step - 1)), step
    assert max(target.values()) == pytest.approx(0.4)
    assert sum(1 for t in target.values() if t == pytest.approx(0.2)) >= 5  # the dwell

    # the report sees two rows of one path, beside nothing else
    runs, problems = collect_runs(run_dir)
    assert not problems
    assert [(r.ablation, r.target_sparsity) for r in runs] == [
        ("full path", 0.2),
        ("full path", 0.4),
    ]


@pytest.mark.slow  # a subprocess run of train.py; CI runs the slow tests too
def test_train_py_runs_a_path_and_sweeps_optimise_its_mean(train_cli, tiny_overrides, tmp_path):
    """The command line, end to end: ``train.py`` returns a path's objective (the mean of its
    points' main metric) rather than looking for a single-target result."""
    run_dir = tmp_path / "run"
    proc = train_cli(*tiny_overrides(run_dir), *PATH, "pruning.epochs=3")
    output = proc.stdout + proc.stderr
    assert "CoFi run finished" in output
    assert "Loading weights" not in output  # progress bars off: no library bars in the log either
    results = json.loads((run_dir / "results.json").read_text())
    scores = [p["pruned"]["accuracy"] for p in results["operating_points"]]
    assert len(scores) == 2
    assert Results.from_dict(results).objective() == pytest.approx(sum(scores) / 2)
    single = {k: v for k, v in results.items() if k != "operating_points"}
    single.update(results["operating_points"][1])
    older = Results.from_dict(single)  # a single-target file (the older layout) still works
    assert older.objective() == scores[1]


def test_a_path_point_fans_out_as_a_run_of_its_own(compose_train, tiny_overrides, tmp_path):
    """The documented fan-out: one job runs the path's prune stage, then each target's finetune
    and export run as separate single-target jobs reading its structure."""
    path_dir = tmp_path / "path"
    train(compose_train(tiny_overrides(path_dir) + PATH + ["stages=[teacher,prune]"]))
    assert (path_dir / "prune" / "best_0.4" / "masks.pt").is_file()
    assert not (path_dir / "finetune_0.2").exists()
    one = tmp_path / "point_0.4"
    results = train(
        compose_train(
            tiny_overrides(one)
            + [
                "stages=[teacher,finetune,export]",
                f"distill.teacher={path_dir}/teacher/model",
                "pruning.target_sparsity=0.4",
                f"pruning.structure_dir={path_dir}/prune/best_${{pruning.target_sparsity}}",
            ]
        )
    )
    assert [p["target_sparsity"] for p in results["operating_points"]] == [0.4]
    assert results["target_sparsity"] == 0.4 and (one / "pruned_model").is_dir()
    masks = json.loads((path_dir / "prune" / "best_0.4" / "meta.json").read_text())
    assert results["sparsity"] == pytest.approx(masks["deterministic_sparsity"], abs=1e-6)


@pytest.mark.parametrize(
    "override, message",
    [
        ("pruning.targets=[0.6,0.4]", "must be ascending"),
        ("pruning.targets=[0.6,0.61]", "more than 2 x pruning.sparsity_epsilon"),
        ("pruning.targets=[0.6,1.0]", "must all be in"),
        ("pruning.targets=[]", "at least one target"),
    ],
)
def test_bad_targets_are_config_errors(compose_train, tiny_overrides, tmp_path, override, message):
    overrides = tiny_overrides(tmp_path / "run") + [override, "pruning.sparsity_epsilon=0.01"]
    with pytest.raises(ConfigError, match=message):
        load_config(compose_train(overrides))


def test_a_path_longer_than_the_stage_is_refused(compose_train, tiny_overrides, tmp_path):
    overrides = tiny_overrides(tmp_path / "run") + PATH + ["pruning.path.dwell_steps=40"]
    with pytest.raises(ConfigError, match="pruning.targets: the path needs 49 steps"):
        train(compose_train(overrides))


def test_a_path_longer_than_max_steps_is_refused_before_anything_runs(
    compose_train, tiny_overrides, tmp_path
):
    overrides = tiny_overrides(tmp_path / "run") + PATH + ["pruning.max_steps=10"]
    match = r"pruning.targets: the path needs 15 steps .*stage has 10 \(pruning.max_steps=10\)"
    with pytest.raises(ConfigError, match=match):
        load_config(compose_train(overrides))


def test_run_name_names_the_path(compose_train, tiny_overrides, tmp_path):
    cfg = compose_train(tiny_overrides(tmp_path / "run") + PATH)
    assert cfg.run_name.startswith("sst2_s0.2-0.4_full_seed57_")
    single = compose_train(tiny_overrides(tmp_path / "run"))
    assert single.run_name.startswith("sst2_s0.3_full_seed57_")
