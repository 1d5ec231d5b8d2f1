"""One offline W&B run per job: stage loggers, results, structure media, rank zero only.

Every run is read back from its ``.wandb`` log (``wandb_offline.read_offline_run``), so the
tests check what W&B would sync, not what the client was asked to log.
"""

from __future__ import annotations

import csv

import lightning as L
import matplotlib.pyplot as plt
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.utilities import rank_zero_only
from matplotlib.image import imread
from torch.utils.data import DataLoader

from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.modeling import CoFiBertConfig
from cofi_lightning.modeling.structure import Structure
from cofi_lightning.training.callbacks import StructureLogger, heatmap
from cofi_lightning.training.tracking import STRUCTURE_COLUMNS, WandbRun

from tiny_bert import tiny_bert_kwargs
from wandb_offline import read_offline_run

CONFIG = {"task": {"name": "sst2"}, "pruning": {"target_sparsity": 0.6}, "seed": 3}


@pytest.fixture(autouse=True)
def offline_wandb(monkeypatch, tmp_path_factory):
    """Offline, quiet W&B whose settings, cache and staging stay in a temporary directory."""
    home = tmp_path_factory.mktemp("wandb_home")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(home / var.lower()))


def job_run(run_dir, **kwargs) -> WandbRun:
    base = dict(group="sst2_s60", tags=("sst2", "s0.6"), run_dir=run_dir, name="sst2_s60/seed3")
    return WandbRun(**{**base, "run_id": "job42", "config": CONFIG, **kwargs})


def trainer(logger, max_steps: int = 4, callbacks=()) -> L.Trainer:
    """CPU, no checkpoints or bars; logs every step and validates every 2 steps."""
    return L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        val_check_interval=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        logger=logger,
        callbacks=list(callbacks),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


class Logging(BoringModel):
    """BoringModel with a training loss and a validation metric (the global step, to check x)."""

    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("train/loss", out["loss"])
        return out

    def on_validation_epoch_end(self) -> None:
        self.log("val/accuracy", float(self.global_step))


def test_two_stages_share_one_run(tmp_path):
    run = job_run(tmp_path)
    for stage in ("teacher", "prune"):
        trainer(run.stage_logger(stage), max_steps=4 if stage == "teacher" else 2).fit(Logging())
    run.finish()

    assert len(list(tmp_path.glob("wandb/offline-run-*"))) == 1
    logged = read_offline_run(tmp_path)
    assert (logged.name, logged.group, logged.job_type) == ("sst2_s60/seed3", "sst2_s60", "cofi")
    assert logged.tags == ["sst2", "s0.6"] and logged.run_id == "job42"
    assert logged.config == CONFIG
    for stage in ("teacher", "prune"):
        assert {"name": f"{stage}/step", "step_metric": ""} in logged.metrics
        assert {"glob_name": f"{stage}/*", "step_metric": f"{stage}/step"} in logged.metrics
    keys = {k for row in logged.history for k in row if not k.startswith("_")}
    assert keys == {
        f"{s}/{k}"
        for s in ("teacher", "prune")
        for k in ("train/loss", "val/accuracy", "epoch", "step")
    }
    # Each row belongs to one stage and carries that stage's step; steps restart per stage.
    for row in logged.history:
        assert len({k.split("/")[0] for k in row if not k.startswith("_")}) == 1
    assert [r["teacher/step"] for r in logged.rows("teacher/train/loss")] == [0, 1, 2, 3]
    assert [r["prune/step"] for r in logged.rows("prune/train/loss")] == [0, 1]
    val = [
        (r["teacher/step"], r["teacher/val/accuracy"]) for r in logged.rows("teacher/val/accuracy")
    ]
    assert val == [(1, 2.0), (3, 4.0)]  # Lightning's step: optimizer steps before the last one
    assert logged.summary["teacher/val/accuracy"] == 4.0 and logged.summary["prune/step"] == 1


