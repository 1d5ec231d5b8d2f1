"""The SQuAD v1.1 LightningDataModule: windowed features, and a validation pass's start/end logits
back to ``{id: answer text}`` (``postprocess``) beside the gold answers (``references``). The
window/offset arithmetic is in ``squad_features.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset, List, Value
from torch.utils.data import DataLoader

from cofi_lightning.data.base import MODEL_FEATURES, TaskDataModule
from cofi_lightning.data.squad_features import (
    best_spans,
    prepare_eval_features,
    prepare_train_features,
)

Logits = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]


class SquadDataModule(TaskDataModule):
    """SQuAD v1.1 data in windows of ``max_seq_length`` tokens with a ``doc_stride`` overlap.

    Training batches: ``input_ids``, ``attention_mask``, ``token_type_ids`` (``[B, T]``) and
    ``start_positions`` / ``end_positions`` (``[B]``; ``[CLS]`` when the answer is outside the
    window). Validation batches: the three model inputs and ``feature_index`` (``[B]``), the row of
    each window in ``eval_features``. Collect the model's start/end logits with those indices and
    call ``postprocess`` to get ``{id: text}``; ``references()`` gives ``{id: [gold texts]}``.
    ``limit_eval_samples`` counts questions, not windows.

    Args:
        doc_stride: Overlap in tokens between consecutive windows of a context (128 in the paper).
        n_best: Start/end candidates per window in post-processing (20).
        max_answer_length: Longest answer in tokens (30).
        **kwargs: See :class:`~cofi_lightning.data.base.TaskDataModule`.
    """

    family = "squad"

    def __init__(
        self,
        task: str = "squad",
        tokenizer: Any = None,
        doc_stride: int = 128,
        n_best: int = 20,
        max_answer_length: int = 30,
        **kwargs: Any,
    ) -> None:
        if tokenizer is None:
            raise ValueError("SquadDataModule needs the model's fast tokenizer")
        super().__init__(task, tokenizer, **kwargs)
        if not 0 <= doc_stride < self.max_seq_length // 2:
            raise ValueError(f"doc_stride={doc_stride} must be in [0, max_seq_length / 2)")
        self.doc_stride = doc_stride
        self.n_best = n_best
        self.max_answer_length = max_answer_length
        self.eval_examples: Dataset | None = None
        self.eval_features: Dataset | None = None
        self._lookup: tuple | None = None  # post-processing arrays, built on first use

    def setup(self, stage: str | None = None) -> None:
        """Load and tokenize the splits ``stage`` needs (``fit``: train and eval; else eval)."""
        stride = {"doc_stride": self.doc_stride}
        if stage in (None, "fit") and self.train_dataset is None:
            split, limit = self.task.train_split, self.limit_train_samples
            columns = {"start_positions": Value("int32"), "end_positions": Value("int32")}
            _, self.train_dataset = self._features(
                split, limit, "train", prepare_train_features, columns, stride, **stride
            )
        if self.eval_features is None:
            split, limit = self.task.eval_splits[0], self.limit_eval_samples
            columns = {
                "example_index": Value("int64"),
                "offset_mapping": List(List(Value("int32"))),
            }
            self.eval_examples, feats = self._features(
                split, limit, "eval", prepare_eval_features, columns, stride, True, **stride
            )
            self.eval_features = feats.add_column("feature_index", np.arange(len(feats)))

    def val_dataloader(self) -> DataLoader:
        """Evaluation windows in feature order, with ``feature_index``."""
        feats = self._require(self.eval_features, "the evaluation split")
        return self._loader(feats.select_columns([*MODEL_FEATURES, "feature_index"]), False)

    def references(self) -> dict[str, list[str]]:
        """Gold answers of the evaluation questions: ``{id: [answer texts]}`` (duplicates kept)."""
        examples = self._require(self.eval_examples, "the evaluation split")
        return {
            qid: list(ans["text"])
            for qid, ans in zip(examples["id"], examples["answers"], strict=True)
        }

    def postprocess(
        self, start_logits: Logits, end_logits: Logits, feature_index: Logits | None = None
    ) -> dict[str, str]:
        """Turn start/end logits of evaluation windows into one answer text per question
        (``""`` when no valid span exists), for each question with a scored window.

        Args:
            start_logits / end_logits: ``[F, T]``, or per-batch ``[B_i, T_i]`` (lengths may differ
                with dynamic padding), in the order of ``feature_index``.
            feature_index: ``[F]`` or per-batch ``[B_i]`` rows of ``eval_features`` the logits
                belong to; ``None`` means ``0..F-1`` in order.
        """
        feats = self._require(self.eval_features, "the evaluation split")
        examples = self._require(self.eval_examples, "the evaluation split")
        if self._lookup is None:
            self._lookup = eval_lookup(feats, examples)
        offsets, example_index, contexts, ids = self._lookup
        starts, ends = _rows(start_logits), _rows(end_logits)
        if feature_index is None:
            rows = np.arange(len(starts))
        else:
            rows = np.concatenate([_numpy(i).reshape(-1) for i in _batches(feature_index)])
        if not len(rows) == len(starts) == len(ends):
            raise ValueError(
                f"got {len(starts)} start, {len(ends)} end rows for {len(rows)} indices"
            )
        per_feature_start: list[np.ndarray | None] = [None] * len(offsets)
        per_feature_end: list[np.ndarray | None] = [None] * len(offsets)
        for r, s, e in zip(rows.astype(np.int64).tolist(), starts, ends, strict=True):
            per_feature_start[r], per_feature_end[r] = s, e
        texts = best_spans(
            per_feature_start,
            per_feature_end,
            offsets,
            example_index,
            contexts,
            self.n_best,
            self.max_answer_length,
        )
        return {ids[row]: text for row, text in sorted(texts.items())}


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


def eval_lookup(feats: Dataset, examples: Dataset):
    """Per-feature ``[T_f, 2]`` offsets and example rows, and per-example contexts and ids."""
    column = feats.with_format("arrow")["offset_mapping"].combine_chunks()  # list<list<int32>>
    lengths = pc.list_value_length(column).to_numpy()  # [F] tokens per feature
    flat = column.flatten().flatten().to_numpy().astype(np.int64).reshape(-1, 2)  # [sum T_f, 2]
    offsets = np.split(flat, np.cumsum(lengths)[:-1])
    example_index = feats.with_format("numpy")["example_index"][:]
    return offsets, example_index, list(examples["context"]), list(examples["id"])


def _batches(x: Logits) -> list:
    return list(x) if isinstance(x, list | tuple) else [x]


def _rows(x: Logits) -> list[np.ndarray]:
    """Split ``[F, T]`` or a list of ``[B_i, T_i]`` batches into ``F`` 1-D arrays."""
    rows: list[np.ndarray] = []
    for batch in _batches(x):
        rows.extend(np.atleast_2d(_numpy(batch)))
    return rows
