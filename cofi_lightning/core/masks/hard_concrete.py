"""Hard-concrete gates (Louizos, Welling & Kingma 2018) with CoFi's constants and evaluation rule:
one gate tensor, nothing of models or parameter counts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class GateConstants:
    """Hard-concrete hyperparameters; the defaults are CoFi's.

    Attributes:
        limit_l, limit_r: The stretch interval (l, r in Louizos et al., Eq. 9).
        temperature: Concrete temperature beta.
        eps: Keeps the uniform noise away from 0 and 1.
        eval_factor: CoFi's "magical number" scaling log-alpha in the soft evaluation score.
        log_alpha_clamp: Log-alphas are clamped to ``[-clamp, clamp]`` after every step.
        init_std: Standard deviation of the normal log-alpha initialisation.
    """

    limit_l: float = -0.1
    limit_r: float = 1.1
    temperature: float = 2.0 / 3.0
    eps: float = 1e-6
    eval_factor: float = 0.8
    log_alpha_clamp: float = math.log(1e2)
    init_std: float = 0.01


class HardConcreteGate(nn.Module):
    """A tensor of independent hard-concrete gates, e.g. ``[L, N]`` for heads, ``[L, 1]`` for
    whole sublayers, ``[1, H]`` for hidden.

    The last dimension is the group in which the deterministic mask keeps a rounded expected
    count (CoFi decides heads and FFN dimensions per layer, the hidden dims globally).
    """

    def __init__(self, shape: tuple[int, ...], init_log_alpha: float, constants: GateConstants):
        super().__init__()
        self.constants = constants
        self.log_alpha = nn.Parameter(torch.empty(shape))
        nn.init.normal_(self.log_alpha, mean=float(init_log_alpha), std=constants.init_std)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp log-alpha in place; called after every optimizer step, as in CoFi."""
        c = self.constants.log_alpha_clamp
        self.log_alpha.clamp_(-c, c)

    def prob_nonzero(self) -> torch.Tensor:
        """P(z > 0) = 1 - Q(s <= x0 | log_alpha), x0 = -l / (r - l) (Louizos et al., Eq. 12)."""
        c = self.constants
        x0 = (0.0 - c.limit_l) / (c.limit_r - c.limit_l)
        cdf_at_zero = torch.sigmoid(math.log(x0 / (1.0 - x0)) * c.temperature - self.log_alpha)
        return (1.0 - cdf_at_zero).clamp(c.eps, 1.0 - c.eps)

    def sample(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        """A differentiable training sample z in [0, 1] (Louizos et al., Eq. 10) from uniform
        ``noise`` of the gate shape (drawn here when None)."""
        c = self.constants
        if noise is None:
            noise = torch.rand_like(self.log_alpha)
        u = noise.clamp(c.eps, 1.0 - c.eps)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / c.temperature)
        return (s * (c.limit_r - c.limit_l) + c.limit_l).clamp(0.0, 1.0)

    @torch.no_grad()
    def soft_score(self) -> torch.Tensor:
        """``sigmoid(log_alpha / beta * eval_factor)``: the order deterministic masks keep gates
        in, and the value a kept gate takes."""
        c = self.constants
        return torch.sigmoid(self.log_alpha / c.temperature * c.eval_factor)

    def deterministic(self) -> torch.Tensor:
        """CoFi's evaluation mask: per group, the ``round(size - sum P(z > 0))`` gates of least
        :meth:`soft_score` are zeroed and the rest keep their soft score (not 1); no host sync."""
        size = self.log_alpha.shape[-1]
        soft = self.soft_score()
        num_zeros = torch.round(size - self.prob_nonzero().sum(-1, keepdim=True))  # [..., 1]
        rank = soft.argsort(dim=-1).argsort(dim=-1)  # rank 0 = smallest soft score in its group
        return torch.where(rank < num_zeros, torch.zeros_like(soft), soft)
