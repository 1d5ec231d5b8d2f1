"""GLUE metrics against scikit-learn and SciPy; SQuAD metrics against hand-worked v1.1 cases."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from cofi_lightning.data.tasks import GLUE_TASKS, TASKS
from cofi_lightning.training.metrics import glue_metrics, normalize_answer, squad_metrics

SKLEARN = {
    "accuracy": accuracy_score,
    "f1": f1_score,  # binary, positive class 1
    "matthews_correlation": matthews_corrcoef,
}
CLASSIFICATION = [t for t in GLUE_TASKS if not TASKS[t].is_regression]


@pytest.mark.parametrize("task", CLASSIFICATION)
def test_glue_classification_matches_sklearn(task: str) -> None:
    spec = TASKS[task]
    rng = np.random.default_rng(len(task))
    labels = rng.integers(0, spec.num_labels, 501)
    # Correlated with the labels so that every metric is far from 0.
    preds = np.where(rng.random(501) < 0.7, labels, rng.integers(0, spec.num_labels, 501))
    got = glue_metrics(task, torch.as_tensor(preds), labels.tolist())
    assert set(got) == set(spec.metrics)
    for name, value in got.items():
        assert value == pytest.approx(100 * SKLEARN[name](labels, preds), abs=1e-4), name
    assert 0 < got[spec.main_metric] <= 100


def test_glue_logits_are_argmaxed() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 3))
    labels = rng.integers(0, 3, 64)
    from_logits = glue_metrics("mnli", logits, labels)
    assert from_logits == glue_metrics("mnli", logits.argmax(-1), labels)
    assert from_logits["accuracy"] == pytest.approx(100 * np.mean(logits.argmax(-1) == labels))


def test_mrpc_hand_worked() -> None:
    # TP=1, FP=1, FN=1, TN=1: accuracy 2/4, F1 of class 1 = 2*1/(2*1+1+1) = 0.5.
    got = glue_metrics("mrpc", [1, 1, 0, 0], [1, 0, 1, 0])
    assert got == pytest.approx({"accuracy": 50.0, "f1": 50.0})


@pytest.mark.parametrize(
    ("preds", "labels"),
    [
        ([1, 1, 1, 1, 1], [0, 1, 1, 0, 1]),  # a collapsed model: constant predictions
        ([0, 0, 0, 0, 0], [0, 1, 1, 0, 1]),
        ([1, 1, 1, 1, 1], [1, 1, 1, 1, 1]),  # constant labels, all correct
        ([0, 1, 0, 1, 1], [1, 1, 1, 1, 1]),
    ],
)
@pytest.mark.filterwarnings("ignore:A single label was found")
def test_cola_degenerate_cases_match_sklearn(preds: list[int], labels: list[int]) -> None:
    got = glue_metrics("cola", preds, labels)["matthews_correlation"]
    assert got == 100 * matthews_corrcoef(labels, preds) == 0.0


def test_stsb_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(1)
    labels = np.round(rng.uniform(0, 5, 400) * 5) / 5  # 0.2 steps: many tied gold scores
    preds = np.round(labels + rng.normal(0, 1, 400), 1)  # tied predictions as well
    got = glue_metrics("stsb", torch.as_tensor(preds, dtype=torch.float32)[:, None], labels)
    assert set(got) == {"pearson", "spearman"}
    preds32 = np.asarray(torch.as_tensor(preds, dtype=torch.float32), dtype=np.float64)
    assert got["pearson"] == pytest.approx(100 * pearsonr(preds32, labels).statistic, abs=1e-6)
    # torchmetrics ranks in float32: agreement to ~1e-7 relative.
    assert got["spearman"] == pytest.approx(100 * spearmanr(preds32, labels).statistic, abs=1e-4)


def test_glue_metrics_rejects_bad_input() -> None:
    with pytest.raises(KeyError, match="unknown task"):
        glue_metrics("wnli", [1], [1])
    with pytest.raises(ValueError, match="not a GLUE task"):
        glue_metrics("squad", [1], [1])
    with pytest.raises(ValueError, match="predictions"):
        glue_metrics("rte", [1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="no predictions"):
        glue_metrics("rte", [], [])


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Denver Broncos!", "denver broncos"),
        ("  an apple,  a pear\tand THE  end ", "apple pear and end"),
        ("Theater anatomy", "theater anatomy"),  # articles only as whole words
        ("U.S.-led (1990s)", "usled 1990s"),
        ("the", ""),
    ],
)
def test_normalize_answer_official_v11(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized


def test_squad_hand_worked_cases() -> None:
    references = {
        "exact": ["Denver Broncos", "Denver Broncos"],
        "partial": ["Denver Broncos"],
        "multi": ["Panthers", "the Carolina Panthers"],
        "empty_pred": ["Santa Clara"],
        "article_gold": ["the"],
    }
    predictions = {
        "exact": "the Denver Broncos.",  # normalises to the gold
        "partial": "Denver",  # P=1, R=1/2 -> F1 2/3
        "multi": "Carolina Panthers",  # EM with the 2nd gold; F1 max over both
        "empty_pred": "",
        "article_gold": "a",  # both normalise to "": EM 1, and F1 0 under the v1.1 rule
        "unknown_id": "ignored",
    }
    got = squad_metrics(predictions, references)
    assert got["exact_match"] == pytest.approx(100 * (1 + 0 + 1 + 0 + 1) / 5)
    assert got["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0 + 0) / 5)


def test_squad_f1_counts_repeated_tokens_once_each() -> None:
    # pred tokens [a1 a1 b], gold [a1 b b]: common = {a1: 1, b: 1} -> P = R = 2/3.
    got = squad_metrics({"q": "x x y"}, {"q": ["x y y"]})
    assert got == pytest.approx({"exact_match": 0.0, "f1": 100 * 2 / 3})


def test_squad_missing_prediction_scores_zero(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        got = squad_metrics({"a": "yes"}, {"a": ["yes"], "b": ["no"]})
    assert got == pytest.approx({"exact_match": 50.0, "f1": 50.0})
    assert "no prediction" in caplog.text
    with pytest.raises(ValueError):
        squad_metrics({}, {})
    with pytest.raises(ValueError, match="non-empty list"):
        squad_metrics({"a": "x"}, {"a": []})


def test_squad_agrees_with_torchmetrics_on_non_empty_answers() -> None:
    """Independent implementation (torchmetrics) on answers that never normalise to empty."""
    from torchmetrics.functional.text import squad as tm_squad

    rng = np.random.default_rng(2)
    vocab = ["Broncos", "the", "Denver", "50", "Super", "Bowl,", "an", "NFL", "team."]
    refs, preds = {}, {}
    for i in range(200):
        golds = [" ".join(rng.choice(vocab, rng.integers(2, 5))) for _ in range(rng.integers(1, 4))]
        golds = [g for g in golds if normalize_answer(g)] or ["Denver"]
        refs[str(i)] = golds
        preds[str(i)] = " ".join(rng.choice(vocab, rng.integers(1, 5)))
    got = squad_metrics(preds, refs)
    expected = tm_squad(
        [{"id": k, "prediction_text": v} for k, v in preds.items()],
        [{"id": k, "answers": {"text": v, "answer_start": [0] * len(v)}} for k, v in refs.items()],
    )
    assert got["exact_match"] == pytest.approx(float(expected["exact_match"]), abs=1e-3)
    assert got["f1"] == pytest.approx(float(expected["f1"]), abs=1e-3)
    assert 0 < got["f1"] < 100
