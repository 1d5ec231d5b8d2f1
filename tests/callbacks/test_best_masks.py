"""Pruning-stage selection: best metric inside |ŝ − t| <= ε, else the evaluation closest to t."""

from __future__ import annotations

import json
from types import SimpleNamespace

from transformers import BertConfig

from cofi_lightning.core.constraint import ParamsConstraint
from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.modeling import CoFiBertConfig, CoFiBertForSequenceClassification
from cofi_lightning.training.callbacks import BestMasksCheckpoint

from tiny_bert import tiny_bert_kwargs


class FakeSystem:
    """The parts of ``CoFiSystem`` the callback reads."""

    def __init__(self) -> None:
        config = CoFiBertConfig.from_bert_config(BertConfig(**tiny_bert_kwargs()), num_labels=2)
        self.student = CoFiBertForSequenceClassification(config)
        self.masks = CoFiMasks(config)
        self.constraint = ParamsConstraint(0.6)
        self.layer_distiller = None
        self.last_val_metrics: dict[str, float] = {}

    def pruning_active(self) -> bool:
        return True

    def main_metric_key(self) -> str:
        return "val/accuracy"


def _evaluate(cb, system, step: int, expected: float, accuracy: float, real=None) -> None:
    """One evaluation; ``real`` (the deterministic masks' sparsity) defaults to ``expected``."""
    system.last_val_metrics = {
        "val/accuracy": accuracy,
        "sparsity/expected_at_eval": expected,
        "sparsity/deterministic": expected if real is None else real,
    }
    trainer = SimpleNamespace(sanity_checking=False, global_step=step, is_global_zero=True)
    cb.on_validation_end(trainer, system)


def _meta(tmp_path) -> dict:
    return json.loads((tmp_path / "meta.json").read_text())


def test_overshooting_evaluations_never_win(tmp_path):
    cb, system = BestMasksCheckpoint(tmp_path, target_sparsity=0.6, epsilon=0.01), FakeSystem()
    _evaluate(cb, system, 100, expected=0.40, accuracy=90.0)  # below: the closest so far
    assert _meta(tmp_path)["step"] == 100 and not _meta(tmp_path)["reached_target"]
    _evaluate(cb, system, 200, expected=0.595, accuracy=80.0)  # inside the window
    _evaluate(cb, system, 300, expected=0.605, accuracy=82.0)  # inside, better
    _evaluate(cb, system, 400, expected=0.70, accuracy=95.0)  # overshoot: CoFi would take it
    meta = _meta(tmp_path)
    assert (meta["step"], meta["metric"], meta["reached_target"]) == (300, 82.0, True)
    assert cb.best == 82.0 and cb.best_step == 300


def test_without_a_qualifying_evaluation_the_closest_is_kept(tmp_path):
    cb, system = BestMasksCheckpoint(tmp_path, target_sparsity=0.6, epsilon=0.01), FakeSystem()
    for step, expected in ((100, 0.3), (200, 0.57), (300, 0.66), (400, 0.72)):
        _evaluate(cb, system, step, expected=expected, accuracy=float(step))
    cb.finalize(SimpleNamespace(global_step=400, is_global_zero=True), system)
    meta = _meta(tmp_path)
    assert (meta["step"], meta["reached_target"]) == (200, False)
    assert (tmp_path / "masks.pt").is_file() and (tmp_path / "student.pt").is_file()


def test_the_window_reads_the_exported_sparsity_not_the_expected_one(tmp_path):
    """ŝ = 0.594 is inside 0.6 ± 0.01, but the deterministic masks (what is exported) keep
    more: 0.553. Selected on the real sparsity by default; CoFi's choice on request."""
    real, expected = BestMasksCheckpoint(tmp_path / "real", 0.6, 0.01), FakeSystem()
    _evaluate(real, expected, 100, expected=0.594, accuracy=90.0, real=0.553)
    _evaluate(real, expected, 200, expected=0.610, accuracy=80.0, real=0.598)
    assert real.best_step == 200 and _meta(tmp_path / "real")["step"] == 200
    cofi = BestMasksCheckpoint(tmp_path / "cofi", 0.6, 0.01, select_on="expected")
    system = FakeSystem()
    _evaluate(cofi, system, 100, expected=0.594, accuracy=90.0, real=0.553)
    _evaluate(cofi, system, 200, expected=0.610, accuracy=80.0, real=0.598)
    assert cofi.best_step == 100
