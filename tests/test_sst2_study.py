"""The SST-2 study as Hydra jobs: its experiments name each job's directory as the committed
records are named, and ``scripts/sst2_study.py`` prints the study's tables from those records."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import cofi_lightning.config  # noqa: F401  (the schema and the cofi.* resolvers)

REPO_ROOT = Path(__file__).resolve().parents[1]
STUDY = REPO_ROOT / "docs" / "results" / "sst2_study"


def _script():
    spec = importlib.util.spec_from_file_location("sst2_study", REPO_ROOT / "scripts/sst2_study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("overrides", "job"),
    [
        (["experiment=study_sst2_cpu"], "full_b1000_s0.6_seed57"),
        (
            ["experiment=study_sst2_cpu_b3000", "pruning.target_sparsity=0.9"],
            "full_b3000_s0.9_seed57",
        ),
        (
            [
                "experiment=study_sst2_cpu",
                "ablation=no_distill",
                "seed=58",
                "pruning.target_sparsity=0.9",
            ],
            "no_distill_b1000_s0.9_seed58",
        ),
        (
            ["experiment=study_sst2_cpu_b330", "pruning.target_sparsity=0.9"],
            "full_b330_s0.9_seed57",
        ),
    ],
)
def test_a_study_job_runs_in_its_named_directory(overrides, job):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert cfg.run_name == job and (STUDY / "runs" / job).is_dir()
    assert cfg.hydra.run.dir == f"runs/sst2_study/{job}"
    assert f"{cfg.hydra.sweep.dir}/{cfg.hydra.sweep.subdir}" == f"runs/sst2_study/{job}"


def test_a_budget_scales_the_study_schedule():
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        base = compose("train", overrides=["experiment=study_sst2_cpu"])
        scaled = compose("train", overrides=["experiment=study_sst2_cpu_b3000"])
    p, q = base.pruning, scaled.pruning
    assert (q.max_steps, q.pre_pruning_steps, q.lagrangian_warmup_steps) == (3000, 150, 1000)
    assert (q.finetune.max_steps, q.eval_every_steps, q.finetune.eval_every_steps) == (
        1000,
        150,
        150,
    )
    assert q.reg_lr == p.reg_lr and scaled.model == base.model  # the rest is the study's


def test_compare_prints_the_table_of_the_study_readme(capsys):
    _script().main(["compare", "--budget", "1000"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| sst2 |")]
    readme = (STUDY / "README.md").read_text()
    assert len(rows) >= 19 and all(row in readme for row in rows)


def test_compare_against_the_baseline_from_the_records(capsys):
    """``--against uniform``: each variant's mean minus the baseline's, and the mean share of each
    run's own teacher, as the 90% records say."""
    import json
    import statistics

    _script().main(["compare", "--budget", "1000", "--against", "uniform"])
    rows = {
        tuple(c.strip() for c in line.strip("|").split("|")[1:3]): line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| sst2 |")
    }

    def runs(variant):
        paths = sorted((STUDY / "runs").glob(f"{variant}_b1000_s0.9_seed*/results.json"))
        return [json.loads(p.read_text()) for p in paths]

    full, uniform = runs("full"), runs("uniform")
    mean = lambda rs: statistics.mean(r["pruned"]["accuracy"] for r in rs)  # noqa: E731
    cells = [c.strip() for c in rows[("full", "0.9")].strip("|").split("|")]
    assert cells[6].startswith(f"{mean(full) - mean(uniform):+.2f} ± ")
    kept = statistics.mean(r["pruned"]["accuracy"] / r["teacher"]["accuracy"] for r in full)
    assert cells[7] == f"{100 * kept:.1f}%"
    assert [c.strip() for c in rows[("uniform", "0.9")].strip("|").split("|")][6] == "–"


def test_posttrain_prints_one_row_per_committed_job_from_its_records(capsys):
    import json

    records = REPO_ROOT / "docs" / "results" / "posttrain" / "runs"
    _script().main(["--records", str(records), "posttrain"])
    rows = [line for line in capsys.readouterr().out.splitlines() if "| posttrain_" in line]
    jobs = sorted(records.glob("posttrain_b0_*/results.json"))
    jobs += sorted(records.glob("posttrain_ft*/results.json"))
    assert len(rows) == len(jobs) >= 6
    for row, path in zip(rows, jobs, strict=True):
        results = json.loads(path.read_text())
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == path.parent.name
        steps = 0 if "_b0_" in path.parent.name else int(path.parent.name.split("_")[1][2:])
        assert cells[2] == str(steps)
        assert cells[6] == f"{results['pruned']['accuracy']:.2f}"


def test_collect_copies_the_records_of_the_finished_jobs_it_is_given(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    for name in ("warm_b1000_s0.9_seed57", "full_b1000_s0.9_seed57", "warm_b1000_s0.6_seed57"):
        job = runs / name
        (job / "prune" / "checkpoints").mkdir(parents=True)
        (job / "prune" / "checkpoints" / "last.ckpt").write_text("weights")
        (job / "prune" / "DONE.json").write_text("{}")
        if name != "warm_b1000_s0.6_seed57":  # the last one is unfinished
            (job / "results.json").write_text("{}")
    _script().main(["--records", str(records), "collect", "--runs", str(runs), "--only", "warm_*"])
    assert sorted(p.name for p in records.iterdir()) == ["warm_b1000_s0.9_seed57"]
    copied = sorted(str(p.relative_to(records)) for p in records.rglob("*") if p.is_file())
    job = "warm_b1000_s0.9_seed57"
    assert copied == [f"{job}/prune/DONE.json", f"{job}/results.json"]
