"""The DataModules in a Lightning Trainer: hooks, MNLI's two loaders, SQuAD metrics at epoch end."""

from __future__ import annotations

import lightning as L
import torch
from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

from cofi_lightning.data import GlueDataModule, SquadDataModule
from cofi_lightning.training.metrics import glue_metrics, squad_metrics


def _config(tokenizer, **kw) -> BertConfig:
    """A 1-layer BERT with hidden size 16 over the real vocabulary."""
    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=512,
        **kw,
    )


class _Glue(L.LightningModule):
    def __init__(self, model, task: str, eval_names: list[str]):
        super().__init__()
        self.model, self.task, self.eval_names = model, task, eval_names
        self.outputs: dict[int, list] = {}
        self.logged: dict[str, float] = {}

    def training_step(self, batch, batch_idx):
        return self.model(**batch).loss

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        logits = self.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        self.outputs.setdefault(dataloader_idx, []).append((logits, batch["labels"]))

    def on_validation_epoch_end(self):
        for i, out in sorted(self.outputs.items()):
            logits, labels = torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])
            for name, value in glue_metrics(self.task, logits, labels).items():
                self.logged[f"val/{self.eval_names[i]}/{name}"] = value
        self.outputs.clear()

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


class _Squad(L.LightningModule):
    def __init__(self, model):
        super().__init__()
        self.model, self.outputs, self.logged = model, [], {}

    def training_step(self, batch, batch_idx):
        return self.model(**batch).loss

    def validation_step(self, batch, batch_idx):
        index = batch.pop("feature_index")
        out = self.model(**batch)
        self.outputs.append((out.start_logits, out.end_logits, index))

    def on_validation_epoch_end(self):
        dm = self.trainer.datamodule
        starts, ends, index = zip(*self.outputs, strict=True)
        predictions = dm.postprocess(list(starts), list(ends), list(index))
        self.logged = squad_metrics(predictions, dm.references())
        self.logged["answered"] = len(predictions)
        self.outputs.clear()

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def _trainer() -> L.Trainer:
    return L.Trainer(
        max_steps=2,
        limit_val_batches=1.0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )


def test_mnli_style_two_loaders_in_trainer(tokenizer, write_split, tmp_path) -> None:
    for split, n in (("train", 8), ("validation_matched", 5), ("validation_mismatched", 6)):
        write_split(
            "mnli",
            split,
            {
                "premise": [f"a premise number {i}" for i in range(n)],
                "hypothesis": [f"hypothesis {i}" for i in range(n)],
                "label": [i % 3 for i in range(n)],
                "idx": list(range(n)),
            },
        )
    dm = GlueDataModule(
        "mnli",
        tokenizer,
        data_dir=write_split.mirror,
        batch_size=4,
        check_num_rows=False,
        cache_dir=tmp_path,
    )
    system = _Glue(
        BertForSequenceClassification(_config(tokenizer, num_labels=3)), "mnli", dm.task.eval_names
    )
    _trainer().fit(system, datamodule=dm)
    assert set(system.logged) == {"val/mnli_m/accuracy", "val/mnli_mm/accuracy"}


def test_squad_metrics_at_validation_end(tokenizer, data_dir, tmp_path) -> None:
    dm = SquadDataModule(
        tokenizer=tokenizer,
        data_dir=data_dir,
        batch_size=4,
        eval_batch_size=8,
        limit_train_samples=8,
        limit_eval_samples=12,
        cache_dir=tmp_path,
    )
    system = _Squad(BertForQuestionAnswering(_config(tokenizer)))
    _trainer().fit(system, datamodule=dm)
    assert system.logged["answered"] == 12
    assert 0.0 <= system.logged["f1"] <= 100.0


def test_validate_needs_no_training_split(tokenizer, data_dir, tmp_path, monkeypatch) -> None:
    from cofi_lightning.data import sources

    def offline(*args):
        raise ConnectionError("offline")

    monkeypatch.setattr(sources, "load_from_hub", offline)  # QNLI train exists nowhere
    dm = GlueDataModule(
        "qnli", tokenizer, data_dir=data_dir, limit_eval_samples=16, cache_dir=tmp_path
    )
    system = _Glue(
        BertForSequenceClassification(_config(tokenizer, num_labels=2)), "qnli", ["qnli"]
    )
    _trainer().validate(system, datamodule=dm, verbose=False)
    assert set(system.logged) == {"val/qnli/accuracy"}
    assert dm.train_dataset is None
