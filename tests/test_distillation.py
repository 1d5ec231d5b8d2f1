"""Tests of the prediction and layer distillation losses and the layer mapping (pure tensors)."""

from __future__ import annotations

import pytest
import torch

from cofi_lightning.config import DistillConfig
from cofi_lightning.config.checks import ConfigError
from cofi_lightning.core.distillation import (
    LayerDistiller,
    distillation_loss,
    dynamic_layer_mapping,
    prediction_distill_loss,
    student_layer_alive,
    teacher_layer_indices,
)
from cofi_lightning.core.masks import Masks

B, S, H = 2, 5, 8


def _states(n_layers: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(B, S, H, generator=gen) for _ in range(n_layers)]


# --- prediction-layer distillation ---------------------------------------------------------------


def test_kl_matches_manual_computation_and_vanishes_on_equal_logits() -> None:
    torch.manual_seed(0)
    student, teacher, temperature = torch.randn(4, 3), torch.randn(4, 3), 2.0
    p_t = torch.softmax(teacher / temperature, dim=-1)
    log_p_s = torch.log_softmax(student / temperature, dim=-1)
    manual = (p_t * (p_t.log() - log_p_s)).sum() / 4 * temperature**2
    torch.testing.assert_close(prediction_distill_loss(student, teacher, temperature), manual)
    zero = prediction_distill_loss(teacher.clone(), teacher, temperature)
    torch.testing.assert_close(zero, torch.tensor(0.0), atol=1e-6, rtol=0)


def test_temperature_scaling() -> None:
    # Scaling both logits and T by k leaves the softmaxes unchanged, so only the T² factor remains.
    torch.manual_seed(1)
    student, teacher, k = torch.randn(3, 4), torch.randn(3, 4), 3.0
    at_one = prediction_distill_loss(student, teacher, 1.0)
    torch.testing.assert_close(prediction_distill_loss(k * student, k * teacher, k), k**2 * at_one)
    # A higher temperature softens both distributions and lowers the raw KL.
    assert prediction_distill_loss(student, teacher, 4.0) / 16 < at_one


def test_qa_loss_is_mean_of_start_and_end() -> None:
    torch.manual_seed(2)
    s_start, s_end, t_start, t_end = torch.randn(4, 2, S).unbind(0)
    qa = prediction_distill_loss((s_start, s_end), (t_start, t_end), 2.0)
    expected = (
        prediction_distill_loss(s_start, t_start, 2.0) + prediction_distill_loss(s_end, t_end, 2.0)
    ) / 2
    torch.testing.assert_close(qa, expected)


def test_regression_uses_mse_independent_of_temperature() -> None:
    student, teacher = torch.tensor([[1.0], [2.0]]), torch.tensor([[1.5], [4.0]])
    expected = torch.tensor((0.25 + 4.0) / 2)
    torch.testing.assert_close(prediction_distill_loss(student, teacher, 2.0), expected)
    torch.testing.assert_close(prediction_distill_loss(student, teacher, 7.0), expected)


def test_prediction_loss_gradient_reaches_student_only() -> None:
    student = torch.randn(2, 3, requires_grad=True)
    teacher = torch.randn(2, 3, requires_grad=True)
    prediction_distill_loss(student, teacher, 2.0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_prediction_loss_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="shapes"):
        prediction_distill_loss(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)
    with pytest.raises(TypeError):
        prediction_distill_loss((torch.zeros(2, 3),), torch.zeros(2, 3), 1.0)


def test_distillation_loss_weights() -> None:
    pred, layer = torch.tensor(2.0), torch.tensor(10.0)
    torch.testing.assert_close(distillation_loss(pred, layer), torch.tensor(0.1 * 2 + 0.9 * 10))
    torch.testing.assert_close(
        distillation_loss(pred, layer, alpha_pred=0.5, alpha_layer=0.5), torch.tensor(6.0)
    )
    torch.testing.assert_close(distillation_loss(pred, None, alpha_pred=1.0), pred)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"temperature": 0.0}, "distill.temperature"),
        ({"alpha_pred": -0.1}, "distill.alpha_pred"),
        ({"alpha_layer": -0.1}, "distill.alpha_layer"),
        ({"layer_mapping": "v4"}, "distill.layer_mapping"),
        ({"layer_loss_tokens": "some", "teacher_cache": False}, "distill.layer_loss_tokens"),
    ],
)
def test_bad_distillation_settings_fail_at_the_door(values: dict, key: str) -> None:
    """The loss functions trust these values: the config refuses them, naming the key."""
    with pytest.raises(ConfigError, match=key):
        DistillConfig(**values)


