"""The whole pipeline on a tiny random BERT and 48 SST-2 sentences: stages, resume, results.json."""

from __future__ import annotations

import json
import os

import lightning as L
import pytest
from transformers import AutoModelForSequenceClassification

from cofi_lightning.config import load_config
from cofi_lightning.run.pipeline import summary_table, train

from runs import POINT_KEYS, RESULT_KEYS, Crash


class FirstStep(L.Callback):
    """Records the global step at which training (re)starts."""

    def __init__(self) -> None:
        self.start: int | None = None

    def on_train_start(self, trainer, module) -> None:
        self.start = trainer.global_step


class Batches(L.Callback):
    """Records ``(epoch, batch_idx, rows)`` of every training batch (rows: unpadded token ids)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, list[tuple[int, ...]]]] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        ids, mask = batch["input_ids"].tolist(), batch["attention_mask"].tolist()
        rows = [
            tuple(i for i, m in zip(r, k, strict=True) if m) for r, k in zip(ids, mask, strict=True)
        ]
        self.seen.append((trainer.current_epoch, batch_idx, rows))


def test_pipeline_resumes_after_crash_in_prune(compose_train, tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_train(tiny_overrides(run_dir))
    before = Batches()
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, extra_callbacks={"prune": [before, Crash(step=4)]})
    teacher_done = run_dir / "teacher" / "DONE.json"
    assert teacher_done.is_file() and not (run_dir / "prune" / "DONE.json").exists()
    assert (run_dir / "prune" / "checkpoints" / "last.ckpt").is_file()
    stamp = teacher_done.stat().st_mtime_ns

    first, after = FirstStep(), Batches()
    results = train(cfg, extra_callbacks={"prune": [first, after]})
    assert teacher_done.stat().st_mtime_ns == stamp  # the teacher stage was not re-run
    # The crash hit after step 4's batch but before its checkpoint (Lightning runs checkpointing
    # last), so prune resumes from step 3 and replays the lost 4th batch: the same epoch order
    # continues, and epoch 0 (48 examples / 8 = 6 batches) covers every example exactly once.
    assert first.start == 3
    assert [(e, i) for e, i, _ in before.seen] == [(0, i) for i in range(4)]
    assert [(e, i) for e, i, _ in after.seen[:3]] == [(0, 3), (0, 4), (0, 5)]
    assert after.seen[0][2] == before.seen[3][2]
    epoch0 = [row for _, _, rows in before.seen[:3] + after.seen[:3] for row in rows]
    assert len(epoch0) == 48 and len(set(epoch0)) == 48
    assert after.seen[3][:2] == (1, 0)
    prune_done = json.loads((run_dir / "prune" / "DONE.json").read_text())
    assert prune_done["seconds"] > prune_done["attempt_seconds"]  # the crashed attempt counts

    # results.json keeps its layout: a single target's keys at the top, and operating_points
    assert set(results) == {*RESULT_KEYS, *POINT_KEYS, "operating_points"}
    (point,) = results["operating_points"]
    assert point == {k: results[k] for k in POINT_KEYS}
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    # the export's record is the point of results.json (built once), with its plot and times
    export_done = json.loads((run_dir / "export" / "DONE.json").read_text())
    assert set(export_done) == {*POINT_KEYS, "structure_plot", "seconds", "attempt_seconds"}
    assert {k: export_done[k] for k in POINT_KEYS} == point
    assert set(on_disk["params"]) == {"unpruned", "pruned"}
    assert set(on_disk["stage_seconds"]) == {"teacher", "prune", "finetune", "export"}
    assert on_disk["main_metric"] == "accuracy" and "accuracy" in on_disk["pruned"]
    assert "accuracy" in on_disk["teacher"] and on_disk["ablation"] is None
    model = AutoModelForSequenceClassification.from_pretrained(on_disk["export_dir"])
    assert model.num_encoder_params() == on_disk["params"]["pruned"]
    umask = os.umask(0)
    os.umask(umask)
    for file in (run_dir / "pruned_model").iterdir():  # a colleague can read the export
        assert file.stat().st_mode & 0o777 == 0o666 & ~umask, file
    assert on_disk["sparsity"] == pytest.approx(
        1 - on_disk["params"]["pruned"] / on_disk["params"]["unpruned"]
    )
    assert len(on_disk["structure"]["num_heads"]) == 2
    assert (run_dir / "prune" / "structure" / "structure.csv").is_file()

    # cleanup.checkpoints (default): finished stages drop their resume files, keep their outputs
    for stage in ("teacher", "prune", "finetune"):
        assert not (run_dir / stage / "checkpoints").exists()
        assert not (run_dir / stage / "best_student.pt").exists()
    assert (run_dir / "teacher" / "model" / "model.safetensors").is_file()
    assert (run_dir / "prune" / "best" / "masks.pt").is_file()

    # Every saved model names its classes: a pipeline answers "positive", not "LABEL_1".
    from transformers import AutoConfig, pipeline

    for saved in ("teacher/model", "finetune/model", "pruned_model"):
        config = AutoConfig.from_pretrained(run_dir / saved)
        assert config.id2label == {0: "negative", 1: "positive"}, saved
        assert config.label2id == {"negative": 0, "positive": 1}, saved
    classify = pipeline("text-classification", model=str(run_dir / "pruned_model"))
    assert classify("a moving, funny film")[0]["label"] in {"negative", "positive"}
    # The export explains itself: a model card with its metrics and structure image.
    from huggingface_hub import ModelCard

    card = ModelCard.load(run_dir / "pruned_model" / "README.md")
    (metric,) = card.data.eval_results
    assert metric.metric_value == round(on_disk["pruned"]["accuracy"], 4)
    assert f"{on_disk['sparsity']:.4f}" in card.content
    assert (run_dir / "pruned_model" / "structure.png").is_file()

    table = summary_table(on_disk, run_dir)  # printed at the end of the run
    assert f"pruned accuracy   {on_disk['pruned']['accuracy']:.2f}" in table
    assert f"{on_disk['params']['pruned']:,} of {on_disk['params']['unpruned']:,}" in table
    assert "not measured: python -m cofi_lightning.tools.bench run=" in table

    again = train(cfg)  # everything done: only reads the records
    assert again["stage_seconds"] == results["stage_seconds"]


def test_no_distill_ablation_skips_teacher(compose_train, tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(run_dir) + [
        "ablation=no_distill",
        "pruning.epochs=1",
        "cleanup.checkpoints=false",
    ]
    results = train(compose_train(overrides))
    assert (run_dir / "prune" / "checkpoints" / "last.ckpt").is_file()  # kept when asked
    assert results["ablation"] == "no_distill" and results["teacher"] == {}
    record = json.loads((run_dir / "teacher" / "DONE.json").read_text())
    assert record["teacher_dir"] is None


def test_demo_logs_one_offline_wandb_run_per_job(compose_train, tiny_overrides, tmp_path):
    """The demo's default logger: one offline W&B run for all stages, read back from its file:
    the sparsity series on the prune stage's step axis, results.json in the summary, the structure
    table; CSV logs beside it for the report."""
    from wandb_offline import read_offline_run

    run_dir = tmp_path / "run"
    overrides = [o for o in tiny_overrides(run_dir) if o != "logger=csv"]  # the demo's default
    overrides.append("trainer.log_every_n_steps=2")
    cfg = load_config(compose_train(overrides))
    assert set(cfg.logger) == {"wandb", "csv"}
    results = train(cfg)
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    run = read_offline_run(run_dir)
    assert run.group == "demo" and run.job_type == "cofi" and run.name == cfg.run_name
    assert {"sst2", "s0.3", "full", "seed57"} <= set(run.tags)
    assert run.config["pruning"]["target_sparsity"] == 0.3

    expected = run.rows("prune/sparsity/expected")
    assert len(expected) >= 5  # every other step of the prune stage's 12
    steps = [r["prune/step"] for r in expected]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert {r["prune/sparsity/expected"] for r in expected} != {
        expected[0]["prune/sparsity/expected"]
    }
    assert run.rows("teacher/train/loss") and run.rows("finetune/train/loss")
    assert {"name": "prune/*", "step_metric": "prune/step"} in [
        {k: m.get(k) for k in ("name", "step_metric")} for m in run.metrics
    ] or any(m.get("glob_name") == "prune/*" for m in run.metrics)

    assert run.summary["sparsity"] == pytest.approx(results["sparsity"])
    assert run.summary["pruned"] == results["pruned"]
    assert run.summary["structure"]["num_heads"] == results["structure"]["num_heads"]
    table = run.table(run.summary["export/structure"])
    assert [row[1] for row in table["data"]] == results["structure"]["num_heads"]
    # One point per evaluation: the validation after fit (of the restored best weights for the
    # teacher, of an already evaluated step for prune) adds none.
    assert len(run.rows("teacher/val/accuracy")) == 1  # 1 epoch, evaluated once
    prune_steps = [r["prune/step"] for r in run.rows("prune/val/accuracy")]
    assert len(prune_steps) == len(set(prune_steps))
    # The structure table of each prune evaluation sits at that evaluation's step.
    evals = {r["prune/step"] for r in run.rows("prune/val/accuracy")}
    tables = {r["prune/step"] for r in run.rows("prune/structure/table")}
    assert tables and tables <= evals
    assert list((run_dir / "prune" / "csv").rglob("metrics.csv"))


def test_pipeline_under_bf16_mixed_precision(compose_train, tiny_overrides, tmp_path):
    """`trainer.precision=bf16-mixed` (what trainer=gpu sets) through all four stages, under CPU
    autocast: validations, the masked prune stage and the export's evaluation."""
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), "trainer.precision=bf16-mixed", "pruning.epochs=1"]
    results = train(compose_train(overrides))
    assert 0 <= results["pruned"]["accuracy"] <= 100 and results["teacher"]["accuracy"] >= 0
    model = AutoModelForSequenceClassification.from_pretrained(results["export_dir"])
    assert model.num_encoder_params() == results["params"]["pruned"]
    prune = json.loads((run_dir / "prune" / "DONE.json").read_text())
    assert 0 < prune["best"]["step"]


