"""GlueDataModule on real RTE/STS-B files and a tiny MNLI mirror: batches, labels, cache."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from cofi_lightning.data import DataError, GlueDataModule, glue, sources

MODEL_KEYS = {"input_ids", "attention_mask", "token_type_ids", "labels"}


def _labels(loader) -> list:
    return [v for batch in loader for v in batch["labels"].tolist()]


def test_rte_batches_keys_dtypes_and_dynamic_padding(tokenizer, data_dir, tmp_path) -> None:
    dm = GlueDataModule(
        task="rte",
        tokenizer=tokenizer,
        data_dir=data_dir,
        batch_size=16,
        eval_batch_size=8,
        limit_train_samples=64,
        limit_eval_samples=40,
        cache_dir=tmp_path,
    )
    dm.setup("fit")
    assert len(dm.train_dataset) == 64 and len(dm.eval_datasets["validation"]) == 40
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == MODEL_KEYS | {"example_index"}
    assert batch["input_ids"].shape[0] == 16 and batch["labels"].dtype == torch.long
    assert all(batch[k].dtype == torch.long for k in MODEL_KEYS | {"example_index"})
    for row, index in enumerate(batch["example_index"].tolist()):  # each row knows its example
        ids = dm.train_dataset[index]["input_ids"]
        assert batch["input_ids"][row, : len(ids)].tolist() == ids
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape[1] == lengths.max() <= 128  # padded to the batch's longest
    pad = batch["attention_mask"] == 0
    assert (batch["input_ids"][pad] == tokenizer.pad_token_id).all()

    # Validation: file order, labels as in the file, ids as the tokenizer gives them.
    rows = pq.read_table(data_dir / "glue" / "rte" / "validation.parquet").slice(0, 40).to_pylist()
    assert _labels(dm.val_dataloader()) == [r["label"] for r in rows]
    first = next(iter(dm.val_dataloader()))
    expected = tokenizer(
        rows[0]["sentence1"], rows[0]["sentence2"], truncation=True, max_length=128
    )
    n = len(expected["input_ids"])
    assert first["input_ids"][0, :n].tolist() == expected["input_ids"]
    assert first["token_type_ids"][0, :n].tolist() == expected["token_type_ids"]
    assert _labels(dm.test_dataloader()) == _labels(dm.val_dataloader())


def test_fixed_padding_and_truncation(tokenizer, data_dir, tmp_path) -> None:
    common = dict(
        task="rte",
        tokenizer=tokenizer,
        data_dir=data_dir,
        limit_eval_samples=16,
        batch_size=16,
        cache_dir=tmp_path,
    )
    fixed = GlueDataModule(pad_to_max_length=True, **common)
    fixed.setup("validate")
    assert next(iter(fixed.val_dataloader()))["input_ids"].shape == (16, 128)
    short = GlueDataModule(max_seq_length=32, **common)
    short.setup("validate")
    batch = next(iter(short.val_dataloader()))
    assert batch["input_ids"].shape[1] == 32  # RTE pairs are longer than 32 tokens: truncated
    assert (batch["input_ids"][:, -1] == tokenizer.sep_token_id).all()
    with pytest.raises(RuntimeError, match="not set up"):
        short.train_dataloader()


def test_stsb_labels_are_float_scores(tokenizer, data_dir, tmp_path) -> None:
    dm = GlueDataModule(
        "stsb",
        tokenizer,
        data_dir=data_dir,
        limit_eval_samples=20,
        batch_size=20,
        cache_dir=tmp_path,
    )
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    gold = pq.read_table(data_dir / "glue" / "stsb" / "validation.parquet")["label"].to_pylist()
    assert batch["labels"].dtype == torch.float32
    torch.testing.assert_close(batch["labels"], torch.tensor(gold[:20], dtype=torch.float32))


def test_mnli_two_eval_loaders_and_labels_untouched(tokenizer, write_split, tmp_path) -> None:
    labels = {
        "train": [0, 1, 2, 2, 1, 0],
        "validation_matched": [2, 0, 1],
        "validation_mismatched": [1, 2, 0, 0],
    }
    for split, ys in labels.items():
        write_split(
            "mnli",
            split,
            {
                "premise": [f"{split} premise {i}" for i in range(len(ys))],
                "hypothesis": [f"hypothesis {i}" for i in range(len(ys))],
                "label": ys,
                "idx": list(range(len(ys))),
            },
        )
    # The original CoFi code remapped MNLI labels for some model paths; the name must not matter.
    renamed = copy.deepcopy(tokenizer)
    renamed.name_or_path = "textattack/bert-base-uncased-MNLI"
    dm = GlueDataModule(
        "mnli",
        renamed,
        data_dir=write_split.mirror,
        check_num_rows=False,
        batch_size=2,
        cache_dir=tmp_path,
    )
    dm.setup("fit")
    assert dm.task.eval_splits == ("validation_matched", "validation_mismatched")
    assert dm.task.eval_names == ("mnli_m", "mnli_mm")
    loaders = dm.val_dataloader()
    assert isinstance(loaders, list) and len(loaders) == 2
    assert [_labels(x) for x in loaders] == [
        labels["validation_matched"],
        labels["validation_mismatched"],
    ]
    assert sorted(_labels(dm.train_dataloader())) == sorted(labels["train"])
    assert dm.task.num_labels == 3


def test_second_setup_is_a_cache_hit_without_tokenizing(tokenizer, data_dir, tmp_path, monkeypatch):
    kwargs = dict(task="rte", tokenizer=tokenizer, data_dir=data_dir, cache_dir=tmp_path)
    first = GlueDataModule(**kwargs)
    tic = time.perf_counter()
    first.setup("fit")
    first_s = time.perf_counter() - tic
    assert first.cache_hits == {"train/glue": False, "validation/glue": False}

    def must_not_run(*args, **kwargs):
        raise AssertionError("re-tokenized although the features are cached")

    monkeypatch.setattr(glue, "encode_glue", must_not_run)
    second = GlueDataModule(**kwargs)
    tic = time.perf_counter()
    second.setup("fit")
    assert time.perf_counter() - tic < first_s
    assert second.cache_hits == {"train/glue": True, "validation/glue": True}
    assert second.train_dataset[:5] == first.train_dataset[:5]
    # Padding is applied at collate time, so fixed padding reads the same cache.
    GlueDataModule(pad_to_max_length=True, **kwargs).setup("validate")
    # Another max length or another sample limit is another cache entry.
    for other in (dict(max_seq_length=64), dict(limit_eval_samples=10)):
        with pytest.raises(AssertionError, match="re-tokenized"):
            GlueDataModule(**kwargs, **other).setup("validate")


def test_missing_split_fails_at_setup(tokenizer, data_dir, tmp_path, monkeypatch) -> None:
    def offline(*args):
        raise ConnectionError("offline")

    monkeypatch.setattr(sources, "load_from_hub", offline)
    dm = GlueDataModule("qnli", tokenizer, data_dir=data_dir, cache_dir=tmp_path)  # no qnli train
    with pytest.raises(DataError, match="'train' of task 'qnli' was not found"):
        dm.setup("fit")


def test_constructor_checks(tokenizer) -> None:
    with pytest.raises(KeyError, match="unknown task"):
        GlueDataModule("wnli", tokenizer)
    with pytest.raises(ValueError, match="squad task"):
        GlueDataModule("squad", tokenizer)
    with pytest.raises(ValueError, match="limit_train_samples"):
        GlueDataModule("rte", tokenizer, limit_train_samples=0)
    with pytest.raises(ValueError, match="model_max_length"):
        GlueDataModule("rte", tokenizer, max_seq_length=4096)
    with pytest.raises(TypeError, match="not a fast tokenizer"):
        GlueDataModule("rte", object())


@pytest.mark.slow
def test_sst2_full_splits(tokenizer, data_dir: Path, tmp_path) -> None:
    dm = GlueDataModule("sst2", tokenizer, data_dir=data_dir, cache_dir=tmp_path)
    dm.setup("fit")
    assert len(dm.train_dataset) == 67349
    assert len(dm.eval_datasets["validation"]) == 872
    assert sum(_labels(dm.val_dataloader())) == 444  # positives in SST-2 validation
