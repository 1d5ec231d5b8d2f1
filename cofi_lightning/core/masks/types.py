"""The typed value that carries one set of CoFi mask values from the mask module to the model."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

#: The paper's unit names, in the order used everywhere (configs, logs, tables).
UNIT_NAMES: tuple[str, ...] = ("hidden", "head", "head_layer", "intermediate", "mlp")


@dataclass(frozen=True)
class Masks:
    """One value per CoFi mask type (Xia et al. 2022, Sec. 3); a missing one means all ones.

    Attributes:
        hidden: ``[H]`` z_hidn, on the embeddings and every sublayer output.
        head: ``[L, N]`` z_head, on each head's context vector.
        head_layer: ``[L]`` z_MHA, the whole attention sublayer.
        intermediate: ``[L, I]`` z_int, on the FFN activation.
        mlp: ``[L]`` z_FFN, the whole FFN sublayer.
    """

    hidden: torch.Tensor | None = None
    head: torch.Tensor | None = None
    head_layer: torch.Tensor | None = None
    intermediate: torch.Tensor | None = None
    mlp: torch.Tensor | None = None

    def items(self) -> list[tuple[str, torch.Tensor]]:
        """The ``(unit name, tensor)`` pairs that are set, in :data:`UNIT_NAMES` order."""
        return [
            (f.name, getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) is not None
        ]

    def map(self, fn) -> Masks:
        """Apply ``fn`` to every tensor that is set (e.g. ``.detach()``, ``.to(device)``)."""
        return replace(self, **{name: fn(t) for name, t in self.items()})

    def detach(self) -> Masks:
        return self.map(torch.Tensor.detach)

    def to(self, *args, **kwargs) -> Masks:
        return self.map(lambda t: t.to(*args, **kwargs))
