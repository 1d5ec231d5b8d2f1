"""The CoFi system on tiny random models: losses, parameter groups, mask sampling, multipliers."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from cofi_lightning.config import DistillConfig, PruningConfig, StageConfig
from cofi_lightning.core.distillation import LayerDistiller
from cofi_lightning.core.masks import CoFiMasks
from cofi_lightning.training.lit_module import CoFiSystem
from cofi_lightning.training.parts import Distillation, Pruning


def distillation(teacher, config: DistillConfig | None = None) -> Distillation:
    """Distillation from ``teacher`` with layer distillation, as the prune stage builds it."""
    config = config or DistillConfig()
    return Distillation(teacher, config, LayerDistiller(teacher.config.hidden_size))


def pruning_system(student, teacher, target=0.5, **schedule) -> CoFiSystem:
    schedule = {"lagrangian_warmup_steps": 0, "pre_pruning_steps": 0, **schedule}
    stage = PruningConfig(lr=1e-3, reg_lr=0.1, target_sparsity=target, **schedule)
    return CoFiSystem(
        student,
        task="sst2",
        stage=stage,
        objective=distillation(teacher),
        pruning=Pruning(CoFiMasks(student.config), stage, seed=3),
    )


class Recorder(L.Callback):
    """Keeps ``(global_step, masks)`` of every training batch."""

    def __init__(self) -> None:
        self.seen: list = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.seen.append((batch_idx, module.global_step, module.current_masks))


def test_masks_sampled_once_per_optimizer_step(make_student, make_trainer, synthetic_dm):
    system = pruning_system(make_student(), make_student(seed=1))
    rec = Recorder()
    trainer = make_trainer(max_steps=2, accumulate_grad_batches=2, callbacks=[rec])
    trainer.fit(system, synthetic_dm)
    assert system.pruning.mask_draws == trainer.global_step == 2
    (_, _, a), (_, _, b), (_, _, c), _ = rec.seen
    for (_, x), (_, y) in zip(a.items(), b.items(), strict=True):
        torch.testing.assert_close(x, y)  # both micro-batches of step 0: one sample
    assert any(not torch.equal(x, y) for (_, x), (_, y) in zip(b.items(), c.items(), strict=True))


def test_multiplier_ascent_grows_penalty(make_student, make_trainer, synthetic_dm):
    system = pruning_system(make_student(), make_student(seed=1), target=0.6)
    with torch.no_grad():
        s_hat = system.masks.expected_sparsity().float()
        assert float(system.multipliers(s_hat, 0.6)) == 0.0
    assert s_hat < 0.6  # off target (below) at the start
    make_trainer(max_steps=1).fit(system, synthetic_dm)
    lam1, lam2 = system.multipliers.lambda_1.item(), system.multipliers.lambda_2.item()
    assert lam1 < 0 < lam2  # ascent: λ1 drifts negative while ŝ < t, λ2 only grows
    with torch.no_grad():
        assert float(system.multipliers(s_hat, 0.6)) > 0.0  # the penalty grew


def test_teacher_frozen_out_of_optimizer_and_checkpoint(
    make_student, make_trainer, synthetic_dm, tmp_path
):
    teacher = make_student(seed=1)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    system = pruning_system(make_student(), teacher)
    trainer = make_trainer(max_steps=2, default_root_dir=tmp_path)
    trainer.fit(system, synthetic_dm)
    optimizer = trainer.optimizers[0]
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not in_optimizer & {id(p) for p in teacher.parameters()}
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, before[k])
    names = {g["name"] for g in optimizer.param_groups}
    assert names == {"weights", "weights_no_decay", "log_alpha", "multipliers"}
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["multipliers"]["maximize"] and not groups["log_alpha"]["maximize"]
    path = tmp_path / "x.ckpt"
    trainer.save_checkpoint(path)
    keys = torch.load(path, weights_only=False)["state_dict"].keys()
    assert keys and not any("teacher" in k for k in keys)
    assert any(k.startswith("masks.") for k in keys) and "multipliers.lambda_1" in keys


def test_log_alphas_clamped_and_pre_pruning_honoured(make_student, make_trainer, synthetic_dm):
    system = pruning_system(make_student(), make_student(seed=1), pre_pruning_steps=2)
    rec = Recorder()
    make_trainer(max_steps=3, callbacks=[rec]).fit(system, synthetic_dm)
    assert [m is None for _, _, m in rec.seen] == [True, True, False]
    assert system.pruning.mask_draws == 1
    for p in system.masks.mask_parameters():
        assert p.max() <= 4.6052 and p.min() >= -4.6052


def test_task_loss_without_teacher_and_validation_metrics(make_student, make_trainer, synthetic_dm):
    system = CoFiSystem(make_student(), task="sst2", stage=StageConfig(lr=1e-3))
    trainer = make_trainer(max_epochs=1)
    trainer.fit(system, synthetic_dm)
    assert system.layer_distiller is None
    assert set(system.last_val_metrics) == {"val/accuracy"}
    assert system.main_metric_key() == "val/accuracy"
    assert 0.0 <= trainer.callback_metrics["val/accuracy"] <= 100.0


@pytest.mark.parametrize("mapping", ["dynamic", "fixed"])
def test_distillation_step_runs(make_student, make_trainer, synthetic_dm, mapping):
    student = make_student(num_hidden_layers=4)
    system = CoFiSystem(
        student,
        task="sst2",
        stage=StageConfig(lr=1e-3),
        objective=distillation(
            make_student(seed=1, num_hidden_layers=4), DistillConfig(layer_mapping=mapping)
        ),
    )
    trainer = make_trainer(max_steps=1)
    trainer.fit(system, synthetic_dm)
    for key in ("train/loss", "train/distill_loss", "train/layer_loss", "train/pred_loss"):
        assert torch.isfinite(trainer.callback_metrics[key])
    assert system.layer_distiller.projection.weight.grad is not None
    # The matched student layer of each distilled teacher layer (teacher layers 0 and 3 of 4).
    matched = [
        int(trainer.callback_metrics[f"distill/student_layer_for_teacher_{t}"]) for t in (0, 3)
    ]
    if mapping == "fixed":
        assert matched == [0, 3]
    else:  # matched top-down: a lower teacher layer never gets a higher student layer
        assert 0 <= matched[0] <= matched[1] <= 3


def test_best_weights_restores_the_best_validation(
    make_student, synthetic_dm, make_trainer, tmp_path
):
    """Teacher / finetune keep the weights of the best validation, not the last ones."""
    from cofi_lightning.training.callbacks import BestWeights

    class Snapshots(L.Callback):
        def __init__(self) -> None:
            self.items: list[tuple[float, dict]] = []

        def on_validation_end(self, trainer, module) -> None:
            state = {k: v.clone() for k, v in module.student.state_dict().items()}
            self.items.append((module.last_val_metrics["val/accuracy"], state))

    system = CoFiSystem(make_student(), task="sst2", stage=StageConfig(lr=5e-3))
    best, snaps = BestWeights(tmp_path / "best.pt"), Snapshots()
    trainer = make_trainer(max_steps=8, val_check_interval=1, callbacks=[best, snaps])
    trainer.fit(system, datamodule=synthetic_dm)
    scores = [score for score, _ in snaps.items]
    assert len(scores) == 8 and best.best == max(scores)
    expected = snaps.items[scores.index(max(scores))][1]  # the first best wins ties
    assert best.restore(system)
    for name, value in system.student.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0)
