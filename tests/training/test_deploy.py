"""Deployment of a run's export (``export.onnx``, ``export.quantize``, ``python -m
cofi_lightning.deploy``): ONNX Runtime fp32 and INT8 re-evaluated, the three runtimes in
results.json and the card, the export as a W&B model artifact, and a missing ``deploy`` extra
refused at the door.

One tiny run (offline W&B, as the demo) serves the tests that read a deployed run."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys

import pytest

from cofi_lightning.config import ConfigError, load_config
from cofi_lightning.run.pipeline import train
from cofi_lightning.run.rundir import recorded_run_id

from runs import tiny_run_overrides

pytest.importorskip("onnxruntime", reason="the deploy extra is not installed")

RUNTIMES = ["torch-fp32", "ort-fp32", "ort-int8"]
DEPLOY = ["export.onnx=true", "export.quantize=int8"]


def _compose(overrides):
    from conftest import CONF_DIR
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.fixture(scope="module")
def deployed(tiny_bert_dir, feature_cache, tmp_path_factory):
    """``(run_dir, results, logged)`` of a tiny run with ONNX and INT8 and the demo's offline W&B
    logger; ``logged``: each ``log_artifact`` call of the W&B run (artifact, aliases)."""
    run_dir = tmp_path_factory.mktemp("deployed") / "run"
    overrides = tiny_run_overrides(tiny_bert_dir, run_dir, feature_cache)
    overrides = [o for o in overrides if o != "logger=csv"]  # the demo's W&B + CSV
    # 100 validation examples: one changed prediction moves the metric by 1 point; no teacher
    # (the ablation without distillation): the export is what is tested, in seconds
    overrides += [*DEPLOY, "task.datamodule.limit_eval_samples=100", "ablation=no_distill"]
    with _model_artifacts() as logged:
        results = train(_compose(overrides))
    return run_dir, results, logged


@contextlib.contextmanager
def _model_artifacts():
    """Yields a list of each model artifact W&B runs log meanwhile, as (artifact, aliases)."""
    import wandb

    logged = []
    real = wandb.Run.log_artifact

    def spy(self, artifact, *args, **kwargs):
        if artifact.type == "model":  # not the tables W&B stores as artifacts of their own
            logged.append((artifact, kwargs.get("aliases")))
        return real(self, artifact, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wandb.Run, "log_artifact", spy)
        yield logged


def test_int8_and_fp32_onnx_are_reevaluated_and_recorded(deployed):
    run_dir, results, _ = deployed
    rows = {r["runtime"]: r for r in results["runtimes"]}
    assert list(rows) == RUNTIMES
    export = run_dir / "pruned_model"
    metric = results["main_metric"]
    assert rows["torch-fp32"]["metrics"] == results["pruned"]
    assert rows["ort-fp32"]["metrics"][metric] == pytest.approx(results["pruned"][metric])
    assert abs(rows["ort-int8"]["metrics"][metric] - rows["ort-fp32"]["metrics"][metric]) <= 2.0
    for name, row in rows.items():
        assert (export / row["file"]).stat().st_size / 1e6 == pytest.approx(row["size_mb"]), name
        assert row["latency_ms"] > 0 and (row["batch"], row["seq"]) == (1, 128)
        assert row["threads"] >= 1
    assert rows["ort-int8"]["size_mb"] < rows["ort-fp32"]["size_mb"]
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["operating_points"][0]["runtimes"] == results["runtimes"]
    card = (export / "README.md").read_text()
    assert "## Runtimes" in card
    for name, row in rows.items():
        assert f"| {name} | `{row['file']}` | {row['metrics'][metric]:.2f} |" in card


def test_the_export_is_a_wandb_model_artifact(deployed):
    run_dir, _, logged = deployed
    ((artifact, aliases),) = logged
    from omegaconf import OmegaConf

    run_name = OmegaConf.load(run_dir / "config.yaml").run_name
    name = artifact.name
    assert artifact.type == "model"
    assert run_name.startswith("sst2_s0.3_no_distill_seed57_") and name == f"{run_name}-s0.3"
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert aliases == ["s0.3", "seed57", "latest"]
    files = set(artifact.manifest.entries)
    assert {
        "model.safetensors",
        "config.json",
        "README.md",
        "model.onnx",
        "model.int8.onnx",
    } <= files
    (offline,) = (run_dir / "wandb").glob("offline-run-*")  # logged into the job's one run,
    assert offline.name.endswith(f"-{recorded_run_id(run_dir)}")  # the id a later command resumes


def test_deploy_command_deploys_a_finished_run(deployed, tmp_path):
    """A run exported without ``export.onnx``, deployed afterwards by the command (fp32 only)."""
    from cofi_lightning.deploy.__main__ import main
    from cofi_lightning.run.model_card import refresh_card

    src, _, _ = deployed
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir, ignore=shutil.ignore_patterns("wandb"))
    export = run_dir / "pruned_model"
    for name in ("model.onnx", "model.int8.onnx"):
        (export / name).unlink()
    for path in (run_dir / "results.json", run_dir / "export" / "DONE.json"):
        record = json.loads(path.read_text())
        for point in [record, *record.get("operating_points", [])]:
            point["runtimes"] = []
        path.write_text(json.dumps(record))
    refresh_card(run_dir)
    assert "## Runtimes" not in (export / "README.md").read_text()

    with _model_artifacts() as logged:
        main([f"run={run_dir}", "quantize=none"])
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["runtime"] for r in results["runtimes"]] == RUNTIMES[:2]
    assert (export / "model.onnx").is_file() and not (export / "model.int8.onnx").exists()
    done = json.loads((run_dir / "export" / "DONE.json").read_text())
    assert done["runtimes"] == results["runtimes"]
    assert "| ort-fp32 | `model.onnx` |" in (export / "README.md").read_text()
    # the job's W&B run (resumed by its id) gets the export again, with its ONNX file
    ((artifact, aliases),) = logged
    assert aliases == ["s0.3", "seed57", "latest"]
    assert {"model.safetensors", "README.md", "model.onnx"} <= set(artifact.manifest.entries)
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert offline.name.endswith(f"-{recorded_run_id(run_dir)}")


def test_a_missing_deploy_extra_stops_at_the_door(compose_train, tiny_overrides, tmp_path, capsys):
    from cofi_lightning.deploy.__main__ import main

    run_dir = tmp_path / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "onnxruntime", None)
        with pytest.raises(ConfigError) as err:
            train(compose_train([*tiny_overrides(run_dir), "export.onnx=true"]))
        message = str(err.value)
        assert "\n" not in message and "export.onnx=true" in message
        assert 'pip install -e ".[deploy]"' in message
        assert not run_dir.exists()  # before any stage, before the run dir is claimed
        with pytest.raises(SystemExit) as exit_:
            main([f"run={tmp_path}"])
        assert 'pip install -e ".[deploy]"' in str(exit_.value)


def test_quantize_needs_the_onnx_export(compose_train, tiny_overrides, tmp_path):
    with pytest.raises(ConfigError, match=r"export\.quantize.*export\.onnx=true"):
        load_config(compose_train([*tiny_overrides(tmp_path), "export.quantize=int8"]))
    with pytest.raises(ConfigError, match=r"export\.quantize"):
        load_config(compose_train([*tiny_overrides(tmp_path), *DEPLOY[:1], "export.quantize=int4"]))
