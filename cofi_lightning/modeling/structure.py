"""Which parts of a masked encoder exist, and the structure (kept sizes) they make: the rule "a
sublayer is alive" (:func:`sublayer_alive`), the translation of mask values into kept counts
(:func:`unit_counts`, exact for 0/1 values, expected for gate probabilities) and the kept sizes as
one value (:class:`Structure`) that counts, latency, reports and ``results.json`` read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from .param_count import encoder_params


def sublayer_alive(layer: torch.Tensor | None, units: torch.Tensor | None) -> torch.Tensor | None:
    """Whether (or how probably) a sublayer exists: its gate is open and at least one unit is.

    Args:
        layer: ``[...]`` the sublayer's gate, bool or probability of being open (None: open).
        units: ``[..., k]`` its heads / FFN dimensions, in the same convention (None: all open).

    Returns:
        ``[...]``: bool, or ``P(layer) · (1 − Π_i (1 − P(unit_i)))``; None when both are None.
    """
    if units is not None:
        units = units.any(-1) if units.dtype == torch.bool else 1 - (1 - units).prod(-1)
    if layer is None or units is None:
        return units if layer is None else layer
    return layer & units if layer.dtype == torch.bool else layer * units


def sublayer_masks(masks: Any) -> tuple[tuple[torch.Tensor | None, torch.Tensor | None], ...]:
    """The masks each sublayer type answers to, ``(layer gate [L], units [L, k])``: attention
    (``head_layer``, ``head``), then FFN (``mlp``, ``intermediate``); None is all open."""
    return (masks.head_layer, masks.head), (masks.mlp, masks.intermediate)


class UnitCounts(NamedTuple):
    """What mask values keep (counts, or expected counts): scalar ``hidden``; ``[L]`` ``heads``
    and ``widths`` (a unit counts while its layer gate is open); ``[L]`` ``attention`` and ``ffn``
    alive."""

    hidden: torch.Tensor
    heads: torch.Tensor
    widths: torch.Tensor
    attention: torch.Tensor
    ffn: torch.Tensor


def _sublayer(
    layer: torch.Tensor | None, units: torch.Tensor | None, full: Sequence[int], ref: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kept units [L], alive [L])`` of one sublayer type; a None mask keeps all ``full``."""
    full_t = torch.tensor(list(full), dtype=ref.dtype, device=ref.device)
    if units is None:
        count = full_t if layer is None else full_t * layer
    else:
        count = (units if layer is None else units * layer[:, None]).sum(-1)
    alive = sublayer_alive(layer, units)
    exists = (full_t > 0).to(ref.dtype)  # a sublayer the full structure lacks stays removed
    return count, exists if alive is None else alive * exists


def unit_counts(keep: Any, full: Structure) -> UnitCounts:
    """Per-layer kept units of a ``Masks`` value ``keep``, all 0/1 (exact counts) or all
    probabilities ``P(z ≠ 0)`` (expected counts: the gates are independent); a field that is None
    keeps all of the ``full`` structure. In ``keep``'s dtype (float64 when no field is set)."""
    given = [t for _, t in keep.items()]
    ref = given[0] if given else torch.ones((), dtype=torch.float64)
    hidden = keep.hidden.sum() if keep.hidden is not None else ref.new_tensor(full.hidden_size)
    attention_masks, ffn_masks = sublayer_masks(keep)
    heads, attention = _sublayer(*attention_masks, full.num_heads, ref)
    widths, ffn = _sublayer(*ffn_masks, full.intermediate_sizes, ref)
    return UnitCounts(hidden, heads, widths, attention, ffn)


@dataclass(frozen=True)
class Structure:
    """The kept sizes of an encoder: hidden dims and, per layer, heads and FFN width (0: the
    sublayer is removed), under the keys a pruned model's config uses."""

    hidden_size: int
    num_heads: tuple[int, ...]
    intermediate_sizes: tuple[int, ...]

    @classmethod
    def from_config(cls, config) -> Structure:
        """The sizes of a model config: a CoFi config's per-layer lists, or a vanilla config's
        uniform ``num_attention_heads`` / ``intermediate_size``."""
        layers = config.num_hidden_layers
        heads = getattr(config, "num_heads", None) or [config.num_attention_heads] * layers
        widths = getattr(config, "intermediate_sizes", None) or [config.intermediate_size] * layers
        return cls(int(config.hidden_size), tuple(map(int, heads)), tuple(map(int, widths)))

    @classmethod
    def from_masks(cls, masks: Any, full: Structure) -> Structure:
        """The structure deterministic ``masks`` keep (their non-zeros) of the ``full`` one: what
        physical pruning exports."""
        kept = unit_counts(masks.map(lambda t: (t != 0).to(torch.float64)), full)
        sizes = torch.cat([kept.hidden.reshape(1), kept.heads, kept.widths]).round().long()
        hidden, *per_layer = sizes.tolist()  # one host sync (masks may live on a GPU)
        layers = len(full.num_heads)
        return cls(hidden, tuple(per_layer[:layers]), tuple(per_layer[layers:]))

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Structure:
        """Read :meth:`as_dict`'s form (``results.json``'s ``structure``)."""
        return cls(
            int(record["hidden_size"]),
            tuple(record["num_heads"]),
            tuple(record["intermediate_sizes"]),
        )

    def as_dict(self) -> dict[str, Any]:
        """``{"hidden_size": h, "num_heads": [...], "intermediate_sizes": [...]}`` (JSON)."""
        return {
            "hidden_size": self.hidden_size,
            "num_heads": list(self.num_heads),
            "intermediate_sizes": list(self.intermediate_sizes),
        }

    def mask_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of each ``Masks`` field on this structure (its first layer's widths: masks
        over heads or FFN dims need the same width in every layer)."""
        layers = len(self.num_heads)
        return {
            "hidden": (self.hidden_size,),
            "head": (layers, self.num_heads[0]),
            "head_layer": (layers,),
            "intermediate": (layers, self.intermediate_sizes[0]),
            "mlp": (layers,),
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per layer for tables: ``layer``, ``heads``, ``attention`` (alive),
        ``ffn_dims``, ``ffn`` (alive), ``hidden``."""
        return [
            {
                "layer": i,
                "heads": n,
                "attention": n > 0,
                "ffn_dims": m,
                "ffn": m > 0,
                "hidden": self.hidden_size,
            }
            for i, (n, m) in enumerate(zip(self.num_heads, self.intermediate_sizes, strict=True))
        ]

    def __str__(self) -> str:
        return (
            f"hidden {self.hidden_size}; heads {list(self.num_heads)}; "
            f"FFN {list(self.intermediate_sizes)}"
        )

    def params(self, head_size: int, **terms: Any) -> int:
        """Exact encoder parameters of this structure, with a family's extra ``terms``
        (``param_count.param_terms``)."""
        heads = torch.tensor(self.num_heads, dtype=torch.float64)
        widths = torch.tensor(self.intermediate_sizes, dtype=torch.float64)
        alive = (heads > 0).double(), (widths > 0).double()
        total = encoder_params(self.hidden_size, heads, widths, *alive, head_size, **terms)
        return int(round(total.item()))
