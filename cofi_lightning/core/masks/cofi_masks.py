"""The L0 side of CoFi (Xia et al. 2022, Sec. 3.2-3.3) for one model: its gates per unit type,
sampling, evaluation masks and the expected / remaining encoder parameter counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from cofi_lightning.core.masks.hard_concrete import GateConstants, HardConcreteGate
from cofi_lightning.core.masks.types import UNIT_NAMES, Masks
from cofi_lightning.modeling.param_count import encoder_params, param_terms
from cofi_lightning.modeling.structure import Structure, unit_counts

#: CoFi's initial log-alpha means: 10 (gates start open) except ``intermediate``, which started at
#: log(1 - 0.5) - log(0.5) = 0 (droprate_init 0.5); the original authors call the asymmetry a typo
#: but it is what their published runs used, so it is the default here.
COFI_INIT_LOG_ALPHA: dict[str, float] = {
    "hidden": 10.0,
    "head": 10.0,
    "head_layer": 10.0,
    "intermediate": 0.0,
    "mlp": 10.0,
}


class CoFiMasks(nn.Module):
    """Hard-concrete masks over an encoder's hidden dims, heads, attention layers, FFN dims and FFN
    layers. Its only trainable parameters are the gates' log-alphas.

    Args:
        config: The config of an unpruned (uniform) model.
        units: The unit types to mask (of :data:`UNIT_NAMES`); a unit left out is never pruned.
        init_log_alpha: Per-unit initial log-alpha means (defaults: :data:`COFI_INIT_LOG_ALPHA`).
    """

    def __init__(
        self,
        config,
        units: Iterable[str] = UNIT_NAMES,
        init_log_alpha: Mapping[str, float] | None = None,
    ):
        super().__init__()
        self.units = tuple(u for u in UNIT_NAMES if u in units)
        self.full = Structure.from_config(config)  # the unpruned sizes
        for key in ("num_heads", "intermediate_sizes"):
            sizes = getattr(self.full, key)
            if len(set(sizes)) != 1 or sizes[0] == 0:
                raise ValueError(
                    f"CoFiMasks needs an unpruned model (the same {key} > 0 in every layer); "
                    f"got {key}={list(sizes)}"
                )
        self.head_size = getattr(config, "attention_head_size", None) or (
            config.hidden_size // config.num_attention_heads
        )
        self.param_terms = param_terms(config)  # a family's extra terms of the formula
        self.mask_shapes = self.full.mask_shapes()
        # Gates are [groups, units]: deterministic() keeps the expected count of each group. The
        # hidden dims are one group (decided globally); a per-layer gate is L groups of one.
        shapes = {
            u: (1, *s) if u == "hidden" else s if len(s) == 2 else (*s, 1)
            for u, s in self.mask_shapes.items()
        }
        init = {**COFI_INIT_LOG_ALPHA, **(init_log_alpha or {})}
        self.gates = nn.ModuleDict()
        for unit in self.units:
            self.gates[unit] = HardConcreteGate(shapes[unit], init[unit], GateConstants())
        self.full_params = self.full.params(self.head_size, **self.param_terms)

    # --- masks ------------------------------------------------------------------------------------

    def _as_masks(self, values: dict[str, torch.Tensor]) -> Masks:
        """Gate-shaped tensors -> :class:`Masks` field shapes (drop the group-of-one dims)."""
        return Masks(**{u: t.reshape(self.mask_shapes[u]) for u, t in values.items()})

    def sample(self, noise: Mapping[str, torch.Tensor] | None = None) -> Masks:
        """Masks for one training step (one sample for the whole batch, as in CoFi), from
        ``noise`` (:meth:`noise`) when given, so every DDP rank can use the same sample."""
        noise = noise or {}
        return self._as_masks({u: g.sample(noise.get(u)) for u, g in self.gates.items()})

    def noise(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Uniform noise for :meth:`sample`, one tensor per unit, on the gates' device."""
        return {
            u: torch.rand(g.log_alpha.shape, generator=generator).to(g.log_alpha.device)
            for u, g in self.gates.items()
        }

    def deterministic(self) -> Masks:
        """Evaluation masks with CoFi's rule (see :meth:`HardConcreteGate.deterministic`)."""
        return self._as_masks({u: g.deterministic() for u, g in self.gates.items()})

    def scores(self) -> Masks:
        """Every gate's soft score ``sigmoid(log_alpha / β · 0.8)``, the order deterministic masks
        keep units in (``cofi_lightning.core.rounding`` adds or drops units by it)."""
        return self._as_masks({u: g.soft_score() for u, g in self.gates.items()})

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp every log-alpha to CoFi's range; call after each optimizer step."""
        for gate in self.gates.values():
            gate.clamp_()

    # --- parameter counts -------------------------------------------------------------------------

    def keep_probabilities(self) -> Masks:
        """Every gate's ``P(z ≠ 0)``: what the expected parameter count and latency plug in."""
        return self._as_masks({u: g.prob_nonzero() for u, g in self.gates.items()})

    def expected_params(self) -> torch.Tensor:
        """Differentiable expected number of encoder parameters under the gates (a unit that is
        not masked counts as always kept)."""
        kept = unit_counts(self.keep_probabilities(), self.full)
        return encoder_params(*kept, self.head_size, **self.param_terms)

    def expected_sparsity(self) -> torch.Tensor:
        """Differentiable expected sparsity s_hat = 1 - E[params] / params of the full encoder."""
        return 1.0 - self.expected_params() / self.full_params

    def structure(self, masks: Masks) -> Structure:
        """The structure the model pruned with deterministic ``masks`` has (zeros removed)."""
        return Structure.from_masks(masks, self.full)

    def remaining_params(self, masks: Masks) -> int:
        """Exact encoder parameters of the model pruned with ``masks`` (zeros removed)."""
        return self.structure(masks).params(self.head_size, **self.param_terms)

    def sparsity(self, masks: Masks) -> float:
        """Exact sparsity ``1 - remaining / full`` of the encoder pruned with ``masks``: for
        deterministic masks, the sparsity of the model that will be exported."""
        return 1.0 - self.remaining_params(masks) / self.full_params

    def mask_parameters(self) -> list[nn.Parameter]:
        """The log-alphas (the module's only trainable parameters)."""
        return [g.log_alpha for g in self.gates.values()]
