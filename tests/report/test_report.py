"""``cofi_lightning.tools.report`` on a fake sweep: collection, aggregation, tables, plots, the CLI
and its W&B run.

The sweep is written once per module: an SST-2 grid (full CoFi and ``no_hidden_mask`` at two
targets with three seeds, ``no_distill`` with one seed), one MRPC run without a speedup, a job
whose ``run_dir`` lies outside the sweep, a crashed job, a malformed ``results.json`` and a
submitit job that died before Hydra started. Expected numbers are recomputed here from what was
written, never copied from the report.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml
from matplotlib.image import imread

from cofi_lightning.tools.report import collect_runs
from cofi_lightning.tools.report.__main__ import main, parse_args
from cofi_lightning.tools.report.collect import CSV_COLUMNS, Run, parse_results
from cofi_lightning.tools.report.plots import pareto_front
from cofi_lightning.tools.report.tables import aggregate
from cofi_lightning.tools.report.write import write_report

from wandb_offline import offline_run_dir, read_offline_run

GRID = [(abl, t, s) for abl in (None, "no_hidden_mask") for t in (0.6, 0.95) for s in (1, 2, 3)]
GRID += [("no_distill", 0.95, 1)]


def fake_results(task="sst2", ablation=None, target=0.6, seed=1, metric="accuracy") -> dict:
    """A results.json with the keys the report reads; values vary with the inputs."""
    unpruned = 21_000_000
    pruned_params = int(unpruned * (1 - target - 0.004 * seed))
    accuracy = 92.0 - 8.0 * target - (1.5 if ablation else 0.0) + 0.37 * seed**2
    return {
        "task": task,
        "target_sparsity": target,
        "sparsity": 1 - pruned_params / unpruned,
        "params": {"unpruned": unpruned, "pruned": pruned_params},
        "teacher": {metric: 93.0 + 0.1 * seed},
        "pruned": {metric: accuracy, "loss": 0.3},
        "main_metric": metric,
        "structure": {"hidden_size": 384, "num_heads": [6, 3], "intermediate_sizes": [900, 0]},
        "export_dir": "pruned_model",
        "ablation": ablation,
        "seed": seed,
        "stage_seconds": {"teacher": 10.0, "prune": 20.0, "finetune": 5.0, "export": 1.0},
    }


def job_dir(root: Path, name: str, overrides: list[str], job_id="???", **config) -> Path:
    """A Hydra job dir: ``.hydra/{config,overrides,hydra}.yaml``."""
    hydra = root / name / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "config.yaml").write_text(yaml.safe_dump({"seed": 1, "run_dir": None, **config}))
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    hydra_cfg = {"hydra": {"job": {"id": job_id, "name": "train"}, "runtime": {"cwd": str(root)}}}
    (hydra / "hydra.yaml").write_text(yaml.safe_dump(hydra_cfg))
    return root / name


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("sweep")
    written = []
    for i, (ablation, target, seed) in enumerate(GRID):
        run = job_dir(root, str(i), [f"ablation={ablation}", f"seed={seed}"])
        res = fake_results("sst2", ablation, target, seed)
        # Speedups three ways: in results.json, in the bench's file, or (no_distill) not at all.
        speedup = round(1 / (1 - res["sparsity"]) * (0.8 + 0.01 * seed), 3)
        if ablation is None:
            res["speedup"] = speedup
        elif ablation == "no_hidden_mask":
            (run / "speed_cpu_fp32.json").write_text(json.dumps({"speedup": speedup}))
            res["speedup_in_speed_json"] = speedup
        (run / "results.json").write_text(json.dumps(res))
        written.append(res)
    mrpc = fake_results("mrpc", None, 0.6, 1, metric="f1")
    (job_dir(root, "mrpc", ["task=mrpc"]) / "results.json").write_text(json.dumps(mrpc))
    # run_dir outside the sweep: the Hydra dir holds the config, the other dir the results.
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "run"
    elsewhere.mkdir()
    job_dir(root, "moved", ["run_dir=..."], run_dir=str(elsewhere))
    moved = fake_results("mrpc", None, 0.95, 1, metric="f1")
    (elsewhere / "results.json").write_text(json.dumps(moved))

    crashed = job_dir(root, "crashed", ["pruning.target_sparsity=0.7"], job_id="4242_7")
    (crashed / "teacher").mkdir()
    (crashed / "teacher" / "DONE.json").write_text("{}")  # prune/DONE.json missing
    err = root / ".submitit" / "4242_7" / "4242_7_0_log.err"
    err.parent.mkdir(parents=True)
    err.write_text(
        "Traceback (most recent call last):\n  File 'train.py', line 3\n"
        "torch.OutOfMemoryError: CUDA out of memory.\nsrun: error: node1: Exited with exit code 1\n"
    )
    err.with_name("4242_7_0_log.out").write_text("[teacher] starting\n")
    broken = job_dir(root, "broken", ["seed=9"])
    (broken / "results.json").write_text('{"task": "sst2", "sparsity": ')
    orphan = root / ".submitit" / "999" / "999_0_log.err"
    orphan.parent.mkdir(parents=True)
    orphan.write_text("ValueError: could not unpickle the job\n")
    (root / ".submitit" / "1000").mkdir()  # submitted, not started: not a problem yet

    runs, problems = collect_runs([root, elsewhere.parent])
    report = write_report(runs, problems, root / "report", sources=[root])
    return dict(root=root, written=written, runs=runs, problems=problems, report=report)


def table(markdown: str, heading: str) -> list[list[str]]:
    """The first Markdown table after ``heading``: header row, then data rows (cells stripped)."""
    lines = markdown[markdown.index(heading + "\n") :].splitlines()[1:]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def expected(written: list[dict], ablation, target) -> tuple[list[float], list[float]]:
    cell = [r for r in written if r["ablation"] == ablation and r["target_sparsity"] == target]
    speed = [r.get("speedup", r.get("speedup_in_speed_json")) for r in cell]
    return [r["pruned"]["accuracy"] for r in cell], [s for s in speed if s is not None]


def fmt(values: list[float], digits: int = 1) -> str:
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def test_collects_every_run_once(sweep):
    runs = sweep["runs"]
    assert len(runs) == len(GRID) + 2  # the moved run counted once, though both dirs were given
    assert {r.task for r in runs} == {"sst2", "mrpc"}
    assert {r.ablation for r in runs} == {"full", "no_hidden_mask", "no_distill"}
    by_cell = {(r.ablation, r.target_sparsity, r.seed): r for r in runs if r.task == "sst2"}
    for res in sweep["written"]:
        run = by_cell[(res["ablation"] or "full", res["target_sparsity"], res["seed"])]
        assert run.speedup == res.get("speedup", res.get("speedup_in_speed_json"))


def test_aggregates_over_seeds(sweep):
    groups = {(g.task, g.ablation, g.target_sparsity): g for g in aggregate(sweep["runs"])}
    for ablation, target in [(None, 0.6), ("no_hidden_mask", 0.95)]:
        group = groups[("sst2", ablation or "full", target)]
        pruned, speed = expected(sweep["written"], ablation, target)
        assert group.n_seeds == 3
        assert group.pruned.mean == pytest.approx(statistics.mean(pruned))
        assert group.pruned.std == pytest.approx(statistics.stdev(pruned))
        assert group.speedup.mean == pytest.approx(statistics.mean(speed))
    single = groups[("sst2", "no_distill", 0.95)]
    assert single.pruned.std is None and single.speedup is None


def test_summary_table(sweep):
    rows = table(sweep["report"].read_text(), "## Results")
    header, body = rows[0], {(r[0], r[1], r[2]): r for r in rows[1:]}
    col = {name: i for i, name in enumerate(header)}
    assert len(body) == 7  # 2 ablations x 2 targets + no_distill, mrpc at 0.6 and 0.95
    pruned, speed = expected(sweep["written"], "no_hidden_mask", 0.6)
    row = body[("sst2", "no_hidden_mask", "60")]
    assert row[col["pruned"]] == fmt(pruned)
    assert row[col["speedup"]] == fmt(speed, 2) + "×"
    assert row[col["seeds"]] == "3"
    teacher = [
        r["teacher"]["accuracy"]
        for r in sweep["written"]
        if (r["ablation"], r["target_sparsity"]) == ("no_hidden_mask", 0.6)
    ]
    share = 100 * statistics.mean(pruned) / statistics.mean(teacher)
    assert row[col["of teacher (%)"]] == f"{share:.1f}"
    sparsity = [100 * r["sparsity"] for r in sweep["written"] if r["ablation"] == "no_hidden_mask"]
    assert row[col["sparsity (%)"]] == fmt(sparsity[:3])
    one_seed = body[("sst2", "no_distill", "95")]
    assert "±" not in one_seed[col["pruned"]] and "nan" not in one_seed[col["pruned"]]
    assert one_seed[col["speedup"]] == "–"
    assert body[("mrpc", "full", "60")][col["metric"]] == "f1"


def test_ablation_table(sweep):
    rows = table(sweep["report"].read_text(), "### sst2")
    assert rows[0] == ["sst2 (accuracy)", "60%", "95%"]
    assert [r[0] for r in rows[1:]] == ["full", "no_distill", "no_hidden_mask"]
    full = {t: expected(sweep["written"], None, t)[0] for t in (0.6, 0.95)}
    assert rows[1][1:] == [fmt(full[0.6]), fmt(full[0.95])]
    assert rows[2][1] == "–"
    nd = expected(sweep["written"], "no_distill", 0.95)[0]
    assert rows[2][2] == f"{fmt(nd)} ({nd[0] - statistics.mean(full[0.95]):+.1f})"
    nhm = expected(sweep["written"], "no_hidden_mask", 0.6)[0]
    diff = statistics.mean(nhm) - statistics.mean(full[0.6])
    assert rows[3][1] == f"{fmt(nhm)} ({diff:+.1f})"


def test_lists_missing_and_failed_jobs(sweep):
    problems = {p.job_dir.name: p for p in sweep["problems"]}
    assert set(problems) == {"crashed", "broken", "999"}
    crashed = problems["crashed"]
    assert crashed.status == "failed" and crashed.stages_done == ("teacher",)
    assert crashed.reason.startswith("torch.OutOfMemoryError: CUDA out of memory.")
    assert crashed.overrides == ("pruning.target_sparsity=0.7",)
    assert problems["broken"].status == "malformed"
    assert "cannot read results.json" in problems["broken"].reason
    assert problems["999"].status == "failed" and "could not unpickle" in problems["999"].reason
    # where to read on: the job's SLURM logs (submitit's stderr and stdout), with full paths
    slurm = sweep["root"] / ".submitit" / "4242_7"
    assert crashed.logs == (slurm / "4242_7_0_log.err", slurm / "4242_7_0_log.out")
    assert problems["999"].logs == (sweep["root"] / ".submitit" / "999" / "999_0_log.err",)
    assert problems["broken"].logs == ()
    rows = table(sweep["report"].read_text(), "## Missing or failed jobs")
    assert len(rows) == 4 and rows[0][-1] == "SLURM log"
    listed = {Path(r[0].strip("`")).name: r for r in rows[1:]}
    assert listed["crashed"][1:3] == ["failed", "teacher"]
    assert listed["crashed"][-1] == "<br>".join(f"`{log}`" for log in crashed.logs)


def test_error_only_in_the_slurm_stdout(tmp_path):
    """Hydra logs a job's error on the console, which SLURM writes to the job's stdout: a job
    whose stderr and job log say nothing still gets its reason."""
    run = job_dir(tmp_path, "quiet", ["task=rte"], job_id="7_1")
    (run / "train.log").write_text("[prune] starting\n")
    folder = tmp_path / ".submitit" / "7_1"
    folder.mkdir(parents=True)
    (folder / "7_1_0_log.err").write_text("[1/4 teacher] starting\n")
    (folder / "7_1_0_log.out").write_text("[train][ERROR] - DataError: bad labels\n")
    (problem,) = collect_runs(tmp_path)[1]
    assert problem.status == "failed"
    assert problem.reason == "[train][ERROR] - DataError: bad labels (7_1_0_log.out)"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: [r], "holds a list"),
        (lambda r: {k: v for k, v in r.items() if k != "sparsity"}, "lacks sparsity"),
        (lambda r: {**r, "main_metric": "f1"}, "lack the main metric 'f1'"),
        (lambda r: {**r, "pruned": {"accuracy": None}}, "pruned.accuracy is None"),
    ],
)
def test_malformed_results_say_why(tmp_path, change, message):
    (tmp_path / "results.json").write_text(json.dumps(change(fake_results())))
    with pytest.raises(ValueError, match=message):
        parse_results(tmp_path / "results.json")


def test_missing_results_without_error_log(tmp_path):
    run = job_dir(tmp_path, "running", ["seed=1"], stages=["teacher", "prune"])
    (run / "teacher").mkdir()
    (run / "teacher" / "DONE.json").write_text("{}")
    (run / "train.log").write_text("[INFO] - [prune] starting\n")
    runs, problems = collect_runs(tmp_path)
    assert runs == [] and len(problems) == 1
    assert problems[0].status == "missing"
    assert problems[0].reason.endswith("last log line: [INFO] - [prune] starting")


def test_csv_and_plots(sweep):
    out = sweep["report"].parent
    lines = (out / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + len(sweep["runs"])
    assert lines[0].startswith("task,ablation,target_sparsity,sparsity,main_metric")
    text = sweep["report"].read_text()
    names = ["sst2_metric_vs_sparsity", "sst2_metric_vs_speedup", "mrpc_metric_vs_sparsity"]
    for name in names:
        image = imread(out / f"{name}.png")
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert f"({name}.png)" in text
    assert not (out / "mrpc_metric_vs_speedup.png").exists()
    assert "no speedup measured for task mrpc" in text


def test_pareto_front():
    points = [(1.0, 90.0), (2.0, 91.0), (3.0, 89.0), (4.0, 85.0), (4.0, 80.0), (5.0, 86.0)]
    assert pareto_front(points) == [(2.0, 91.0), (3.0, 89.0), (5.0, 86.0)]


def test_cli(sweep, tmp_path, capsys):
    out = tmp_path / "cli_report"
    assert main([str(sweep["root"]), f"out={out}"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == str(out / "report.md")
    assert printed[1].startswith("| task | ablation |")
    assert (out / "report.md").is_file() and (out / "results.csv").is_file()
    assert main([str(tmp_path / "does_not_exist")]) == 2


def test_cli_logs_the_report_into_one_wandb_run(sweep, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    assert parse_args([str(sweep["root"])]).wandb_group == sweep["root"].name
    out = tmp_path / "report"
    assert main([str(sweep["root"]), f"out={out}", "--wandb", "--wandb-group", "sweep_s95"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"W&B run: {offline_run_dir(out)}"

    logged = read_offline_run(out)
    assert (logged.group, logged.job_type) == ("sweep_s95", "report")
    assert logged.name == "report/sweep_s95"
    assert (logged.summary["runs"], logged.summary["problems"]) == (len(sweep["runs"]), 3)
    results = logged.table(logged.summary["results"])
    assert results["columns"] == list(CSV_COLUMNS)
    assert [dict(zip(CSV_COLUMNS, r, strict=True)) for r in results["data"]] == [
        r.row() for r in sweep["runs"]
    ]
    charts = {"sst2/metric_vs_sparsity", "sst2/metric_vs_speedup", "mrpc/metric_vs_sparsity"}
    assert set(logged.charts) == charts  # mrpc has no measured speedup
    speed = logged.charts["sst2/metric_vs_speedup"]
    assert speed["panelDefId"] == "wandb/scatter/v0"
    assert speed["fieldSettings"] == {"x": "speedup (×)", "y": "accuracy (%)"}
    points = logged.table(logged.summary["sst2/metric_vs_speedup_table"])["data"]
    sst2 = [r for r in sweep["runs"] if r.task == "sst2" and r.speedup is not None]
    assert sorted(p[:2] for p in points) == sorted([r.speedup, r.pruned] for r in sst2)
    points = logged.table(logged.summary["mrpc/metric_vs_sparsity_table"])["data"]
    mrpc = [r for r in sweep["runs"] if r.task == "mrpc"]
    assert sorted(p[:2] for p in points) == sorted([100 * r.sparsity, r.pruned] for r in mrpc)
    assert logged.media(logged.summary["plots/sst2_metric_vs_sparsity"]).suffix == ".png"


def test_duplicate_runs_are_flagged_not_averaged_as_seeds(tmp_path):
    """Two configs of one (task, ablation, target, seed), e.g. a learning-rate sweep: one row, the
    other listed as a duplicate, never a second 'seed'."""
    for name, seed in (("sst2_s0.6_full_seed1_aaaa0000", 1), ("sst2_s0.6_full_seed1_bbbb1111", 1)):
        (tmp_path / name).mkdir()
        results = fake_results(seed=seed)
        if name.endswith("bbbb1111"):
            results["pruned"]["accuracy"] = 10.0  # another config's number must not be averaged in
        (tmp_path / name / "results.json").write_text(json.dumps(results))
    (tmp_path / "seed2").mkdir()
    (tmp_path / "seed2" / "results.json").write_text(json.dumps(fake_results(seed=2)))
    runs, problems = collect_runs(tmp_path)
    assert sorted(r.seed for r in runs) == [1, 2]
    assert [p.status for p in problems] == ["duplicate"]
    assert problems[0].job_dir.name == "sst2_s0.6_full_seed1_bbbb1111"
    assert "duplicate of" in problems[0].reason and "aaaa0000" in problems[0].reason
    (row,) = aggregate(runs)
    assert len(row.runs) == 2 and min(r.pruned for r in runs) > 10.0


def test_a_latency_run_is_a_row_of_its_own_at_its_speed_target(tmp_path):
    """A latency-constrained run is labelled ``full latency`` at the target latency reduction
    (1 - 1/speedup), not at a parameter target: its results say ``target_sparsity: null`` (older
    ones recorded the config's unused value)."""
    params = fake_results(target=0.6)
    runs = {"params": params}
    for seed, target in ((2, 0.6), (3, None)):
        latency = {**fake_results(target=0.6, seed=seed), "constraint": "latency"}
        latency["latency"] = {"target_speedup": 2.0, "table_speedup": 2.02, "table_device": "cpu"}
        latency["target_sparsity"] = target
        runs[f"latency{seed}"] = latency
    for name, data in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(data))
    runs, problems = collect_runs(tmp_path)
    assert not problems
    assert sorted((r.ablation, r.target_sparsity) for r in runs) == [
        ("full", 0.6),
        ("full latency", 0.5),
        ("full latency", 0.5),
    ]


