"""What the Lagrangian constrains: the encoder's parameters (CoFi) or its latency on a device.

Both are a *reduction* in [0, 1) (sparsity ``1 − params / params(unpruned)``, or ``1 − latency /
latency(unpruned)`` from a latency table, where a speedup x is ``1 − 1/x``), so the target ramp,
the multipliers and the best-structure window work unchanged on either. Each gives the expected
value under the gates and the real value of deterministic masks, and names its metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cofi_lightning.config.checks import ConfigError
from cofi_lightning.core.lagrangian import LagrangeMultipliers
from cofi_lightning.core.masks import CoFiMasks, Masks
from cofi_lightning.latency import (
    LatencyTable,
    LatencyTableError,
    expected_latency,
    max_speedup,
    structure_latency,
)
from cofi_lightning.latency.table import model_shape

#: Families whose layers are BERT's, so the latency profiler's BERT-shaped tables describe them.
LATENCY_FAMILIES = ("bert", "roberta", "xlm-roberta")


def check_latency_family(family: Any) -> None:
    """Raise a ConfigError unless ``pruning.constraint=latency`` supports the
    :class:`~cofi_lightning.modeling.Family`."""
    if family.vanilla_type not in LATENCY_FAMILIES:
        raise ConfigError(
            f"pruning.constraint=latency profiles BERT-layer encoders {LATENCY_FAMILIES}; "
            f"{family.name} is not supported yet (use pruning.constraint=params)"
        )


def load_latency_table(
    path: Path, config: Any, target_speedup: float, prune_hidden: bool = True
) -> LatencyTable:
    """Read the latency table of ``pruning.constraint=latency`` and check it can serve the run:
    of the model's shape (``config``, an object or a ``config.json`` dict; None: not checked), and
    with a fixed cost that leaves room for the target speedup.

    Raises:
        ConfigError: naming ``pruning.latency_table`` or ``pruning.target_speedup``.
    """
    try:
        table = LatencyTable.load(path)
    except LatencyTableError as err:
        raise ConfigError(f"pruning.latency_table {err}") from None
    if config is not None:
        shape = model_shape(config)
        theirs = {k: table.meta.get(k) for k in shape}
        if theirs != shape:
            raise ConfigError(
                f"pruning.latency_table {path} was profiled for {theirs}, the model is {shape}; "
                "profile this model (python -m cofi_lightning.latency profile) or unset the key"
            )
    best = max_speedup(table, prune_hidden)
    if target_speedup >= best:
        raise ConfigError(
            f"pruning.target_speedup={target_speedup:g} cannot be reached on {path}: with every "
            f"layer removed the model still takes {table.full_ms() / best:.3g} of "
            f"{table.full_ms():.3g} ms (the fixed cost outside the layers), a speedup of at most "
            f"{best:.3g}x; choose a lower target"
        )
    return table


class _Constraint:
    """What both constraints share: the metric keys they log (``<prefix>/expected``, ...)."""

    prefix: str
    targets: tuple[float, ...]

    @property
    def progress_key(self) -> str:
        """The key shown in the progress bar: the expected value under the gates."""
        return f"{self.prefix}/expected"

    def train_metrics(
        self,
        masks: CoFiMasks,
        expected: torch.Tensor,
        target: float,
        multipliers: LagrangeMultipliers,
        reset: bool | None = None,
    ) -> dict[str, torch.Tensor | float]:
        """The log of one training step (tensors: no host sync); ``reset``: whether the
        anti-windup reset λ1 (None when it is off)."""
        metrics = {
            self.progress_key: expected.detach().float(),
            f"{self.prefix}/target": float(target),
            "sparsity/lambda_1": multipliers.lambda_1.detach(),
            "sparsity/lambda_2": multipliers.lambda_2.detach(),
        }
        if reset is not None:
            metrics["sparsity/lambda_1_reset"] = float(reset)
        return metrics

    def eval_metrics(self, masks: CoFiMasks, z: Masks | None) -> dict[str, float]:
        """The log of one validation, with deterministic masks ``z`` (None before pruning)."""
        with torch.no_grad():
            metrics = {"sparsity/expected_at_eval": float(masks.expected_sparsity())}
        if z is not None:
            metrics["sparsity/deterministic"] = masks.sparsity(z)
        return metrics


class ParamsConstraint(_Constraint):
    """CoFi's constraint on the encoder parameters, at one target or a sparsity path's targets."""

    name = "params"
    prefix = "sparsity"  # metric keys: sparsity/expected, sparsity/deterministic, ...

    def __init__(self, target_sparsity: float | Sequence[float]) -> None:
        targets = [target_sparsity] if isinstance(target_sparsity, int | float) else target_sparsity
        self.targets = tuple(float(t) for t in targets)
        self.target = self.targets[-1]

    def expected(self, masks: CoFiMasks) -> torch.Tensor:
        return masks.expected_sparsity()

    def real(self, masks: CoFiMasks, z: Masks) -> float:
        return masks.sparsity(z)


class LatencyConstraint(_Constraint):
    """A constraint on the encoder's latency on the table's device: unpruned / target speedup."""

    name = "latency"
    prefix = "latency_reduction"  # latency_reduction/expected, .../deterministic, ...

    def __init__(self, table: LatencyTable, target_speedup: float) -> None:
        self.table = table
        self.target_speedup = float(target_speedup)
        self.target = 1.0 - 1.0 / self.target_speedup
        self.targets = (self.target,)
        self.full_ms = table.full_ms()

    def expected(self, masks: CoFiMasks) -> torch.Tensor:
        return 1.0 - expected_latency(masks, self.table) / self.full_ms

    def real(self, masks: CoFiMasks, z: Masks) -> float:
        return 1.0 - structure_latency(self.table, masks.structure(z)) / self.full_ms

    def train_metrics(self, masks, expected, target, multipliers, reset=None):
        """The latency reduction's log, and the parameter sparsity (always reported)."""
        metrics = super().train_metrics(masks, expected, target, multipliers, reset)
        with torch.no_grad():
            metrics["sparsity/expected"] = masks.expected_sparsity().float()
        return metrics

    def eval_metrics(self, masks, z):
        """The sparsity's log, the expected latency reduction, and with ``z`` the structure's
        table latency (``latency/*``)."""
        metrics = super().eval_metrics(masks, z)
        with torch.no_grad():
            metrics[f"{self.prefix}/expected_at_eval"] = float(self.expected(masks))
        if z is not None:
            ms = structure_latency(self.table, masks.structure(z))
            metrics[f"{self.prefix}/deterministic"] = 1.0 - ms / self.full_ms
            metrics["latency/table_ms"] = ms
            metrics["latency/unpruned_ms"] = self.full_ms
            metrics["latency/table_speedup"] = self.full_ms / ms
        return metrics
