"""SQuAD windows, answer-span labels and post-processing, on hand-made cases and real files."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from cofi_lightning.data import SquadDataModule
from cofi_lightning.data.squad_features import (
    best_spans,
    char_span_to_token_span,
    prepare_eval_features,
    prepare_train_features,
)
from cofi_lightning.training.metrics import squad_metrics

from .squad_round_trip import squad_round_trip

#                  [CLS]  "Who"   [SEP]  "Paris"  "is"    "big"    "gest"    "."     [SEP]
OFFSETS = [(0, 0), (0, 3), (0, 0), (0, 5), (6, 8), (9, 12), (12, 16), (16, 17), (0, 0)]
IS_CONTEXT = [False, False, False, True, True, True, True, True, False]  # "Paris is biggest."


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 5, (3, 3)),  # "Paris"
        (6, 16, (4, 6)),  # "is biggest": ends inside a word piece boundary
        (10, 14, (5, 6)),  # "iggé"-like span inside tokens: the covering tokens
        (0, 17, (3, 7)),  # the whole context
        (16, 18, None),  # runs past the window's last context token
    ],
)
def test_char_span_to_token_span(start: int, end: int, expected) -> None:
    assert char_span_to_token_span(OFFSETS, IS_CONTEXT, start, end) == expected


def test_char_span_before_window_is_none() -> None:
    later_window = [(0, 0), (0, 3), (0, 0), (40, 45), (46, 50), (0, 0)]
    assert char_span_to_token_span(later_window, [0, 0, 0, 1, 1, 0], 0, 5) is None


def test_long_context_windows_and_cls_labels(tokenizer) -> None:
    filler = " ".join(f"word{i}" for i in range(150))
    context = f"{filler} The capital of France is Paris. {filler}"
    start = context.index("Paris")
    batch = {
        "question": ["   What is the capital of France?"],
        "context": [context],
        "answers": [{"text": ["Paris"], "answer_start": [start]}],
    }
    train = prepare_train_features(batch, tokenizer, max_length=64, doc_stride=16)
    evals = prepare_eval_features(batch, [0], tokenizer, max_length=64, doc_stride=16)
    assert len(train["input_ids"]) == len(evals["input_ids"]) > 5  # many windows of one example
    assert evals["example_index"] == [0] * len(train["input_ids"])
    assert train["input_ids"][0][1] != tokenizer.convert_tokens_to_ids(" ")  # question lstripped
    found = 0
    for s, e, ids, offsets in zip(
        train["start_positions"],
        train["end_positions"],
        train["input_ids"],
        evals["offset_mapping"],
        strict=True,
    ):
        assert len(ids) <= 64
        if s == e == 0:  # answer outside this window: [CLS]
            continue
        found += 1
        assert context[offsets[s][0] : offsets[e][1]] == "Paris"
    assert found >= 1
    # Consecutive windows overlap by doc_stride tokens of context.
    ctx0 = [o for o in evals["offset_mapping"][0] if o[0] >= 0]
    ctx1 = [o for o in evals["offset_mapping"][1] if o[0] >= 0]
    assert ctx0[-16:] == ctx1[:16]


def test_best_spans_rules() -> None:
    offsets = [np.array([(-1, -1), (0, 5), (6, 8), (9, 12), (-1, -1)])]  # [CLS] a b c [SEP]
    contexts = ["Paris is big"]

    def run(start, end, **kw):
        return best_spans(
            [np.array(start, float)], [np.array(end, float)], offsets, np.array([0]), contexts, **kw
        )[0]

    assert run([0, 5, 1, 0, 0, 0], [0, 0, 1, 4, 0, 0]) == "Paris is big"  # padding ignored
    assert run([9, 5, 0, 0, 0], [9, 3, 0, 0, 0]) == "Paris"  # [CLS] is not an answer
    assert run([0, 0, 0, 5, 0], [0, 4, 0, 0, 0], n_best=1) == ""  # only end < start: no answer
    assert run([0, 5, 0, 0, 0], [0, 0, 0, 9, 0]) == "Paris is big"
    assert run([0, 5, 0, 0, 0], [0, 0, 0, 9, 0], max_answer_length=2) == "is big"  # 3 tokens: cut
    assert run([0, 5, 4, 0, 0], [0, 0, 0, 9, 0], n_best=1) == "Paris is big"
    # Over two windows of one example the higher-scoring window wins.
    two = best_spans(
        [np.array([0, 1, 0, 0, 0.0]), np.array([0, 0, 0, 3, 0.0])],
        [np.array([0, 1, 0, 0, 0.0]), np.array([0, 0, 0, 3, 0.0])],
        offsets * 2,
        np.array([0, 0]),
        contexts,
    )
    assert two == {0: "big"}


@pytest.fixture(scope="module")
def squad_dm(tokenizer, data_dir, tmp_path_factory) -> SquadDataModule:
    dm = SquadDataModule(
        tokenizer=tokenizer,
        data_dir=data_dir,
        batch_size=8,
        eval_batch_size=7,
        limit_train_samples=48,
        limit_eval_samples=30,
        cache_dir=tmp_path_factory.mktemp("squad-cache"),
    )
    dm.setup("fit")
    return dm


def test_train_batches_point_at_answers(squad_dm, data_dir) -> None:
    batch = next(iter(squad_dm.train_dataloader()))
    assert set(batch) == {
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "start_positions",
        "end_positions",
        "example_index",
    }
    assert batch["input_ids"].shape[1] <= 384
    assert (batch["end_positions"] >= batch["start_positions"]).all()
    ds = squad_dm.train_dataset
    assert len(ds) >= 48 and sum(s > 0 for s in ds["start_positions"]) >= 45


def test_eval_features_postprocess_and_references(squad_dm, data_dir) -> None:
    dm = squad_dm
    assert len(dm.eval_examples) == 30  # limit counts questions, not windows
    assert len(dm.eval_features) >= 30
    refs = dm.references()
    rows = pq.read_table(data_dir / "squad" / "validation.parquet").slice(0, 30).to_pylist()
    assert refs == {r["id"]: r["answers"]["text"] for r in rows}

    # Random logits through the real loader (batches of different lengths, as in validation).
    gen = torch.Generator().manual_seed(0)
    starts, ends, index, full_s, full_e = [], [], [], {}, {}
    for batch in dm.val_dataloader():
        assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "feature_index"}
        s = torch.randn(batch["input_ids"].shape, generator=gen)
        e = torch.randn(batch["input_ids"].shape, generator=gen)
        starts.append(s), ends.append(e), index.append(batch["feature_index"])
        for i, f in enumerate(batch["feature_index"].tolist()):
            full_s[f], full_e[f] = s[i], e[i]
    assert torch.cat(index).tolist() == list(range(len(dm.eval_features)))
    predictions = dm.postprocess(starts, ends, index)
    assert set(predictions) == set(refs)
    # Shuffled per-feature rows with their indices give the same answers.
    order = np.random.default_rng(0).permutation(len(full_s))
    shuffled = dm.postprocess([full_s[f] for f in order], [full_e[f] for f in order], order)
    assert shuffled == predictions

    # Gold spans as logits come back as the gold text, so EM is 100 on these questions.
    rt = squad_round_trip(dm)
    assert rt.answers >= 30 and rt.recovered >= rt.answers - 3
    gold = dm.postprocess(*_first_gold_logits(dm))
    assert squad_metrics(gold, refs)["exact_match"] >= 90.0


def _first_gold_logits(dm):
    """One-hot logits at the first gold answer's tokens, for every window containing it."""
    starts, ends = [], []
    for feat in dm.eval_features:
        offsets = np.array(feat["offset_mapping"])
        answers = dm.eval_examples[feat["example_index"]]["answers"]
        s_char = answers["answer_start"][0]
        span = char_span_to_token_span(
            offsets, offsets[:, 0] >= 0, s_char, s_char + len(answers["text"][0])
        )
        s, e = np.full(len(offsets), -1e4), np.full(len(offsets), -1e4)
        if span is not None:
            s[span[0]] = e[span[1]] = 0.0
        starts.append(s), ends.append(e)
    return starts, ends


def test_squad_constructor_checks(tokenizer) -> None:
    with pytest.raises(ValueError, match="glue task"):
        SquadDataModule(task="rte", tokenizer=tokenizer)
    with pytest.raises(ValueError, match="doc_stride"):
        SquadDataModule(tokenizer=tokenizer, doc_stride=300)


@pytest.mark.slow
def test_full_validation_round_trip(tokenizer, data_dir, tmp_path) -> None:
    dm = SquadDataModule(tokenizer=tokenizer, data_dir=data_dir, cache_dir=tmp_path)
    dm.setup("validate")
    assert len(dm.eval_examples) == 10570
    assert len(dm.eval_features) > 10570  # long contexts need several windows
    rng = np.random.default_rng(0)
    logits = [rng.normal(size=len(f)) for f in dm.eval_features["input_ids"]]
    predictions = dm.postprocess(logits, logits[::-1][::-1])
    assert len(predictions) == 10570 and set(predictions) == set(dm.references())
    rt = squad_round_trip(dm)
    assert rt.rate >= 99.0, rt.failures