# --- which layers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_layers", "expected"),
    [(12, [2, 5, 8, 11]), (6, [2, 5]), (4, [0, 3]), (2, [1]), (1, [0])],
)
def test_teacher_layer_indices(n_layers: int, expected: list[int]) -> None:
    assert teacher_layer_indices(n_layers) == expected


def test_teacher_layer_indices_rejects_empty() -> None:
    with pytest.raises(ValueError):
        teacher_layer_indices(0)


def test_layer_alive_if_attention_or_ffn_kept() -> None:
    head_layer = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.3])
    mlp = torch.tensor([0.0, 0.7, 0.0, 1.0, 0.0])
    head = torch.ones(5, 2)
    head[4] = 0.0  # layer 4: MHA gate open but every head pruned, and FFN gate closed.
    alive = student_layer_alive(5, Masks(head_layer=head_layer, head=head, mlp=mlp))
    # Layer 1 has a dead attention but a live FFN: the original (MHA-only) check dropped it (#53).
    assert alive.tolist() == [True, True, False, True, False]
    intermediate = torch.ones(5, 3)
    intermediate[1] = 0.0
    masks = Masks(head_layer=head_layer, mlp=mlp, intermediate=intermediate)
    assert not student_layer_alive(5, masks)[1]
    assert student_layer_alive(3, Masks()).all()


# --- dynamic mapping on cost matrices ------------------------------------------------------------


def _check_monotone(chosen: torch.Tensor, alive: torch.Tensor) -> None:
    """Non-decreasing bottom-up; a repeat only when no alive layer lies below the upper match."""
    idx = chosen.tolist()
    for lower, upper in zip(idx[:-1], idx[1:], strict=True):
        assert lower <= upper
        if lower == upper:
            assert not alive[:upper].any()


def test_dynamic_mapping_is_monotone_and_in_range_on_random_costs() -> None:
    gen = torch.Generator().manual_seed(3)
    for _ in range(50):
        n_student = int(torch.randint(1, 8, (1,), generator=gen))
        cost = torch.rand(4, n_student, generator=gen)
        alive = torch.rand(n_student, generator=gen) < 0.6
        chosen = dynamic_layer_mapping(cost, alive)
        assert chosen.shape == (4,) and chosen.dtype == torch.long
        assert ((chosen >= 0) & (chosen < n_student)).all()
        if alive.any():
            assert alive[chosen].all()
        _check_monotone(chosen, alive)


def test_dynamic_mapping_strictly_decreasing_when_enough_layers() -> None:
    # Cheapest pairing 2->2, 5->5, 8->8, except the top teacher layer, whose best match is 10.
    cost = torch.full((4, 12), 5.0)
    cost[torch.arange(4), torch.tensor([2, 5, 8, 11])] = 0.0
    cost[3, 11], cost[3, 10] = 10.0, 1.0
    chosen = dynamic_layer_mapping(cost)
    assert chosen.tolist() == [2, 5, 8, 10]
    assert (chosen.diff() > 0).all()


def test_dynamic_mapping_skips_dead_layers() -> None:
    cost = torch.tensor([[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0]])
    head_layer = torch.tensor([1.0, 1.0, 0.0, 0.0])
    mlp = torch.tensor([1.0, 1.0, 1.0, 0.0])  # layer 3 fully dead; layer 2 only lost attention
    alive = student_layer_alive(4, Masks(head_layer=head_layer, mlp=mlp))
    assert dynamic_layer_mapping(cost, alive).tolist() == [0, 2]
    # Even the cheapest dead layer is never picked while an alive one qualifies.
    assert dynamic_layer_mapping(cost, torch.tensor([True, True, False, False])).tolist() == [0, 1]


def test_dynamic_mapping_all_dead_or_too_few_alive_does_not_crash() -> None:
    cost = torch.rand(4, 3)
    assert dynamic_layer_mapping(cost, torch.zeros(3, dtype=torch.bool)).tolist() == [2, 2, 2, 2]
    assert dynamic_layer_mapping(cost, torch.tensor([True, False, False])).tolist() == [0, 0, 0, 0]
    one = dynamic_layer_mapping(torch.rand(4, 1))
    assert one.tolist() == [0, 0, 0, 0]
    nan_cost = torch.full((2, 3), float("nan"))
    assert dynamic_layer_mapping(nan_cost, torch.tensor([False, True, False])).tolist() == [1, 1]


# --- LayerDistiller ------------------------------------------------------------------------------


def test_projection_starts_as_identity() -> None:
    x = torch.randn(B, S, H)
    torch.testing.assert_close(LayerDistiller(H).projection(x), x)


