"""The Optuna sweeper preset (``conf/hydra/sweeper/optuna_cofi.yaml``): it composes; a study goes on
after a failed trial, which it records with its error, and fails when every trial failed; a
two-trial study on the tiny demo (slow) optimises what ``train.py``'s ``main`` returns, the exported
model's main metric."""

from __future__ import annotations

import json

import pytest
import yaml

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs `pip install -e .[optuna]`")


def _number(value):
    """Override text (``1e-05``, a string to YAML 1.1) and YAML floats (``1.0e-05``) -> float."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def test_preset_composes(compose_train):
    sweeper = compose_train(["hydra/sweeper=optuna_cofi"], hydra_cfg=True).hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.direction == "maximize" and sweeper.n_jobs == 1
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.sampler.seed is not None
    assert set(sweeper.params) == {"pruning.reg_lr", "distill.alpha_layer", "pruning.finetune.lr"}


def test_a_job_without_a_number_is_a_failed_trial_too():
    """Optuna fails a trial whose job returned None (no export) or NaN (a diverged run), as one
    that raised; each is written down with why."""
    from hydra.core.utils import JobReturn, JobStatus

    from hydra_plugins.cofi_optuna_sweeper import _RecordingLauncher

    def job(status, value):
        ret = JobReturn(status=status)
        ret.return_value = value
        return ret

    returns = [
        job(JobStatus.COMPLETED, 81.5),
        job(JobStatus.COMPLETED, None),
        job(JobStatus.COMPLETED, float("nan")),
        job(JobStatus.FAILED, RuntimeError("CUDA out of memory")),
    ]

    class Launcher:
        def launch(self, job_overrides, initial_job_idx):
            return returns

    recorder = _RecordingLauncher(Launcher())
    recorder.launch([[f"seed={i}"] for i in range(4)], initial_job_idx=10)
    assert recorder.outcomes[0] is None
    assert [(o.job, o.overrides, o.error) for o in recorder.outcomes[1:]] == [
        (11, ["seed=1"], "the job returned None, not a number"),
        (12, ["seed=2"], "the job returned nan, not a number"),
        (13, ["seed=3"], "RuntimeError: CUDA out of memory"),
    ]


def _trials(sweep):
    """``{job dir: sampled pruning.finetune.lr}`` of the sweep's jobs."""
    out = {}
    for job in sweep.glob("*/.hydra/overrides.yaml"):
        overrides = dict(o.split("=", 1) for o in yaml.safe_load(job.read_text()))
        out[str(job.parent.parent)] = float(overrides["pruning.finetune.lr"])
    return out


@pytest.mark.slow  # a subprocess run of train.py; CI runs the slow tests too
def test_a_failed_trial_is_recorded_and_the_study_goes_on(sweep_overrides, train_cli, tmp_path):
    """Seed 57 samples lr 2e-5, -1.0, -1.0: the second trial fails (the config check refuses a
    negative lr), and the third still runs."""
    sweep = tmp_path / "sweep"
    train_cli(
        "-m",
        "hydra/sweeper=optuna_cofi",
        *sweep_overrides,
        f"hydra.sweep.dir={sweep}",
        "hydra.sweeper.n_trials=3",
        "distill.alpha_layer=0.9",  # fixed: the finetune lr is the only sampled key
        "pruning.finetune.lr=choice(-1.0,2e-5)",
    )
    failed = yaml.safe_load((sweep / "failed_trials.yaml").read_text())
    assert [f["job"] for f in failed] == [1, 2]  # all three trials ran
    for trial in failed:
        assert "pruning.finetune.lr=-1.0" in trial["overrides"]
        assert trial["error"].startswith("ConfigError: pruning.finetune.lr")
        assert _trials(sweep)[trial["job_dir"]] == -1.0
    (good,) = [job for job, lr in _trials(sweep).items() if lr == 2e-5]
    results = json.loads((tmp_path / "sweep" / good / "results.json").read_text())
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_params"] == {"pruning.finetune.lr": 2e-5}
    assert best["best_value"] == pytest.approx(results["pruned"][results["main_metric"]])


def test_a_study_whose_trials_all_fail_exits_non_zero(sweep_overrides, train_cli, tmp_path):
    sweep = tmp_path / "sweep"
    proc = train_cli(
        "-m",
        "hydra/sweeper=optuna_cofi",
        *sweep_overrides,
        f"hydra.sweep.dir={sweep}",
        "hydra.sweeper.n_trials=2",
        "distill.alpha_layer=0.9",
        "pruning.finetune.lr=choice(-1.0,-2.0)",  # refused by the config checks at start
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-4000:]
    assert "all 2 trials failed" in out and "Traceback" not in out, out[-4000:]
    failed = yaml.safe_load((sweep / "failed_trials.yaml").read_text())
    assert [f["job"] for f in failed] == [0, 1]
    assert all(f["error"].startswith("ConfigError: pruning.finetune.lr") for f in failed)
    assert not (sweep / "optimization_results.yaml").exists()


@pytest.mark.slow
def test_two_trial_study_maximises_the_main_metric(sweep_overrides, train_cli, tmp_path):
    sweep = tmp_path / "sweep"
    # Each trial gets its own job dir (run names carry a config hash). The tiny overrides fix
    # pruning.reg_lr, which removes it from the search space.
    overrides = list(sweep_overrides)
    train_cli(
        "-m",
        "hydra/sweeper=optuna_cofi",
        *overrides,
        f"hydra.sweep.dir={sweep}",
        "hydra.sweeper.n_trials=2",
        "distill.alpha_layer=interval(0.0,0.9)",  # a continuous key: the trials' configs differ
        "pruning.finetune.lr=choice(1e-5,1e-3)",
        timeout=1200,
    )
    jobs = sorted(p.parent for p in sweep.glob("*/results.json"))
    assert len(jobs) == 2
    metric, params = {}, {}
    for job in jobs:
        results = json.loads((job / "results.json").read_text())
        metric[job] = results["pruned"][results["main_metric"]]
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        params[job] = {k: _number(v) for k, v in (o.split("=", 1) for o in overrides)}
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["name"] == "optuna"
    assert best["best_value"] == pytest.approx(max(metric.values()))
    assert set(best["best_params"]) == {"distill.alpha_layer", "pruning.finetune.lr"}
    # the best trial's value is what its own job returned
    best_params = {k: _number(v) for k, v in best["best_params"].items()}
    (best_job,) = [j for j in jobs if best_params.items() <= params[j].items()]
    assert metric[best_job] == pytest.approx(best["best_value"])
