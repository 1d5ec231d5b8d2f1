"""Distillation losses of CoFi (Xia et al. 2022, Sec. 3.2): prediction-layer KL and layer-wise MSE
``Σ_i MSE(W h_s[m(i)], h_t[i])`` with a learned projection W and a dynamic or fixed mapping m.

It runs no model and samples no masks (the Lightning system does). Hidden-state sequences hold the
per-layer outputs without the embedding output (``hidden_states[1:]``), each ``[B, S, H]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cofi_lightning.core.masks.types import Masks
from cofi_lightning.modeling.pruning import linear_part
from cofi_lightning.modeling.structure import sublayer_alive, sublayer_masks

LayerMapping = Literal["dynamic", "fixed"]


def _single_prediction_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    if student.shape != teacher.shape:
        raise ValueError(
            f"logit shapes differ: student {tuple(student.shape)}, teacher {tuple(teacher.shape)}"
        )
    # Upcast: log-softmax and squared errors in bf16 lose most of the signal of small differences.
    student, teacher = student.float(), teacher.detach().float()
    if student.shape[-1] == 1:
        # Regression (STS-B): a softmax over one logit is always 1, so the KL would be 0 for any
        # prediction and give no signal at all. Match the teacher's score directly instead; the
        # temperature has no meaning for a single value.
        return F.mse_loss(student, teacher)
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher / temperature, dim=-1)
    # KL(p_teacher ‖ p_student) summed over classes, averaged over the batch (dim 0); the T² factor
    # keeps the gradient scale independent of T (Hinton et al. 2015).
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def prediction_distill_loss(
    student_logits: Tensor | Sequence[Tensor],
    teacher_logits: Tensor | Sequence[Tensor],
    temperature: float = 2.0,
) -> Tensor:
    """Prediction-layer distillation L_pred = T² · KL(softmax(z_t / T) ‖ softmax(z_s / T)).

    Args:
        student_logits: ``[B, C]`` logits (``[B, 1]`` for regression: MSE instead), or a tuple
            such as QA's ``(start [B, S], end [B, S])``, whose per-tensor losses are averaged.
        teacher_logits: Same structure and shapes as ``student_logits``; detached.
        temperature: Softmax temperature T > 0 (2 in CoFi's scripts).
    """
    if isinstance(student_logits, Tensor) and isinstance(teacher_logits, Tensor):
        return _single_prediction_loss(student_logits, teacher_logits, temperature)
    if isinstance(student_logits, Tensor) or isinstance(teacher_logits, Tensor):
        raise TypeError("pass both logits as tensors or both as sequences of tensors")
    if len(student_logits) != len(teacher_logits) or not student_logits:
        raise ValueError(
            "student and teacher logit sequences must be non-empty and of equal length"
        )
    losses = [
        _single_prediction_loss(s, t, temperature)
        for s, t in zip(student_logits, teacher_logits, strict=True)
    ]
    return torch.stack(losses).mean()


def teacher_layer_indices(num_teacher_layers: int, every: int = 3) -> list[int]:
    """0-based indices of the distilled teacher layers, every ``every``-th from the top.

    Counting from the top always keeps the last layer: 12 layers give ``[2, 5, 8, 11]`` (CoFi's
    choice), 6 give ``[2, 5]``, 4 give ``[0, 3]``, 2 give ``[1]``.
    """
    if num_teacher_layers < 1 or every < 1:
        raise ValueError(
            f"need num_teacher_layers >= 1 and every >= 1, got {num_teacher_layers}, {every}"
        )
    return list(range(num_teacher_layers - 1, -1, -every))[::-1]


def student_layer_alive(num_layers: int, masks: Masks) -> Tensor:
    """Bool ``[L]``: the student layers whose attention OR FFN sublayer is alive.

    The original tested only the attention mask although the matched states are FFN outputs
    (CoFiPruning issue #53). A mask that is None counts as all ones.
    """
    device = next((t.device for _, t in masks.items()), None)
    alive = torch.zeros(num_layers, dtype=torch.bool, device=device)
    for layer, units in sublayer_masks(masks):
        sublayer = sublayer_alive(*(None if m is None else m != 0 for m in (layer, units)))
        alive = alive | (True if sublayer is None else sublayer)
    return alive


def dynamic_layer_mapping(cost: Tensor, student_alive: Tensor | None = None) -> Tensor:
    """CoFi's dynamic layer mapping (its "v4"), with the existence and out-of-range bugs fixed.

    Teacher layers are matched top-down; each takes the lowest-cost alive student layer strictly
    below the previous match (first bound: L_s), else reuses the previous match (the last student
    layer if none is alive). Ineligible entries are masked to +inf, so no index leaves
    ``[0, L_s)`` (the original indexed column L_s, a plausible cause of CoFiPruning issue #27).
    Tensor ops only: no host sync.

    Args:
        cost: ``[n_t, L_s]`` MSE of teacher layer k (increasing depth) against student layer j.
        student_alive: Bool ``[L_s]``; None means all alive.

    Returns:
        LongTensor ``[n_t]``: the student layer matched to each teacher layer.
    """
    cost = cost.detach()
    n_teacher, n_student = cost.shape
    # Finite costs only (NaN and inf become the largest float), so that an argmin over a row with
    # any eligible entry always picks one of them rather than a masked +inf entry.
    cost = cost.float().nan_to_num(nan=torch.finfo(torch.float32).max)
    positions = torch.arange(n_student, device=cost.device)
    alive = (
        torch.ones(n_student, dtype=torch.bool, device=cost.device)
        if student_alive is None
        else student_alive.to(device=cost.device, dtype=torch.bool)
    )
    bound = torch.tensor(n_student, device=cost.device)  # exclusive upper bound on the next match
    previous = torch.tensor(n_student - 1, device=cost.device)  # fallback if nothing qualifies
    chosen: list[Tensor] = []
    for k in reversed(range(n_teacher)):
        eligible = alive & (positions < bound)
        best = cost[k].masked_fill(~eligible, float("inf")).argmin()
        previous = bound = torch.where(eligible.any(), best, previous)
        chosen.append(previous)
    return torch.stack(chosen[::-1])


def _masked_mse(pred: Tensor, target: Tensor, token_weights: Tensor | None) -> Tensor:
    """MSE of ``pred [..., B, S, H]`` over the tokens ``token_weights [B, S]`` (None: all) and
    hidden dims; leading dims are kept."""
    per_token = (pred.float() - target.float()).pow(2).mean(dim=-1)  # [..., B, S]
    if token_weights is None:
        return per_token.mean(dim=(-2, -1))
    return (per_token * token_weights).sum(dim=(-2, -1)) / token_weights.sum().clamp_min(1.0)


class LayerDistiller(nn.Module):
    """Layer-wise distillation L_layer = Σ_i MSE(W h_s[m(i)], h_t[i]).

    W is one ``nn.Linear(H, H)`` shared by all student layers, initialised to the identity so the
    loss starts as the plain MSE between hidden states.

    Args:
        hidden_size: H, the hidden size of student and teacher.
        teacher_layers: 0-based teacher layers to distil; None: :func:`teacher_layer_indices`.
    """

    def __init__(self, hidden_size: int, teacher_layers: Sequence[int] | None = None) -> None:
        super().__init__()
        if teacher_layers is not None and (not teacher_layers or min(teacher_layers) < 0):
            raise ValueError(f"`teacher_layers` must be non-empty and >= 0, got {teacher_layers!r}")
        self.teacher_layers = None if teacher_layers is None else sorted(teacher_layers)
        self.projection = nn.Linear(hidden_size, hidden_size)
        with torch.no_grad():
            self.projection.weight.copy_(torch.eye(hidden_size))
            self.projection.bias.zero_()

    def distilled_layers(self, num_teacher_layers: int) -> list[int]:
        if self.teacher_layers is not None:
            return self.teacher_layers
        return teacher_layer_indices(num_teacher_layers)

    def forward(
        self,
        student_hidden: Sequence[Tensor],
        teacher_hidden: Sequence[Tensor],
        attention_mask: Tensor | None = None,
        student_alive: Tensor | None = None,
        mapping: LayerMapping = "dynamic",
        *,
        tokens: Literal["real", "all"] = "real",
        num_teacher_layers: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(loss, [n_t] student layer matched to each distilled teacher layer)``.

        Dynamic mapping (m(i) = argmin_j MSE(W h_s[j], h_t[i]), made monotone as in CoFi) selects
        on a detached ``[n_t, L_s]`` MSE matrix; the gradient flows only through the selected
        terms. Fixed mapping (the paper's non-adaptive ablation) pairs teacher layer i with student
        layer ``(i + 1) · L_s // L_t − 1`` and ignores ``student_alive``.

        Args:
            student_hidden: L_s tensors ``[B, S, H_s]``.
            teacher_hidden: L_t tensors ``[B, S, H]``, or only the distilled ones when
                ``num_teacher_layers`` is given (e.g. from the teacher cache).
            attention_mask: ``[B, S]``, nonzero for real tokens; None means all tokens count.
            student_alive: Bool ``[L_s]`` from :func:`student_layer_alive`; None means all alive.
            tokens: Average the MSE over ``real`` tokens or over ``all`` positions, padding
                included (the original's choice).
        """
        n_student = len(student_hidden)
        n_teacher_total = num_teacher_layers or len(teacher_hidden)
        layers = self.distilled_layers(n_teacher_total)
        if n_student < 1 or not all(0 <= i < n_teacher_total for i in layers):
            raise ValueError(f"teacher layers {layers} vs {n_teacher_total} teacher layers")
        if num_teacher_layers is None:
            teacher_hidden = [teacher_hidden[i] for i in layers]
        elif len(teacher_hidden) != len(layers):
            raise ValueError(
                f"{len(teacher_hidden)} teacher states given for distilled layers {layers}"
            )
        if isinstance(teacher_hidden, Tensor):
            teacher = teacher_hidden.detach()  # [n_t, B, S, H]
        else:
            teacher = torch.stack(list(teacher_hidden)).detach()  # [n_t, B, S, H]
        s_shape, t_shape = tuple(student_hidden[0].shape), tuple(teacher.shape[1:])
        proj = self.projection
        dims = (proj.in_features, proj.out_features)
        if s_shape[:-1] != t_shape[:-1] or (s_shape[-1], t_shape[-1]) != dims:
            raise ValueError(
                f"student {s_shape} vs teacher {t_shape} hidden states; the projection maps "
                f"{proj.in_features} -> {proj.out_features} dims"
            )
        weights = None
        if attention_mask is not None and tokens == "real":
            weights = (attention_mask != 0).to(torch.float32)

        if mapping == "fixed":
            indices = [max(0, (i + 1) * n_student // n_teacher_total - 1) for i in layers]
            selected = torch.stack([student_hidden[j] for j in indices])  # [n_t, B, S, H_s]
            chosen = torch.tensor(indices, device=teacher.device)
        else:
            stacked = torch.stack(list(student_hidden))  # [L_s, B, S, H_s]
            with torch.no_grad():  # selection only: [n_t, L_s], one [L_s, B, S, H] diff at a time
                projected = self.projection(stacked)
                cost = torch.stack([_masked_mse(projected, t, weights) for t in teacher])
            chosen = dynamic_layer_mapping(cost, student_alive)
            # Project again with gradients, only the n_t selected layers (not all L_s).
            selected = stacked.index_select(0, chosen)  # [n_t, B, S, H_s]
        return _masked_mse(self.projection(selected), teacher, weights).sum(), chosen

    @torch.no_grad()
    def prune_hidden(self, keep_index: Tensor) -> nn.Linear:
        """Keep the projection's input dims ``keep_index [H_kept]``; returns the new layer (rebuild
        any optimizer holding the old one)."""
        keep = keep_index.to(self.projection.weight.device, torch.long)
        self.projection = linear_part(self.projection, cols=keep)
        return self.projection


def distillation_loss(
    pred_loss: Tensor,
    layer_loss: Tensor | None = None,
    *,
    alpha_pred: float = 0.1,
    alpha_layer: float = 0.9,
) -> Tensor:
    """``α_layer · L_layer + α_pred · L_pred`` (Xia et al. 2022, Sec. 3.2); ``layer_loss`` None
    (layer distillation off) contributes 0. With a teacher, CoFi uses no ground-truth loss."""
    total = alpha_pred * pred_loss
    return total if layer_loss is None else total + alpha_layer * layer_loss