@pytest.mark.parametrize("mapping", ["dynamic", "fixed"])
def test_known_pairing_gives_that_mapping_and_zero_loss(mapping: str) -> None:
    teacher = _states(12, seed=4)
    student = _states(6, seed=5)
    # Relative-depth pairing for 12 -> 6 layers, which is also the unique zero-cost pairing.
    for t_layer, s_layer in [(2, 0), (5, 2), (8, 3), (11, 5)]:
        student[s_layer] = teacher[t_layer].clone()
    loss, chosen = LayerDistiller(H)(student, teacher, mapping=mapping)
    assert chosen.tolist() == [0, 2, 3, 5]
    torch.testing.assert_close(loss, torch.tensor(0.0), atol=1e-6, rtol=0)


def test_fixed_mapping_equal_depth_is_identity_and_ignores_alive() -> None:
    teacher, student = _states(6, seed=6), _states(6, seed=7)
    alive = torch.tensor([True, True, False, True, True, False])
    _, chosen = LayerDistiller(H)(student, teacher, student_alive=alive, mapping="fixed")
    assert chosen.tolist() == [2, 5]


def test_dynamic_forward_avoids_dead_best_layer_and_survives_all_dead() -> None:
    teacher, student = _states(3, seed=8), _states(4, seed=9)
    student[3] = teacher[2].clone()  # the exact match...
    distiller = LayerDistiller(H, teacher_layers=[2])
    alive = torch.tensor([True, True, True, False])  # ...is dead
    loss, chosen = distiller(student, teacher, student_alive=alive)
    assert chosen.item() != 3 and loss > 0
    loss, chosen = distiller(student, teacher, student_alive=torch.zeros(4, dtype=torch.bool))
    assert chosen.item() == 3 and torch.isfinite(loss)


def test_padding_tokens_do_not_affect_the_loss() -> None:
    teacher, student = _states(6, seed=10), _states(6, seed=11)
    attention_mask = torch.ones(B, S, dtype=torch.long)
    attention_mask[0, 3:] = 0
    attention_mask[1, 4:] = 0
    distiller = LayerDistiller(H)
    loss, chosen = distiller(student, teacher, attention_mask)
    noisy_student = [h.clone() for h in student]
    for h in noisy_student:
        h[attention_mask == 0] = 1e3
    noisy_loss, noisy_chosen = distiller(noisy_student, teacher, attention_mask)
    torch.testing.assert_close(noisy_loss, loss)
    assert noisy_chosen.tolist() == chosen.tolist()
    # And the value is the mean over real tokens only (identity projection at init).
    keep = attention_mask.bool()
    manual = sum(
        (student[j][keep] - teacher[i][keep]).pow(2).mean()
        for i, j in zip([2, 5], chosen.tolist(), strict=True)
    )
    torch.testing.assert_close(loss, manual)


def test_gradient_flows_to_projection_and_selected_student_states() -> None:
    teacher = [h.requires_grad_() for h in _states(6, seed=12)]
    student = [h.requires_grad_() for h in _states(6, seed=13)]
    distiller = LayerDistiller(H)
    loss, chosen = distiller(student, teacher)
    loss.backward()
    assert distiller.projection.weight.grad.abs().sum() > 0
    assert distiller.projection.bias.grad.abs().sum() > 0
    for j, h in enumerate(student):
        # The argmin is not differentiated: only the selected layers receive gradient.
        assert (h.grad is not None and h.grad.abs().sum() > 0) == (j in chosen.tolist())
    assert all(h.grad is None for h in teacher)


def test_prune_hidden_keeps_output_dims_and_matches_masked_input() -> None:
    torch.manual_seed(14)
    distiller = LayerDistiller(H)
    with torch.no_grad():
        distiller.projection.weight.add_(0.1 * torch.randn(H, H))
    keep = torch.tensor([0, 2, 3, 7])
    x = torch.randn(B, S, H)
    x_masked = torch.zeros_like(x)
    x_masked[..., keep] = x[..., keep]
    before = distiller.projection(x_masked)
    new = distiller.prune_hidden(keep)
    assert distiller.projection is new
    assert (new.in_features, new.out_features) == (4, H)
    torch.testing.assert_close(new(x[..., keep]), before)
    teacher = _states(3, seed=15)
    loss, _ = distiller([h[..., keep] for h in _states(3, seed=16)], teacher)
    assert torch.isfinite(loss)


def test_layer_distiller_rejects_bad_arguments() -> None:
    teacher, student = _states(3, seed=17), _states(3, seed=18)
    with pytest.raises(ValueError, match="teacher layers"):
        LayerDistiller(H, teacher_layers=[5])(student, teacher)
    with pytest.raises(ValueError, match="teacher_layers"):
        LayerDistiller(H, teacher_layers=[])
