"""Resume is bit-exact: a run killed in any stage and resumed exports the same network, weight for
weight, as an uninterrupted run with the same seed; so does a run whose stages ran in several
invocations (``stages=[teacher]``, then the whole command)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from cofi_lightning.run.pipeline import train

from runs import Crash, CrashInValidation, tiny_run_overrides


@pytest.fixture
def tiny_overrides(tiny_bert_dropout_dir, feature_cache):
    """The tiny pipeline on a model with dropout: resume must replay its random numbers."""
    return lambda run_dir: tiny_run_overrides(tiny_bert_dropout_dir, run_dir, feature_cache)


def _overrides(tiny_overrides, run_dir, every: int) -> list[str]:
    out = [o for o in tiny_overrides(run_dir) if not o.startswith("pruning.checkpoint_every")]
    return [*out, f"pruning.checkpoint_every_steps={every}"]


def _assert_same_export(a: dict, b: dict) -> None:
    assert a["structure"] == b["structure"]
    assert a["sparsity"] == b["sparsity"] and a["pruned"] == b["pruned"]
    _assert_same_weights(Path(a["export_dir"]), Path(b["export_dir"]))


def _teacher_dir(results: dict) -> Path:
    return Path(results["export_dir"]).parent / "teacher" / "model"


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=0, msg=key)


def _killed_and_resumed(compose_train, overrides, stage: str, crash: int | L.Callback) -> dict:
    """The results of a run killed in ``stage`` (at optimizer step ``crash``, or by the callback
    ``crash``), then rerun with the same config."""
    cfg = compose_train(overrides)
    killer = Crash(crash) if isinstance(crash, int) else crash
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, extra_callbacks={stage: [killer]})
    return train(cfg)


@pytest.fixture(scope="module")
def _uninterrupted_results() -> dict[tuple, dict]:
    """The uninterrupted runs' results, shared by this file's tests."""
    return {}


@pytest.fixture
def uninterrupted(compose_train, tiny_overrides, tmp_path_factory, _uninterrupted_results):
    """``uninterrupted(checkpoint_every_steps, *overrides)``: the results of an uninterrupted run,
    computed once per arguments."""
    done = _uninterrupted_results

    def get(every: int, *extra: str) -> dict:
        if (every, *extra) not in done:
            run = tmp_path_factory.mktemp("uninterrupted")
            own_teacher = "distill.reuse_teacher=false"  # trained here, whatever ran before
            cfg = compose_train([*_overrides(tiny_overrides, run, every), own_teacher, *extra])
            done[(every, *extra)] = train(cfg)
        return done[(every, *extra)]

    return get


def test_kill_mid_prune_between_checkpoints_resumes_bit_exact(
    compose_train, tiny_overrides, uninterrupted, tmp_path
):
    """Checkpoints every 2 steps, killed after step 5: steps 5 and its dropout are replayed."""
    resumed = _killed_and_resumed(
        compose_train, _overrides(tiny_overrides, tmp_path / "run", 2), "prune", 5
    )
    _assert_same_export(uninterrupted(2), resumed)


def test_kill_in_prune_before_its_first_checkpoint_resumes_bit_exact(
    compose_train, tiny_overrides, uninterrupted, tmp_path
):
    """Killed after the teacher's DONE.json and the teacher cache, before the prune stage's first
    checkpoint: the rerun starts the prune stage from nothing in a process where the teacher did
    not train, and must build the same masks, projection and head as the uninterrupted run."""
    run = tmp_path / "run"
    overrides = _overrides(tiny_overrides, run, 2)
    cfg = compose_train(overrides)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, extra_callbacks={"prune": [Crash(1)]})
    assert (run / "teacher" / "DONE.json").is_file()
    assert not (run / "prune" / "checkpoints").exists()  # the window: nothing to resume from
    _assert_same_export(uninterrupted(2), train(cfg))


def test_kill_during_teacher_validation_resumes_bit_exact(
    compose_train, tiny_overrides, uninterrupted, tmp_path
):
    """Killed while the teacher stage validates at step 2 (a checkpoint step): the resumed stage
    must still see that validation, whose weights the uninterrupted teacher keeps (its later
    validations score no better)."""
    teacher_evals = "distill.teacher_training.eval_every_steps=2"
    overrides = [*_overrides(tiny_overrides, tmp_path / "run", 2), teacher_evals]
    resumed = _killed_and_resumed(compose_train, overrides, "teacher", CrashInValidation())
    expected = uninterrupted(2, teacher_evals)
    _assert_same_weights(_teacher_dir(expected), _teacher_dir(resumed))
    _assert_same_export(expected, resumed)


class _FailIfFits(L.Callback):
    def on_fit_start(self, trainer, module) -> None:
        raise AssertionError("the teacher stage trained a teacher")


def test_later_stage_change_reuses_the_teacher_bit_exact(
    compose_train, tiny_overrides, uninterrupted, tmp_path
):
    """Run A trains the teacher; run B beside it differs in a prune-stage key only: B copies A's
    teacher instead of training one, and exports what B gives with a teacher trained itself."""
    runs = tmp_path / "experiment"
    other_lr = "pruning.lr=3e-5"
    train(compose_train([*_overrides(tiny_overrides, runs / "a", 2), other_lr, "stages=[teacher]"]))
    b = train(
        compose_train(_overrides(tiny_overrides, runs / "b", 2)),
        extra_callbacks={"teacher": [_FailIfFits()]},
    )
    record = json.loads((runs / "b" / "teacher" / "DONE.json").read_text())
    assert record["reused_from"] == str((runs / "a" / "teacher" / "model").resolve())
    _assert_same_weights(runs / "a" / "teacher" / "model", _teacher_dir(b))
    _assert_same_export(uninterrupted(2), b)  # B's config, its own teacher trained


@pytest.mark.slow
def test_teacher_alone_then_whole_command_is_bit_exact(
    compose_train, tiny_overrides, uninterrupted, tmp_path
):
    """``stages=[teacher]`` then the whole command (one process) exports the uninterrupted run."""
    overrides = _overrides(tiny_overrides, tmp_path / "run", 2)
    train(compose_train([*overrides, "stages=[teacher]"]))
    _assert_same_export(uninterrupted(2), train(compose_train(overrides)))


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "step", "every"), [
    ("teacher", 3, 1), ("teacher", 3, 2), ("prune", 4, 1), ("finetune", 3, 1), ("finetune", 3, 2),
])  # fmt: skip
def test_kill_in_every_stage_resumes_bit_exact(
    compose_train, tiny_overrides, uninterrupted, tmp_path, stage, step, every
):
    resumed = _killed_and_resumed(
        compose_train, _overrides(tiny_overrides, tmp_path / "run", every), stage, step
    )
    _assert_same_export(uninterrupted(every), resumed)
