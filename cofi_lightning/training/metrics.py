"""GLUE and SQuAD v1.1 evaluation metrics, in percent.

GLUE metrics come from ``torchmetrics``. SQuAD follows the official v1.1 script, written out
because ``torchmetrics.functional.squad`` follows v2.0's rule for empty answers (two empty
answers score F1 1, v1.1 scores 0) and sums in float32.
"""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics.functional import pearson_corrcoef, spearman_corrcoef
from torchmetrics.functional.classification import (
    binary_confusion_matrix,
    binary_f1_score,
    binary_matthews_corrcoef,
    multiclass_accuracy,
)

from cofi_lightning.data.tasks import get_task

log = logging.getLogger(__name__)


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    return torch.as_tensor(np.asarray(x))


def glue_metrics(task: str, predictions: Any, labels: Any) -> dict[str, float]:
    """The task's GLUE metrics (declared in ``cofi_lightning.data.tasks``), in percent.

    Args:
        predictions: ``[N]`` class ids or ``[N, C]`` logits; for STS-B ``[N]`` or ``[N, 1]``
            scores. Tensor, NumPy array or list.
        labels: ``[N]`` gold class ids, or gold scores for STS-B.
    """
    spec = get_task(task)
    if spec.family != "glue":
        raise ValueError(f"{task!r} is not a GLUE task; use squad_metrics")
    preds, target = _as_tensor(predictions), _as_tensor(labels).reshape(-1)
    if spec.is_regression:
        preds = preds.reshape(-1).double()
    elif preds.ndim == 2:
        preds = preds.argmax(dim=-1)  # [N, C] logits -> [N] class ids
    if preds.ndim != 1 or preds.shape != target.shape:
        raise ValueError(
            f"{task}: predictions {tuple(preds.shape)} vs labels {tuple(target.shape)}"
        )
    if len(target) == 0:
        raise ValueError(f"{task}: no predictions to score")
    out: dict[str, torch.Tensor] = {}
    if spec.is_regression:
        target = target.double()
        out["pearson"] = pearson_corrcoef(preds, target)
        out["spearman"] = spearman_corrcoef(preds, target)
    else:
        preds, target = preds.long(), target.long()
        if "accuracy" in spec.metrics:
            out["accuracy"] = multiclass_accuracy(
                preds, target, num_classes=spec.num_labels, average="micro"
            )
        if "f1" in spec.metrics:
            out["f1"] = binary_f1_score(preds, target)
        if "matthews_correlation" in spec.metrics:
            out["matthews_correlation"] = _matthews(preds, target)
    return {name: 100.0 * float(value) for name, value in out.items()}


def _matthews(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Matthews correlation, 0 when predictions or labels are constant (as GLUE's scikit-learn;
    torchmetrics returns a non-zero limit that would flatter collapsed models)."""
    confusion = binary_confusion_matrix(preds, target)  # [2, 2]: rows gold, columns predicted
    if (confusion.sum(0) == 0).any() or (confusion.sum(1) == 0).any():
        return torch.tensor(0.0)
    return binary_matthews_corrcoef(preds, target)


def normalize_answer(text: str) -> str:
    """Official SQuAD v1.1 normalisation: lower case, no punctuation, no a/an/the, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCTUATION = frozenset(string.punctuation)


def _f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:  # v1.1: also when both are empty
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _exact(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_metrics(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """SQuAD v1.1 exact match and F1 in percent over the questions of ``references``
    (``{id: [gold texts]}``, the best-scoring kept); as in the official script, a question without
    a prediction scores 0 (with a warning) and predictions for unknown ids are ignored."""
    if not references:
        raise ValueError("no reference questions to score")
    exact = f1 = 0.0
    missing = [qid for qid in references if qid not in predictions]
    if missing:
        log.warning(
            "%d of %d questions have no prediction and score 0 (e.g. %s)",
            len(missing),
            len(references),
            missing[0],
        )
    for qid, golds in references.items():
        if isinstance(golds, str) or not golds:
            raise ValueError(f"question {qid!r}: references must be a non-empty list of texts")
        if qid not in predictions:
            continue
        prediction = predictions[qid]
        exact += max(_exact(prediction, g) for g in golds)
        f1 += max(_f1(prediction, g) for g in golds)
    return {"exact_match": 100.0 * exact / len(references), "f1": 100.0 * f1 / len(references)}