def test_log_results_summary_and_structure_table(tmp_path):
    results = {
        "task": "sst2",
        "sparsity": 0.61,
        "params": {"unpruned": 1000, "pruned": 390},
        "pruned": {"accuracy": 81.5},
        "ablation": None,
        "structure": {"hidden_size": 24, "num_heads": [3, 0], "intermediate_sizes": [40, 7]},
    }
    png = tmp_path / "final.png"
    full = Structure(hidden_size=32, num_heads=(4, 4), intermediate_sizes=(48, 48))
    fig = heatmap(Structure.from_dict(results["structure"]), full, "exported")
    fig.savefig(png)
    plt.close(fig)
    run = job_run(tmp_path / "run")
    run.stage_logger("export").log_metrics({"export/sparsity": 0.61, "accuracy": 81.5}, step=0)
    run.log_results(results, heatmap=png)
    run.finish()

    logged = read_offline_run(tmp_path / "run")
    assert {k: logged.summary[k] for k in results} == results
    assert logged.rows("export/sparsity")[0]["export/step"] == 0  # prefixed once, not twice
    assert logged.summary["export/accuracy"] == 81.5
    table = logged.table(logged.summary["export/structure"])
    assert table["columns"] == list(STRUCTURE_COLUMNS)
    assert table["data"] == [[0, 3, 40, 24], [1, 0, 7, 24]]
    image = logged.media(logged.summary["export/structure_heatmap"])
    assert image.suffix == ".png" and imread(image).shape == imread(png).shape


def test_nothing_is_logged_off_rank_zero(tmp_path, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    run = job_run(tmp_path)
    logger = run.stage_logger("prune")
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.log_table("structure/table", columns=["a"], data=[[1]], step=0)
    run.log_results({"sparsity": 0.5})
    run.finish()
    assert not (tmp_path / "wandb").exists()


class PruningSystem(L.LightningModule):
    """The parts of ``CoFiSystem`` that ``StructureLogger`` reads, with fixed deterministic masks:
    layer 0 keeps 2 of 4 heads and 30 of 48 FFN dims, layer 1 all heads and no FFN; 24 of 32
    hidden dims are kept."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.masks = CoFiMasks(CoFiBertConfig(**tiny_bert_kwargs()))
        keep = {  # gate -> its kept entries (log-alpha +10, the others -10)
            "head": torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]),
            "intermediate": torch.stack([torch.arange(48) < 30, torch.zeros(48, dtype=bool)]),
            "hidden": (torch.arange(32) < 24)[None],
        }
        with torch.no_grad():
            for unit, kept in keep.items():
                self.masks.gates[unit].log_alpha.copy_(torch.where(kept.bool(), 10.0, -10.0))
        self.last_val_metrics: dict[str, float] = {}

    def eval_masks(self):
        return self.masks.deterministic()

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def on_validation_epoch_end(self) -> None:
        self.last_val_metrics = {"val/accuracy": float(self.global_step), "sparsity/x": 0.3}
        self.log_dict(self.last_val_metrics)

    def configure_optimizers(self):
        return torch.optim.SGD(self.layer.parameters(), lr=0.01)

    def train_dataloader(self):
        return DataLoader(torch.randn(8, 4), batch_size=2)

    def val_dataloader(self):
        return DataLoader(torch.randn(2, 4), batch_size=2)


def test_structure_callback_logs_at_the_validation_step(tmp_path):
    run = job_run(tmp_path / "run")
    structure = StructureLogger(tmp_path / "structure", target=0.6)
    trainer(run.stage_logger("prune"), max_steps=4, callbacks=[structure]).fit(PruningSystem())
    run.finish()

    logged = read_offline_run(tmp_path / "run")
    val_steps = [r["prune/step"] for r in logged.rows("prune/val/accuracy")]
    assert val_steps == [1, 3]
    tables = logged.rows("prune/structure/table")
    images = logged.rows("prune/structure/heatmap")
    assert [r["prune/step"] for r in tables] == val_steps
    assert [r["prune/step"] for r in images] == val_steps
    for row, global_step in zip(tables, (2, 4), strict=True):
        table = logged.table(row["prune/structure/table"])
        assert table["columns"] == [
            "step",
            "layer",
            "heads",
            "attention",
            "ffn_dims",
            "ffn",
            "hidden",
        ]
        assert table["data"] == [
            [global_step, 0, 2, True, 30, True, 24],
            [global_step, 1, 4, True, 0, False, 24],
        ]
    with (tmp_path / "structure" / "structure.csv").open() as f:
        on_disk = list(csv.DictReader(f))
    assert [(r["step"], r["heads"], r["ffn_dims"]) for r in on_disk] == [
        ("2", "2", "30"),
        ("2", "4", "0"),
        ("4", "2", "30"),
        ("4", "4", "0"),
    ]
    pngs = sorted((tmp_path / "structure").glob("structure_step*.png"))
    assert [p.name for p in pngs] == ["structure_step0000002.png", "structure_step0000004.png"]
    assert imread(pngs[0]).shape[1] >= 600  # 5 inches at dpi >= 120
