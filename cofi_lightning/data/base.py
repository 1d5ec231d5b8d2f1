"""What the GLUE and SQuAD DataModules share: arguments, the on-disk feature cache (keyed by the
content it depends on), padding and loaders. Padding happens at collate time, never in the cache, so
the padding mode is not part of the cache key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from datasets import Dataset, Features, List, Value
from torch.utils.data import DataLoader

from cofi_lightning.data.loaders import EpochShuffleSampler, ResumableDataLoader, eval_sampler
from cofi_lightning.data.sources import default_cache_dir, load_split
from cofi_lightning.data.tasks import TaskSpec, get_task

log = logging.getLogger(__name__)

#: Bump when the feature preparation changes, so old cache files are not reused.
FEATURE_VERSION = 1

#: Sequence columns and their padding values (``None``: the tokenizer's pad id).
_SEQUENCE_PAD: dict[str, int | None] = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0}
_SCALAR_KEYS = ("labels", "start_positions", "end_positions", "feature_index", "example_index")
#: The model inputs of every task's cached features (their columns come first).
MODEL_FEATURES = {
    "input_ids": List(Value("int32")),
    "token_type_ids": List(Value("int8")),
    "attention_mask": List(Value("int8")),
}


class IndexedDataset(torch.utils.data.Dataset):
    """A training dataset whose rows also carry their position (``example_index``), so a batch
    can be matched with per-example data computed once, e.g. the teacher cache."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], "example_index": int(index)}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        rows = self.dataset.__getitems__(list(indices))
        return [{**row, "example_index": int(i)} for row, i in zip(rows, indices, strict=True)]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A content hash of a fast tokenizer (vocabulary, normalizer, special tokens), not of its
    path, so a copy elsewhere hits the same cache; the truncation and padding settings the fast
    backend keeps from its last call are dropped."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            f"{type(tokenizer).__name__} is not a fast tokenizer; offsets and caching need one "
            "(load it with AutoTokenizer.from_pretrained(..., use_fast=True))"
        )
    state = json.loads(backend.to_str())
    state.pop("truncation", None)
    state.pop("padding", None)
    sides = [getattr(tokenizer, "truncation_side", None), getattr(tokenizer, "padding_side", None)]
    blob = json.dumps([type(tokenizer).__name__, sides, state], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class PadCollator:
    """Stack tokenized features into a batch of tensors, right-padding the sequences to the
    longest one (or to ``pad_to``): ``[B, T]`` int64 sequences and whichever ``[B]`` scalars the
    features carry (``labels`` float32 when ``float_labels``, regression targets).
    """

    def __init__(self, pad_token_id: int, pad_to: int | None = None, float_labels: bool = False):
        self.pad_token_id = pad_token_id
        self.pad_to = pad_to
        self.float_labels = float_labels

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        length = longest if self.pad_to is None else self.pad_to
        if longest > length:
            raise ValueError(f"a sequence of {longest} tokens does not fit pad_to={length}")
        batch: dict[str, torch.Tensor] = {}
        for key, pad in _SEQUENCE_PAD.items():
            if key not in features[0]:
                continue
            fill = self.pad_token_id if pad is None else pad
            out = torch.full((len(features), length), fill, dtype=torch.long)  # [B, T]
            for row, f in enumerate(features):
                out[row, : len(f[key])] = torch.as_tensor(f[key], dtype=torch.long)
            batch[key] = out
        for key in _SCALAR_KEYS:
            if key in features[0]:
                dtype = torch.float32 if key == "labels" and self.float_labels else torch.long
                batch[key] = torch.tensor([f[key] for f in features], dtype=dtype)  # [B]
        return batch


#: The size arguments of :class:`TaskDataModule` and whether each may be None.
SIZE_ARGUMENTS: dict[str, bool] = {
    "batch_size": False,
    "eval_batch_size": True,
    "limit_train_samples": True,
    "limit_eval_samples": True,
}


def check_sizes(**sizes: Any) -> None:
    """The DataModule's batch sizes and sample limits are counts >= 1 (None where allowed); the
    config schema calls it too, so a bad value is refused before any stage starts."""
    for name, value in sizes.items():
        optional = SIZE_ARGUMENTS[name]
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            allowed = "null or an integer >= 1" if optional else "an integer >= 1"
            raise ValueError(f"{name} must be {allowed}, got {value!r}")


class TaskDataModule(L.LightningDataModule):
    """Base class: argument checks, cached tokenization and loaders. See the subclasses.

    Args:
        data_dir: Local mirror directory; ``None`` loads from the hub.
        eval_batch_size: Evaluation batch size (default: ``batch_size``).
        max_seq_length: Maximum tokens per sequence (default: the task's paper value).
        pad_to_max_length: Pad every batch to ``max_seq_length`` (speed benchmarks).
        limit_train_samples / limit_eval_samples: Use only the first N examples of each split.
        cache_dir: Tokenized-feature cache (default ``$COFI_CACHE_DIR`` or
            ``~/.cache/cofi_lightning``).
        use_hub: Fall back to the hub for splits missing from ``data_dir``.
        check_num_rows: Refuse full splits whose size differs from the official one.
        seed: Seed of the training order (epoch e is a permutation seeded by ``(seed, e)``).
    """

    family: str = ""

    def __init__(
        self,
        task: str,
        tokenizer: Any,
        data_dir: str | os.PathLike | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        max_seq_length: int | None = None,
        pad_to_max_length: bool = False,
        limit_train_samples: int | None = None,
        limit_eval_samples: int | None = None,
        num_workers: int = 0,
        cache_dir: str | os.PathLike | None = None,
        use_hub: bool = True,
        check_num_rows: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.task: TaskSpec = get_task(task)
        if self.task.family != self.family:
            raise ValueError(f"task {task!r} is a {self.task.family} task; use the matching module")
        check_sizes(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            limit_train_samples=limit_train_samples,
            limit_eval_samples=limit_eval_samples,
        )
        self.tokenizer = tokenizer
        self.tokenizer_id = tokenizer_fingerprint(tokenizer)
        self.data_dir = None if data_dir is None else str(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.max_seq_length = max_seq_length or self.task.max_seq_length
        if self.max_seq_length > tokenizer.model_max_length:
            raise ValueError(
                f"max_seq_length={self.max_seq_length} exceeds the tokenizer's model_max_length "
                f"{tokenizer.model_max_length}"
            )
        self.pad_to_max_length = pad_to_max_length
        self.limit_train_samples = limit_train_samples
        self.limit_eval_samples = limit_eval_samples
        self.num_workers = num_workers
        self.cache_dir = Path(cache_dir or default_cache_dir())
        self.use_hub = use_hub
        self.check_num_rows = check_num_rows
        self.seed = int(seed)
        self.train_dataset: Dataset | None = None
        #: ``{"<split>/<kind>": True if the features came from the cache}``, filled by ``setup``.
        self.cache_hits: dict[str, bool] = {}
        #: ``{"<split>/<kind>": the features' cache key}`` (what they depend on, hashed).
        self.feature_keys: dict[str, str] = {}
        self.save_hyperparameters(ignore=["tokenizer"])

    def prepare_data(self) -> None:
        """Fill the feature cache once, on one process, for the splits the trainer's stage needs
        (evaluating works without the training split; without a trainer every split is prepared).
        """
        state = getattr(self.trainer, "state", None)
        self.setup(None if state is None or state.fn is None else str(state.fn.value))

    def _features(
        self,
        split: str,
        limit: int | None,
        kind: str,
        function: Callable[..., dict],
        columns: dict[str, Any],
        key_extra: dict[str, Any],
        with_indices: bool = False,
        **fn_kwargs: Any,
    ) -> tuple[Dataset, Dataset]:
        """The raw rows of ``split`` (validated, cut to the first ``limit``) and their features:
        ``function(batch, tokenizer=, max_length=, **fn_kwargs)`` mapped over them, giving the
        model inputs and ``columns``, cached on disk under a key of what they depend on."""
        ds, origin, fingerprint = load_split(
            self.task, split, self.data_dir, self.use_hub, self.check_num_rows
        )
        if limit is not None and limit < len(ds):
            ds = ds.select(range(limit))
        log.info("%s %s: %d examples from %s", self.task.name, split, len(ds), origin)
        key = {
            "version": FEATURE_VERSION,
            "task": self.task.name,
            "split": split,
            "kind": kind,
            "data": fingerprint,
            "tokenizer": self.tokenizer_id,
            "max_seq_length": self.max_seq_length,
            "num_examples": len(ds),
            **key_extra,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        path = self.cache_dir / self.task.name / f"{split}-{kind}-{digest}.arrow"
        path.parent.mkdir(parents=True, exist_ok=True)
        hit = path.is_file()
        self.cache_hits[f"{split}/{kind}"] = hit
        self.feature_keys[f"{split}/{kind}"] = digest
        state = "cache hit" if hit else "tokenizing into"
        log.info("%s %s/%s features: %s %s", self.task.name, split, kind, state, path)
        out = ds.map(
            function,
            batched=True,
            with_indices=with_indices,
            fn_kwargs={"tokenizer": self.tokenizer, "max_length": self.max_seq_length, **fn_kwargs},
            remove_columns=ds.column_names,
            features=Features({**MODEL_FEATURES, **columns}),
            cache_file_name=str(path),
            load_from_cache_file=True,
            new_fingerprint=digest,
            desc=f"Tokenizing {self.task.name} {split}",
        )
        if len(out) == 0:
            raise RuntimeError(f"{self.task.name} {split}: tokenization produced no features")
        return ds, out

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return self._loader(self._require(self.train_dataset, "the training split"), True)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """The validation loaders (GLUE and SQuAD v1.1 test labels are not public)."""
        return self.val_dataloader()

    def _loader(self, ds: Dataset, train: bool) -> DataLoader:
        """Training: shuffled, resumable mid-epoch, order seeded by ``(seed, epoch)``, rows carry
        ``example_index``. Evaluation: file order; under DDP each example on one rank."""
        pad_to = self.max_seq_length if self.pad_to_max_length else None
        collate = PadCollator(self.tokenizer.pad_token_id, pad_to, self.task.is_regression)
        common = dict(
            batch_size=self.batch_size if train else self.eval_batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate,
        )
        if train:
            sampler = EpochShuffleSampler(len(ds), self.seed)
            return ResumableDataLoader(IndexedDataset(ds), sampler=sampler, **common)
        return DataLoader(ds, sampler=eval_sampler(ds), **common)

    @staticmethod
    def _require(value: Any, what: str) -> Any:
        if value is None:
            raise RuntimeError(
                f"{what} is not set up; call setup('fit') or setup('validate') first"
            )
        return value