def test_prune_evaluates_when_the_export_enters_the_window(compose_train, tiny_overrides, tmp_path):
    """Regular evaluations too rare to land in the window (every 100 steps of 36): each step at
    which the deterministic masks enter target ± epsilon is evaluated, and one of them selected."""
    run_dir = tmp_path / "run"
    fast = ["pruning.epochs=6", "pruning.reg_lr=2.0", "pruning.lagrangian_warmup_steps=2"]
    overrides = [*tiny_overrides(run_dir), "pruning.eval_every_steps=100", *fast]
    train(compose_train(overrides))
    meta = json.loads((run_dir / "prune" / "best" / "meta.json").read_text())
    assert meta["reached_target"] is True
    assert abs(meta["deterministic_sparsity"] - 0.3) <= 0.05  # what is exported is on target
    rows = (run_dir / "prune" / "structure" / "structure.csv").read_text().splitlines()
    assert f"{meta['step']}," in "\n".join(rows[1:])  # an evaluation ran at the entry step


def _logged(run_dir, stage: str, key: str) -> list[float]:
    import csv

    with open(run_dir / stage / "csv" / "version_0" / "metrics.csv") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def test_prune_reads_the_teacher_cache_and_matches_the_live_teacher(
    compose_train, tiny_overrides, feature_cache, tmp_path
):
    """The pipeline serves each training batch its own examples' cached teacher outputs: the
    logged distillation losses of a cached and a live run agree to fp16 round-off."""
    losses = {}
    for cache in ("true", "false"):
        run_dir = tmp_path / f"cache_{cache}"
        overrides = tiny_overrides(run_dir) + [
            "stages=[teacher,prune]",
            f"distill.teacher_cache={cache}",
            "trainer.log_every_n_steps=1",
            "pruning.epochs=1",
        ]
        cfg = compose_train(overrides)
        train(cfg)
        losses[cache] = {
            key: _logged(run_dir, "prune", key) for key in ("train/pred_loss", "train/layer_loss")
        }
    assert list(feature_cache.glob("teacher_outputs/*/meta.json")), "no teacher cache built"
    for key in ("train/pred_loss", "train/layer_loss"):
        cached, live = losses["true"][key], losses["false"][key]
        assert len(cached) == len(live) >= 3
        assert cached[:3] == pytest.approx(live[:3], rel=1e-2, abs=1e-4), key


