"""Measure a :class:`LatencyTable` on this machine with the benchmark's protocol (``timing.py``).

Each sublayer is the model's own ``CoFiBertLayer`` with only attention or only the FFN, so the
table times what an exported model runs; the fixed cost is a model whose layers are all removed.
"""

from __future__ import annotations

import platform

import torch
from torch import nn
from tqdm.auto import tqdm

from cofi_lightning.latency.table import LatencyTable, model_shape
from cofi_lightning.latency.timing import (
    device_name,
    make_inputs,
    resolve_device,
    resolve_dtype,
    time_models,
)
from cofi_lightning.modeling import CoFiBertConfig, CoFiBertForSequenceClassification
from cofi_lightning.modeling.layers import CoFiBertLayer, LayerMasks

#: Hidden sizes profiled, as fractions of the model's (hidden pruning rarely goes below a quarter).
HIDDEN_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def width_grid(intermediate: int) -> list[int]:
    """FFN widths: dense near 0, the powers of two and their 1.5x, hardware-friendly multiples
    of 64, and the full width."""
    grid = {0, 1, 2, 4, 8, 12, 16, 24, 32, 48}
    size = 64
    while size < intermediate:
        grid.update({size, size * 3 // 2})
        size *= 2
    grid.update(range(64, intermediate, max(64, intermediate // 12 // 64 * 64)))
    return sorted(w for w in grid | {intermediate} if w <= intermediate)


class _Sublayer(nn.Module):
    """One encoder layer called the way the encoder calls it (no masks)."""

    def __init__(self, layer: CoFiBertLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        return self.layer(x, attn_mask, LayerMasks())


def _config(base: CoFiBertConfig, hidden: int, heads: list[int], widths: list[int]):
    return CoFiBertConfig.from_bert_config(
        base,
        hidden_size=hidden,
        num_hidden_layers=len(heads),
        num_heads=heads,
        intermediate_sizes=widths,
        attention_head_size=base.attention_head_size,
        pooler_size=base.pooler_size,
    )


def profile(
    config: CoFiBertConfig,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    batch: int = 32,
    seq: int = 128,
    threads: int | None = None,
    rounds: int = 5,
    warmup: int = 2,
    hidden_fractions: tuple[float, ...] = HIDDEN_FRACTIONS,
    progress: bool = True,
) -> LatencyTable:
    """Time every grid point of an unpruned BERT ``config``'s shape (``threads``: CPU only, None
    keeps torch's; ``hidden_fractions`` of ``config.hidden_size``)."""
    if not isinstance(config, CoFiBertConfig):
        config = CoFiBertConfig.from_bert_config(config)
    dev, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    if threads is not None and dev.type == "cpu":
        torch.set_num_threads(threads)
    heads = list(range(config.num_attention_heads + 1))
    widths = width_grid(config.intermediate_size)
    hidden_sizes = sorted({max(8, round(f * config.hidden_size)) for f in hidden_fractions})
    attention, ffn, fixed = [], [], []
    removed = 0.0
    bar = tqdm(
        total=len(hidden_sizes) * (len(heads) + len(widths) + 1),
        desc="Profiling",
        unit="shape",
        disable=not progress,
    )
    torch.manual_seed(0)
    for hidden in hidden_sizes:
        cfg = _config(config, hidden, [config.num_attention_heads], [config.intermediate_size])
        models = {}
        for n in heads:
            models[f"attention_{n}"] = _Sublayer(CoFiBertLayer(cfg, n, 0))
        for w in widths:
            models[f"ffn_{w}"] = _Sublayer(CoFiBertLayer(cfg, 0, w))
        models = {k: m.to(device=dev, dtype=torch_dtype).eval() for k, m in models.items()}
        inputs = {
            "x": torch.randn(batch, seq, hidden, device=dev, dtype=torch_dtype),
            "attn_mask": torch.ones(batch, 1, 1, seq, dtype=torch.bool, device=dev),
        }
        timings = time_models(models, inputs, warmup, rounds)
        attention.append([timings[f"attention_{n}"].median_ms for n in heads])
        ffn.append([timings[f"ffn_{w}"].median_ms for w in widths])
        empty = _config(
            config, hidden, [0] * config.num_hidden_layers, [0] * config.num_hidden_layers
        )
        shell = CoFiBertForSequenceClassification(empty).to(device=dev, dtype=torch_dtype).eval()
        ids = make_inputs(batch, seq, config.vocab_size, dev)
        fixed.append(time_models({"fixed": shell}, ids, warmup, rounds)["fixed"].median_ms)
        if hidden == hidden_sizes[-1]:
            removed = timings["attention_0"].median_ms  # a layer with nothing left: x passes
        bar.update(len(heads) + len(widths) + 1)
    bar.close()
    full = CoFiBertForSequenceClassification(config).to(device=dev, dtype=torch_dtype).eval()
    ids = make_inputs(batch, seq, config.vocab_size, dev)
    whole = time_models({"full": full}, ids, warmup, rounds)["full"].median_ms
    meta = {
        "device": dev.type,
        "device_name": device_name(dev),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "dtype": dtype,
        "batch": batch,
        "seq": seq,
        "threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "rounds": rounds,
        "warmup": warmup,
        **model_shape(config),
        "head_size": config.attention_head_size,
    }
    table = LatencyTable(meta, hidden_sizes, heads, widths, attention, ffn, fixed, removed)
    table.calibration = whole / table.parts_ms()
    table.meta["full_model_ms"] = whole
    return table