@pytest.mark.parametrize("kind", ["empty", "foreign"])
def test_cli_on_a_folder_without_runs_says_so_and_writes_nothing(tmp_path, capsys, kind):
    """It used to write ``report/`` (an empty report) into whatever folder it was given."""
    folder = tmp_path / kind
    folder.mkdir()
    if kind == "foreign":  # e.g. a source tree or a data folder
        (folder / "README.md").write_text("# notes\n")
        (folder / "data").mkdir()
        (folder / "data" / "stats.json").write_text('{"n": 3}')
    before = sorted(folder.rglob("*"))
    assert main([str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no runs found under {folder}" in err
    assert sorted(folder.rglob("*")) == before


def test_cli_on_a_read_only_sweep_suggests_out(tmp_path, capsys):
    """The default report folder lies inside the sweep: on read-only storage, one line that names
    it and suggests ``out=<dir>`` instead of a PermissionError traceback."""
    from read_only import read_only

    sweep = tmp_path / "sweep"
    (sweep / "run").mkdir(parents=True)
    (sweep / "run" / "results.json").write_text(json.dumps(fake_results()))
    with read_only(sweep):
        assert main([str(sweep)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(sweep / "report") in err and "out=<dir>" in err
    assert not (sweep / "report").exists()
    out = tmp_path / "elsewhere"
    assert main([str(sweep), f"out={out}"]) == 0 and (out / "report.md").is_file()


def test_each_pruning_method_is_a_row_of_its_own(tmp_path):
    """Runs of the baselines beside CoFi at one target are rows of their own, not CoFi's seeds."""
    for method in ("cofi", "uniform", "posttrain"):
        (tmp_path / method).mkdir()
        results = {**fake_results(target=0.6), "method": method}
        (tmp_path / method / "results.json").write_text(json.dumps(results))
    runs, problems = collect_runs(tmp_path)
    assert not problems
    assert sorted(r.ablation for r in runs) == ["full", "posttrain", "uniform"]
    assert len(aggregate(runs)) == 3


def test_the_report_run_uses_the_exports_model_artifacts(tmp_path):
    """Online, the report's W&B run uses each summarised export's model artifact (named as the
    job logged it: ``<run name>-<target>``), skipping exports never logged; offline, none."""
    import wandb

    from cofi_lightning.tools.report.wandb_report import use_exports
    from cofi_lightning.training.tracking import artifact_name

    runs = []
    for name, target in (("sst2_s0.6_full_seed57_aaaa0000", 0.6), ("sst2_s0.9_x_seed1_b", 0.9)):
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / "config.yaml").write_text(f"run_name: {name}\npruning:\n  constraint: params\n")
        runs.append(
            Run(
                task="sst2",
                ablation="full",
                target_sparsity=target,
                sparsity=target,
                main_metric="accuracy",
                pruned=80.0,
                run_dir=run_dir,
            )  # fmt: skip
        )
    logged = {f"{artifact_name('sst2_s0.6_full_seed57_aaaa0000', 's0.6')}:s0.6"}

    class ReportRun:
        def __init__(self, offline: bool) -> None:
            self.offline, self.used = offline, []

        def use_artifact(self, ref, type=None):
            assert type == "model"
            if ref not in logged:
                raise wandb.errors.CommError(f"artifact {ref} not found")
            self.used.append(ref)

    online = ReportRun(offline=False)
    assert use_exports(online, runs) == online.used == sorted(logged)
    offline = ReportRun(offline=True)
    assert use_exports(offline, runs) == offline.used == []


def test_each_warm_start_is_a_row_of_its_own(tmp_path):
    """Warm-started CoFi and uniform runs (read from each run's config.yaml) are not seeds of the
    cold ones; post-training pruning always starts from the teacher: the option changes nothing."""
    starts = {
        "cold": (None, {}),
        "stinit": (None, {"student_init": "teacher"}),
        "warm": (None, {"student_init": "teacher", "mask_init": "posttrain"}),
        "uniform": ("uniform", {}),
        "uniform_stinit": ("uniform", {"student_init": "teacher", "mask_init": "posttrain"}),
        "posttrain": ("posttrain", {"student_init": "teacher"}),
    }
    for name, (method, pruning) in starts.items():
        (tmp_path / name).mkdir()
        results = {**fake_results(target=0.6), "method": method}
        (tmp_path / name / "results.json").write_text(json.dumps(results))
        config = {"pruning": {"student_init": "pretrained", "mask_init": "default", **pruning}}
        (tmp_path / name / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    runs, problems = collect_runs(tmp_path)
    assert not problems
    assert sorted(r.ablation for r in runs) == [
        "full",
        "full+teacher_init",
        "full+teacher_init+posttrain_masks",
        "posttrain",
        "uniform",
        "uniform+teacher_init",
    ]