class _FakeHub:
    """Stands in for ``huggingface_hub.HfApi`` (no network in tests)."""

    calls: list = []
    fail = False

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        if self.fail:
            raise OSError("no route to host")
        self.calls.append(("upload_folder", kwargs))
        return type("Info", (), {"commit_url": "https://hf.co/me/m/commit/1"})()


def test_push_to_hub_after_the_export_and_a_failure_loses_nothing(
    compose_train, tiny_overrides, tmp_path, monkeypatch
):
    from cofi_lightning.run.hub import HubPushError

    monkeypatch.setattr("cofi_lightning.run.hub.HfApi", _FakeHub)
    _FakeHub.calls, _FakeHub.fail = [], True
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(run_dir) + ["export.push_to_hub=me/cofi-sst2", "pruning.epochs=1"]
    with pytest.raises(HubPushError, match="export is safe in .*pruned_model"):
        train(compose_train(overrides))
    results = json.loads((run_dir / "results.json").read_text())  # written before the upload
    assert (run_dir / "pruned_model" / "model.safetensors").is_file()
    _FakeHub.fail = False
    again = train(compose_train(overrides))  # the retry: stages done, upload only
    assert again["stage_seconds"] == results["stage_seconds"]
    (create, _, private), (upload, kwargs) = _FakeHub.calls[-2:]
    assert (create, private["private"]) == ("create_repo", True)
    assert kwargs["repo_id"] == "me/cofi-sst2"
    assert kwargs["folder_path"] == str(run_dir / "pruned_model")
    assert kwargs["commit_message"].startswith("CoFi sst2 at sparsity ")


def test_regression_task_through_every_stage(compose_train, tiny_overrides, tmp_path):
    """STS-B (one output, MSE; Spearman selects): teacher, cached distillation, pruning, export."""
    run_dir = tmp_path / "run"
    results = train(compose_train([*tiny_overrides(run_dir), "task=stsb", "pruning.epochs=1"]))
    assert results["main_metric"] == "spearman"
    for stage in ("teacher", "pruned"):
        assert set(results[stage]) >= {"pearson", "spearman"}
        assert all(-100 <= v <= 100 for v in results[stage].values())
    model = AutoModelForSequenceClassification.from_pretrained(results["export_dir"])
    assert model.config.num_labels == 1  # a regression head survives the export
    assert model.num_encoder_params() == results["params"]["pruned"]
