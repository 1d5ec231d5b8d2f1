"""SQuAD v1.1 windows: the conversions between characters and tokens. Examples become overlapping
windows of at most ``max_length`` tokens (``doc_stride`` tokens of overlap; offset mappings keep
the token-to-character link), answers become token spans, and logits become text again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cofi_lightning.data.base import MODEL_FEATURES

#: Offset written for tokens outside the context (question, special tokens) in evaluation features.
NO_OFFSET = (-1, -1)


def char_span_to_token_span(
    offsets: Sequence[Sequence[int]],
    is_context: Sequence[bool],
    start_char: int,
    end_char: int,
) -> tuple[int, int] | None:
    """Inclusive token positions ``(start, end)`` covering the character span
    ``[start_char, end_char)`` of one window; ``None`` unless it lies inside the window's context.

    Args:
        offsets: ``[T]`` pairs ``(first_char, end_char)`` of each token in the context string.
        is_context: ``[T]`` whether each token belongs to the context.
    """
    context = [t for t, c in enumerate(is_context) if c]
    if not context:
        return None
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return None
    start = first
    while start + 1 <= last and offsets[start + 1][0] <= start_char:
        start += 1  # last token starting at or before the answer's first character
    end = last
    while end - 1 >= start and offsets[end - 1][1] >= end_char:
        end -= 1  # first token ending at or after the answer's last character
    return start, end


def _windows(batch: dict[str, list], tokenizer: Any, max_length: int, doc_stride: int):
    # Some SQuAD questions start with runs of spaces that would waste window length.
    questions = [q.lstrip() for q in batch["question"]]
    return tokenizer(
        questions,
        batch["context"],
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_token_type_ids=True,
    )


def _model_inputs(enc: Any) -> dict[str, list]:
    return {k: enc[k] for k in MODEL_FEATURES}


def prepare_train_features(
    batch: dict[str, list], tokenizer: Any, max_length: int, doc_stride: int
) -> dict[str, list]:
    """Windows (``m >= n`` features) of ``n`` training examples in hub schema, labelled with the
    first answer's token span (``[CLS]`` when the answer is not fully inside the window)."""
    enc = _windows(batch, tokenizer, max_length, doc_stride)
    starts, ends = [], []
    for i, example in enumerate(enc["overflow_to_sample_mapping"]):
        answers = batch["answers"][example]
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        is_context = [s == 1 for s in enc.sequence_ids(i)]
        span = char_span_to_token_span(enc["offset_mapping"][i], is_context, start_char, end_char)
        cls = enc["input_ids"][i].index(tokenizer.cls_token_id)
        start, end = span if span is not None else (cls, cls)
        starts.append(start)
        ends.append(end)
    return {**_model_inputs(enc), "start_positions": starts, "end_positions": ends}


def prepare_eval_features(
    batch: dict[str, list],
    indices: list[int],
    tokenizer: Any,
    max_length: int,
    doc_stride: int,
) -> dict[str, list]:
    """Windows of the evaluation examples at rows ``indices`` that remember their example row
    (``example_index``) and their ``[T]`` character spans (``offset_mapping``; ``NO_OFFSET`` for
    question and special tokens, so they can never be an answer)."""
    enc = _windows(batch, tokenizer, max_length, doc_stride)
    offsets = []
    for i, pairs in enumerate(enc["offset_mapping"]):
        seq = enc.sequence_ids(i)
        offsets.append([tuple(p) if s == 1 else NO_OFFSET for p, s in zip(pairs, seq, strict=True)])
    example_index = [indices[e] for e in enc["overflow_to_sample_mapping"]]
    return {**_model_inputs(enc), "example_index": example_index, "offset_mapping": offsets}


def best_spans(
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    offsets: Sequence[np.ndarray],
    example_index: np.ndarray,
    contexts: Sequence[str],
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[int, str]:
    """``{example row: answer text}`` over all windows of every example with a scored window.

    Each window pairs its ``n_best`` highest start and end logits; a pair of context tokens with
    ``1 <= end - start + 1 <= max_answer_length`` scores ``start_logit + end_logit``, and the
    example's best pair gives ``context[offsets[start][0]:offsets[end][1]]`` (``""`` if none).

    Args:
        start_logits / end_logits: ``[F]`` arrays of ``[T_f' >= T_f]`` logits (padding ignored),
            ``None`` for features that were not scored.
        offsets: ``[F]`` int arrays ``[T_f, 2]`` from ``prepare_eval_features``.
        example_index: ``[F]`` example row of each feature.
    """
    best: dict[int, tuple[float, str]] = {}
    for f, (start, end) in enumerate(zip(start_logits, end_logits, strict=True)):
        if start is None:
            continue
        spans = offsets[f]
        length = len(spans)
        start = np.asarray(start, dtype=np.float64)[:length]
        end = np.asarray(end, dtype=np.float64)[:length]
        in_context = spans[:, 0] >= 0  # [T]
        s = np.argsort(-start, kind="stable")[:n_best]  # [K] candidate starts
        e = np.argsort(-end, kind="stable")[:n_best]  # [K] candidate ends
        width = e[None, :] - s[:, None] + 1  # [K, K] answer length in tokens
        valid = in_context[s][:, None] & in_context[e][None, :] & (width >= 1)
        valid &= width <= max_answer_length
        if not valid.any():
            best.setdefault(int(example_index[f]), (-np.inf, ""))
            continue
        score = np.where(valid, start[s][:, None] + end[e][None, :], -np.inf)  # [K, K]
        i, j = np.unravel_index(np.argmax(score), score.shape)
        row = int(example_index[f])
        if row not in best or score[i, j] > best[row][0]:
            text = contexts[row][spans[s[i], 0] : spans[e[j], 1]]
            best[row] = (float(score[i, j]), text)
    return {row: text for row, (_, text) in best.items()}
