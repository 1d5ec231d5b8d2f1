"""The GLUE LightningDataModule: tokenization (``encode_glue``) and batches. Labels pass through as
in the hub schema whatever the model is called (the original CoFi code remapped MNLI labels
depending on the model path).
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset, Value
from torch.utils.data import DataLoader

from cofi_lightning.data.base import MODEL_FEATURES, TaskDataModule


def encode_glue(
    batch: dict[str, list], tokenizer: Any, text_columns: list[str], max_length: int
) -> dict[str, list]:
    """Tokenize a batch of GLUE rows in hub schema (unpadded; longest-first truncation of pairs,
    ``max_length`` tokens with the special ones); ``labels`` is ``label`` unchanged."""
    texts = [batch[c] for c in text_columns]
    enc = tokenizer(*texts, truncation=True, max_length=max_length, return_token_type_ids=True)
    return {**{k: enc[k] for k in MODEL_FEATURES}, "labels": batch["label"]}


class GlueDataModule(TaskDataModule):
    """GLUE task data (arguments: :class:`~cofi_lightning.data.base.TaskDataModule`).

    Batches: ``input_ids``, ``attention_mask``, ``token_type_ids`` (``[B, T]`` int64) and
    ``labels`` (``[B]``; int64 class ids, float32 scores for STS-B). MNLI has two validation
    loaders (matched, then mismatched).
    """

    family = "glue"

    def __init__(self, task: str, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(task, tokenizer, **kwargs)
        self.eval_datasets: dict[str, Dataset] | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load and tokenize the splits ``stage`` needs (``fit``: train and eval; else eval)."""
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self._glue_features(
                self.task.train_split, self.limit_train_samples
            )
        if self.eval_datasets is None:
            self.eval_datasets = {
                split: self._glue_features(split, self.limit_eval_samples)
                for split in self.task.eval_splits
            }

    def _glue_features(self, split: str, limit: int | None) -> Dataset:
        label = Value("float32") if self.task.is_regression else Value("int64")
        columns = list(self.task.text_columns)
        _, features = self._features(
            split, limit, "glue", encode_glue, {"labels": label}, {}, text_columns=columns
        )
        return features

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Evaluation batches in file order: one loader, or one per split of ``eval_splits``."""
        evals = self._require(self.eval_datasets, "the evaluation splits")
        loaders = [self._loader(evals[s], False) for s in self.task.eval_splits]
        return loaders[0] if len(loaders) == 1 else loaders
