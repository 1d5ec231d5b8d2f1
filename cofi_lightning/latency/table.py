"""A device's latency table: sublayer latency (ms per batch) against kept units and hidden size.

* ``attention[i][j]`` / ``ffn[i][k]``: one sublayer with ``heads[j]`` heads / ``widths[k]`` FFN
  dims at hidden size ``hidden_sizes[i]``;
* ``fixed[i]``: everything outside the layers, at ``hidden_sizes[i]``; ``removed``: an empty layer;
* ``calibration``: the whole unpruned model over the sum of its parts (sublayers timed alone run
  with their input in cache, so the parts add up to less than the whole); every prediction is
  scaled by it.

Between grid points latencies are interpolated bilinearly with torch ops, so the result is
differentiable in fractional (expected) counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

TABLE_VERSION = 1


#: A table's model-shape keys (in its ``meta``) and the model config attribute each comes from.
SHAPE_KEYS = {
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
    "hidden_size": "hidden_size",
}


def model_shape(config: Any) -> dict[str, Any]:
    """The shape a table must match to serve a model (a config object or ``config.json`` dict)."""
    get = config.get if isinstance(config, Mapping) else lambda attr: getattr(config, attr, None)
    return {key: get(attr) for key, attr in SHAPE_KEYS.items()}


class LatencyTableError(ValueError):
    """A table file that cannot be used (missing, corrupt, or of another model shape)."""


@dataclass
class LatencyTable:
    """Measured sublayer latencies of one model shape on one device (see the module docstring);
    ``meta`` holds the device, the protocol and the model shape."""

    meta: dict[str, Any]
    hidden_sizes: list[int]
    heads: list[int]
    widths: list[int]
    attention: list[list[float]]
    ffn: list[list[float]]
    fixed: list[float]
    removed: float
    calibration: float = 1.0
    version: int = TABLE_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_h = len(self.hidden_sizes)
        ok = (
            n_h >= 1
            and len(self.heads) >= 2
            and len(self.widths) >= 2
            and len(self.attention) == n_h
            and len(self.ffn) == n_h
            and len(self.fixed) == n_h
            and all(len(row) == len(self.heads) for row in self.attention)
            and all(len(row) == len(self.widths) for row in self.ffn)
            and all(sorted(g) == list(g) for g in (self.hidden_sizes, self.heads, self.widths))
        )
        if not ok:
            raise LatencyTableError("latency table: grid and latency shapes do not match")

    # --- files ------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table; LatencyTableError if it is missing, not JSON or of another version."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            if data.get("version") != TABLE_VERSION:
                raise LatencyTableError(
                    f"{path}: table version {data.get('version')}, expected {TABLE_VERSION}"
                )
            return cls(**data)
        except LatencyTableError:
            raise
        except (OSError, ValueError, TypeError, AttributeError) as err:
            raise LatencyTableError(f"{path}: not a latency table ({err})") from err

    # --- lookups ----------------------------------------------------------------------------------

    def attention_ms(self, heads: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Latency of attention sublayers with ``heads`` kept heads (any shape) at ``hidden``."""
        return _bilinear(self.hidden_sizes, self.heads, self.attention, hidden, heads)

    def ffn_ms(self, width: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Latency of FFN sublayers with ``width`` kept dimensions at ``hidden``."""
        return _bilinear(self.hidden_sizes, self.widths, self.ffn, hidden, width)

    def fixed_ms(self, hidden: torch.Tensor) -> torch.Tensor:
        """Latency outside the encoder layers at ``hidden``."""
        grid = torch.tensor(self.hidden_sizes, dtype=torch.float64, device=hidden.device)
        values = torch.tensor(self.fixed, dtype=torch.float64, device=hidden.device)
        return _interp(grid, values, hidden.to(torch.float64))

    def parts_ms(self) -> float:
        """The unpruned model's latency as the sum of its table entries (uncalibrated)."""
        layers = self.meta["num_layers"]
        return self.fixed[-1] + layers * (self.attention[-1][-1] + self.ffn[-1][-1])

    def full_ms(self) -> float:
        """Latency of the unpruned model (every layer at full heads, width and hidden size)."""
        return self.calibration * self.parts_ms()


def _interp(grid: torch.Tensor, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of ``values`` (last dim over ``grid``) at ``x``; clamped
    to the grid's ends; differentiable in ``x``. ``values`` is ``[..., G]``, broadcast with x."""
    x = x.clamp(grid[0], grid[-1])
    idx = torch.searchsorted(grid, x.detach().contiguous()).clamp(1, len(grid) - 1)
    x0, x1 = grid[idx - 1], grid[idx]
    weight = (x - x0) / (x1 - x0)
    v = values.expand(*x.shape, values.shape[-1]) if values.dim() == 1 else values
    y0 = v.gather(-1, (idx - 1).unsqueeze(-1)).squeeze(-1)
    y1 = v.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    return y0 + weight * (y1 - y0)


def _bilinear(rows, cols, table, row_x: torch.Tensor, col_x: torch.Tensor) -> torch.Tensor:
    """``table[row][col]`` interpolated at (``row_x``, ``col_x``) (broadcast), float64."""
    device = col_x.device
    row_grid = torch.tensor(rows, dtype=torch.float64, device=device)
    col_grid = torch.tensor(cols, dtype=torch.float64, device=device)
    values = torch.tensor(table, dtype=torch.float64, device=device)  # [R, C]
    col_x = col_x.to(torch.float64)
    row_x = (
        row_x.to(torch.float64).expand_as(col_x) if row_x.dim() == 0 else row_x.to(torch.float64)
    )
    per_row = torch.stack([_interp(col_grid, values[r], col_x) for r in range(len(rows))], -1)
    return _interp(row_grid, per_row, row_x.expand_as(col_x))
